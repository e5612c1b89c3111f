//! Backup orchestration, in three steps with a type each:
//!
//! 1. [`plan`](self::plan): the catalog and the tracker's snapshot → a [`Decision`]: full or
//!    incremental, the parent snapshot (its tree; its shards only where needed), the
//!    tables to export. The choice is the `--engine` strategy's ([`crate::strategy`]).
//! 2. [`export`]: the tables' ranges exported in parallel, one blob per (table, bucket).
//! 3. [`commit`]: the new snapshot tree — the parent's shards by id where nothing changed,
//!    new shards where something did — the catalog parts, then the snapshot object last;
//!    then the strategy's tracker bookkeeping and the feed commit.
//!
//! Whatever the engine, a table the parent does not know is exported whole, and a table the
//! parent knows but the catalog no longer lists is left out of the new snapshot (dropped):
//! the catalog diff backs up the feed.

mod commit;
mod export;
mod plan;
mod tasks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use taosbackup_core::{
    BackupKind, BackupSnapshot, Bucket, BucketWidth, CatalogSnapshot, Progress, Repository, Source,
    SourceInfo,
};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::parent::{Layout, ParentView};
use crate::strategy::{EngineKind, OnGap, ParentChoice, Strategy, TableTask, Tombstones};
use crate::tracker::{BucketRun, Snapshot};
use crate::tracking::{ChangeTracking, lock};
use tasks::Tasks;

pub use plan::{Plan, PlanTable, plan, plan_from};

/// One backup run's parameters.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The source database.
    pub database: String,
    /// The engine.
    pub engine: EngineKind,
    /// Take a full backup whatever the engine would do (`--full`).
    pub force_full: bool,
    /// What to do on a tracker gap.
    pub on_gap: OnGap,
    /// Tables exported at once.
    pub parallel: usize,
    /// Child tables of one super table read with one query at most (1: each table with
    /// its own). The source may still read a group table by table
    /// ([`taosbackup_core::Source::export_tables`]).
    pub tables_per_query: usize,
    /// The repository's bucket width.
    pub bucket_width: BucketWidth,
    /// Compress new blocks of child tables with a zstd dictionary shared per super table
    /// (docs/format.md §5.3): in the benchmark a repository 10–21% smaller, for 28% more
    /// CPU at 1 M rows falling to 2% from 50 M rows (training is once per super table). Off,
    /// new blocks are compressed on their own; blocks an incremental keeps from its parent
    /// keep their dictionaries either way.
    pub dictionaries: bool,
    /// Where the data comes from (recorded in the snapshot).
    pub source_info: SourceInfo,
}

/// Child tables read with one query at most, by default ([`BackupRequest::tables_per_query`]).
/// At 10,000 tables of 1,000 rows, 100 per query read in 0.41× the time of one per query
/// (docs/performance-history.md, "Several tables per query"); a group's query holds its rows until
/// its end, within a bound the source sets.
pub const DEFAULT_TABLES_PER_QUERY: usize = 100;

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The committed snapshot (its `stats` are the run's counters).
    pub snapshot: BackupSnapshot,
    /// Why the backup is a full one when an incremental was asked for.
    pub full_reason: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// Tree objects (shards, tree nodes, the tree root) this backup wrote; their sealed bytes,
    /// with the catalog parts, are [`BackupReport::tree_bytes_written`]
    /// (deduplicated: unchanged parts are the parent's and cost nothing).
    pub tree_objects_written: u64,
    /// Sealed bytes of those objects.
    pub tree_bytes_written: u64,
    /// Objects of the parent snapshot read to decide (its tree and the shards needed).
    pub parent_objects_read: u64,
    /// Objects of the database the backup does not contain, with the reason (virtual
    /// tables).
    pub skipped: Vec<taosbackup_core::SkippedObject>,
    /// Tables this backup records as dropped; `snapshot.stats.tombstones` counts them with
    /// the deleted buckets.
    pub dropped_tables: u64,
}

/// Everything decided before exporting.
pub(crate) struct Decision {
    pub(crate) kind: BackupKind,
    pub(crate) full_reason: Option<String>,
    /// The parent of an incremental.
    pub(crate) parent: Option<ParentView>,
    /// The catalog cut into shards (matched against the parent's).
    pub(crate) layout: Layout,
    pub(crate) tasks: Vec<TableTask>,
    /// Tables of the parent the catalog no longer lists.
    pub(crate) dropped: Vec<String>,
    pub(crate) catalog: CatalogSnapshot,
}

impl Decision {
    /// A full backup of `catalog`, cut into shards by `cut` (made from it) if given.
    fn full(reason: Option<String>, catalog: CatalogSnapshot, cut: Option<Layout>) -> Decision {
        Decision {
            kind: BackupKind::Full,
            full_reason: reason,
            parent: None,
            layout: cut.unwrap_or_else(|| Layout::cut(&catalog)),
            tasks: catalog
                .tables
                .iter()
                .map(|t| TableTask::whole(&t.name, Tombstones::None))
                .collect(),
            dropped: Vec::new(),
            catalog,
        }
    }
}

/// Why `parent` cannot be the parent of a backup of `catalog` with `req` whatever the engine.
fn mismatch(
    req: &BackupRequest,
    catalog: &CatalogSnapshot,
    parent: &BackupSnapshot,
) -> Option<String> {
    if parent.bucket_width != req.bucket_width {
        return Some("the previous backup used another bucket width".into());
    }
    if parent.precision != catalog.database.precision {
        return Some("the database precision changed since the previous backup".into());
    }
    None
}

/// Step 1: what to back up. `cut` is [`Layout::cut`] of `catalog` if it was made already.
pub(crate) async fn decide(
    strategy: &dyn Strategy,
    repo: &dyn Repository,
    req: &BackupRequest,
    mut catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
    cut: Option<Layout>,
) -> Result<Decision, EngineError> {
    let tables = catalog.tables.len();
    strategy.prepare_catalog(&mut catalog, snapshot);
    // The strategy left tables out (it only removes): the cut indexes the catalog as read.
    let cut = cut.filter(|_| catalog.tables.len() == tables);
    if req.force_full && strategy.kind() != EngineKind::Full {
        return Ok(Decision::full(
            Some("a full backup was asked for (--full)".into()),
            catalog,
            cut,
        ));
    }
    let t0 = Instant::now();
    let parent = match strategy.choose_parent(repo, req, snapshot).await? {
        ParentChoice::Full(reason) => return Ok(Decision::full(reason, catalog, cut)),
        ParentChoice::Parent(p) => *p,
    };
    phase("decide: parent chosen", t0, 0);
    if let Some(reason) = mismatch(req, &catalog, &parent) {
        return Ok(Decision::full(Some(reason), catalog, cut));
    }
    let mut parent = ParentView::open(repo, parent).await?;
    phase("decide: parent tree read", t0, parent.tree.shards.len());
    let mut layout = cut.unwrap_or_else(|| Layout::cut(&catalog));
    layout.match_parent(&catalog, &parent.tree);
    phase("decide: catalog laid out", t0, layout.chunks.len());
    parent.note_unmatched(&layout);
    let mut entries: Vec<usize> = parent.unmatched.clone();
    match strategy.tables_needed(&catalog, snapshot) {
        None => entries.extend(0..parent.tree.shards.len()),
        Some(tables) => entries.extend(layout.matched_entries(tables.iter().map(String::as_str))),
    }
    parent.load(repo, entries).await?;
    phase(
        "decide: parent shards read",
        t0,
        parent.objects_read as usize,
    );
    incremental(strategy, req, catalog, snapshot, parent, layout)
}

/// Step 1 with the parent's needed shards read: the strategy's tasks and the drops.
fn incremental(
    strategy: &dyn Strategy,
    req: &BackupRequest,
    catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
    parent: ParentView,
    layout: Layout,
) -> Result<Decision, EngineError> {
    let tasks = strategy.incremental(req, &catalog, &layout, &parent, snapshot)?;
    let dropped = parent.dropped(&layout);
    Ok(Decision {
        kind: BackupKind::Incremental,
        full_reason: None,
        parent: Some(parent),
        layout,
        tasks,
        dropped,
        catalog,
    })
}

/// Runs one backup. `tracking` is needed by the bitmap engine; with another engine it is
/// still brought up to date and reset, so it stays in step with the repository.
/// Cancelling `cancel` stops before the snapshot is committed: nothing is committed.
///
/// `source`, `repo` and `progress` are shared handles: each export runs as a task of its
/// own (see `export::run`), and every task holds them.
pub async fn backup(
    source: Arc<dyn Source>,
    repo: Arc<dyn Repository>,
    mut tracking: Option<&mut ChangeTracking>,
    req: &BackupRequest,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<BackupReport, EngineError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let bytes_before = repo.bytes_stored();
    let catalog = source
        .catalog(&req.database)
        .await
        .map_err(|e| EngineError::source(format!("reading the catalog of {}", req.database), e))?;
    phase("catalog read", started, catalog.tables.len());
    let feed_name = tracking.as_deref().map(|t| t.feed_name().to_string());
    // Catch up after the catalog read: a drop seen by the catalog is then in the snapshot.
    let (catalog, cut, snapshot) = match tracking.as_deref_mut() {
        Some(t) => {
            if lock(t.tracker()).set_precision(catalog.database.precision) {
                tracing::warn!(
                    database = %req.database,
                    "the change tracker was kept in another precision than the database's: it \
                     starts afresh and this backup is a full one"
                );
            }
            // The feed is round trips to the server, which leave this process's cores
            // mostly idle: the catalog is cut into shards meanwhile (~4 ms of CPU at
            // 10,000 tables, on the way of every incremental otherwise).
            let cut = tokio::task::spawn_blocking(move || {
                let cut = Layout::cut(&catalog);
                (catalog, cut)
            });
            let (caught_up, cut) = tokio::join!(t.catch_up(), cut);
            let (catalog, cut) = cut.map_err(|e| {
                EngineError::internal(format!("cutting the catalog into shards failed: {e}"))
            })?;
            caught_up?;
            phase("feed caught up", started, 0);
            (
                catalog,
                Some(cut),
                Some(lock(t.tracker()).snapshot_and_reset()),
            )
        }
        None => (catalog, None, None),
    };
    let strategy = req.engine.strategy();
    let result = async {
        let decision = decide(
            strategy,
            repo.as_ref(),
            req,
            catalog,
            snapshot.as_ref(),
            cut,
        )
        .await?;
        phase("decided", started, decision.tasks.len());
        let prefetched = prefetch(&repo, &decision).await?;
        let (exported, dictionaries) =
            match export::run(&source, &repo, req, &decision, &progress, cancel).await {
                Ok(e) => e,
                Err(e) => {
                    // Nothing of a failed backup may still hold the repository once it
                    // reports (the CLI then releases its lock).
                    if let Some(p) = prefetched {
                        p.abort().await;
                    }
                    return Err(e);
                }
            };
        phase("exported", started, exported.len());
        let feed = snapshot.as_ref().zip(feed_name.as_deref());
        let out = commit::commit(
            &repo,
            req,
            decision,
            (exported, dictionaries),
            feed,
            prefetched,
            cancel,
            started_at,
            bytes_before,
        )
        .await?;
        phase("committed", started, out.objects_written as usize);
        Ok::<_, EngineError>(out)
    }
    .await;
    match (result, tracking) {
        (Ok(c), Some(t)) => {
            {
                let mut tr = lock(t.tracker());
                match c.snapshot.kind {
                    BackupKind::Full => {
                        tr.commit_full(&c.stored);
                    }
                    BackupKind::Incremental => {
                        if let Some(s) = snapshot.clone() {
                            strategy.after_incremental(&mut tr, s, &c.tombstoned);
                        }
                    }
                }
                tr.set_last_backup(c.snapshot.id.to_hex());
            }
            // The snapshot is durable: the tracker state and then the feed may move on. A
            // failure here does not undo the backup, so it is not reported as a failed one
            // (the operator would retry what is already there): a tracker state left behind
            // makes the next backup a full one, an uncommitted feed position replays its
            // events (more blocks exported, nothing lost).
            let persisted = t.persist().await;
            phase("tracker saved", started, 0);
            if let Err(e) = persisted {
                tracing::warn!(
                    backup = %c.snapshot.id,
                    error = %e,
                    "the backup is committed, but saving the change tracking after it failed; \
                     the next backup re-reads those changes (or is a full backup)"
                );
            }
            Ok(c.report(started.elapsed()))
        }
        (Ok(c), None) => Ok(c.report(started.elapsed())),
        (Err(e), Some(t)) => {
            if let Some(s) = snapshot {
                lock(t.tracker()).restore(s);
            }
            if let Err(pe) = t.persist().await {
                tracing::warn!(error = %pe, "saving the tracker after a failed backup failed");
            }
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// Starts reading, in a task of its own, the parent's shards of the tables with work that the
/// decision did not need: the commit needs their blocks, and the exports need not wait for
/// them (a 1% incremental at 50 M rows reads ~120 of them, ~16 ms). Aborted, and waited
/// for, when the exports fail.
async fn prefetch(
    repo: &Arc<dyn Repository>,
    d: &Decision,
) -> Result<Option<Tasks<Vec<(usize, taosbackup_core::ShardBlocks)>>>, EngineError> {
    let Some(read) = d.parent.as_ref().and_then(|p| {
        p.prefetch(
            repo,
            d.layout
                .matched_entries(d.tasks.iter().map(|t| t.table.as_str())),
        )
    }) else {
        return Ok(None);
    };
    let mut tasks = Tasks::new(1, "the read of the parent's shards");
    tasks.spawn(read).await?;
    Ok(Some(tasks))
}

/// Logs (at debug level) that a phase of the run ended, with the time since `started`: what
/// `RUST_LOG=taosbackup_engine=debug` shows to find where a backup's time goes.
pub(crate) fn phase(what: &str, started: Instant, count: usize) {
    crate::phase("backup", what, started, count);
}

/// The entries of `blocks` whose keys lie in one of the ascending `runs`: one range
/// query per run, so the cost follows the entries found, not the buckets covered.
/// `blocks` is keyed by bare bucket indices, as snapshot shards store them.
pub(crate) fn matching<'a, V: 'a>(
    runs: &'a [BucketRun],
    blocks: &'a BTreeMap<i64, V>,
) -> impl Iterator<Item = (Bucket, &'a V)> + 'a {
    runs.iter().flat_map(move |r| {
        blocks
            .range(r.first.index()..=r.last.index())
            .map(|(k, v)| (Bucket(*k), v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_the_intersection() {
        let blocks: BTreeMap<i64, u8> = [(-5, 0), (1, 1), (3, 3), (9, 9)].into();
        let run = |first, last| BucketRun {
            first: Bucket(first),
            last: Bucket(last),
        };
        let runs = [run(-7, -5), run(2, 4), run(9, 10)];
        let got: Vec<Bucket> = matching(&runs, &blocks).map(|(k, _)| k).collect();
        assert_eq!(got, vec![Bucket(-5), Bucket(3), Bucket(9)]);
        assert_eq!(matching(&[], &blocks).count(), 0);
        assert_eq!(matching(&[run(i64::MIN, i64::MAX)], &blocks).count(), 4);
    }
}
