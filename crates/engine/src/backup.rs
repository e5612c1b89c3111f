//! Backup orchestration: catalog → plan (blocks to export, tombstones, dropped tables) →
//! export in parallel → repository → manifest → tracker and feed commit.
//!
//! The engines differ only in the plan:
//! * `full`: every table, whole.
//! * `time`: per table, the whole buckets from the one holding its previous maximum
//!   timestamp on; new tables whole. Blind to late rows into older buckets, updates of older
//!   rows and deletes: documented, not fixable without a change feed.
//! * `bitmap`: the tracker's dirty and deleted buckets, new and re-created tables whole,
//!   tombstones where a stored bucket has no rows any more, dropped tables.
//!
//! Whatever the engine, a table the parent backup does not know is exported whole, and a
//! table the parent knows but the catalog no longer lists is recorded as dropped: the catalog
//! diff backs up the feed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use taosbackup_core::{
    BackupId, BackupKind, BackupStats, BlockChunk, BlockRecord, BlockRef, BucketWidth,
    CatalogSnapshot, ExportRequest, FeedPositions, MANIFEST_VERSION, Manifest, Precision, Progress,
    Repository, Source, SourceInfo, TableRecord, TimeRange,
};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::chain::{Folded, chain_of, fold, list_backups};
use crate::tracker::{BucketRun, Snapshot};
use crate::tracking::{ChangeTracking, lock};

/// The block-selection strategy (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Every block.
    Full,
    /// Whole buckets from each table's previous maximum timestamp on (misses late rows,
    /// updates of older rows and deletes).
    Time,
    /// Exactly the changed blocks the change tracker recorded, plus tombstones.
    Bitmap,
}

impl EngineKind {
    /// The name used on the command line and in manifests.
    pub fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Full => "full",
            EngineKind::Time => "time",
            EngineKind::Bitmap => "bitmap",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(EngineKind::Full),
            "time" => Ok(EngineKind::Time),
            "bitmap" => Ok(EngineKind::Bitmap),
            _ => Err(EngineError::InvalidRequest(format!(
                "unknown engine {s:?}: use full, time or bitmap"
            ))),
        }
    }
}

/// What the bitmap engine does when the tracker cannot prove it saw every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnGap {
    /// Take a full backup instead, logging why.
    #[default]
    Full,
    /// Fail the backup.
    Fail,
}

impl FromStr for OnGap {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(OnGap::Full),
            "fail" => Ok(OnGap::Fail),
            _ => Err(EngineError::InvalidRequest(format!(
                "unknown on_gap value {s:?}: use full or fail"
            ))),
        }
    }
}

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
    /// The repository's bucket width.
    pub bucket_width: BucketWidth,
    /// Where the data comes from (recorded in the manifest).
    pub source_info: SourceInfo,
}

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The committed manifest (its `stats` are the run's counters).
    pub manifest: Manifest,
    /// Why the backup is a full one when an incremental was asked for.
    pub full_reason: Option<String>,
    /// Wall time.
    pub duration: Duration,
}

/// One table in a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanTable {
    /// Table name.
    pub table: String,
    /// Buckets to export, as ascending runs (empty when `whole_table`).
    pub buckets: Vec<BucketRun>,
    /// Number of buckets in `buckets`.
    pub blocks: u64,
    /// The whole table is exported.
    pub whole_table: bool,
    /// Stored buckets that become tombstones if no rows are found in them.
    pub tombstones: Vec<i64>,
    /// The table was dropped: recorded as a tombstone for all its buckets.
    pub dropped: bool,
}

/// What a backup would do (the original plugin's `detect_incremental_blocks`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Source database.
    pub database: String,
    /// Engine.
    pub engine: EngineKind,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Why it is full when the engine would take an incremental.
    pub full_reason: Option<String>,
    /// The backup an incremental would apply on.
    pub parent: Option<BackupId>,
    /// Tables with work, by name.
    pub tables: Vec<PlanTable>,
    /// Buckets to export (not counting whole tables).
    pub blocks: u64,
    /// Whole tables to export.
    pub whole_tables: u64,
    /// Possible tombstones.
    pub tombstones: u64,
    /// Dropped tables.
    pub dropped_tables: u64,
    /// Rows the exported blocks held at the last backup (a lower bound for new data).
    pub estimated_rows: u64,
    /// Bytes of those rows at the last backup, from the stored sizes (0 when unknown).
    pub estimated_bytes: u64,
}

/// The work for one table.
#[derive(Debug, Clone)]
struct TableTask {
    table: String,
    /// Export everything (else `buckets`).
    whole: bool,
    /// Ascending, disjoint, not adjacent.
    buckets: Vec<BucketRun>,
    /// Buckets the parent state holds that must become tombstones if nothing is found.
    /// Ascending.
    tombstone_if_empty: Vec<i64>,
}

/// Everything decided before exporting.
struct Decision {
    kind: BackupKind,
    full_reason: Option<String>,
    /// The parent's id and chain.
    parent: Option<(BackupId, BackupId)>,
    tasks: Vec<TableTask>,
    dropped: Vec<String>,
    catalog: CatalogSnapshot,
}

/// Runs one backup. `tracking` is needed by the bitmap engine; with another engine it is
/// still brought up to date and reset, so it stays in step with the repository.
/// Cancelling `cancel` stops before the manifest is committed: nothing is committed.
pub async fn backup(
    source: &dyn Source,
    repo: &dyn Repository,
    mut tracking: Option<&mut ChangeTracking>,
    req: &BackupRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<BackupReport, EngineError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let catalog = source
        .catalog(&req.database)
        .await
        .map_err(|e| EngineError::source(format!("reading the catalog of {}", req.database), e))?;
    let feed_name = tracking.as_deref().map(|t| t.feed_name().to_string());
    // Catch up after the catalog read: a drop seen by the catalog is then in the snapshot.
    let snapshot = match tracking.as_deref_mut() {
        Some(t) => {
            t.catch_up().await?;
            Some(lock(t.tracker()).snapshot_and_reset())
        }
        None => None,
    };
    let result = async {
        let decision = decide(repo, req, catalog, snapshot.as_ref()).await?;
        let feed = snapshot.as_ref().zip(feed_name.as_deref());
        run(
            source, repo, req, decision, feed, progress, cancel, started_at,
        )
        .await
    }
    .await;
    match (result, tracking) {
        (Ok((manifest, full_reason)), Some(t)) => {
            {
                let mut tr = lock(t.tracker());
                match manifest.kind {
                    BackupKind::Full => {
                        let stored = blocks_where(&manifest, |r| matches!(r, BlockRecord::Data(_)));
                        tr.commit_full(stored.iter().map(|(n, b)| (n.as_str(), *b)));
                    }
                    BackupKind::Incremental if req.engine == EngineKind::Bitmap => {
                        let tomb = blocks_where(&manifest, |r| matches!(r, BlockRecord::Deleted));
                        if let Some(s) = &snapshot {
                            tr.commit(s, &tomb);
                        }
                    }
                    BackupKind::Incremental => {
                        // The time engine may have skipped some of these changes (late rows,
                        // deletes): keep them all for the next bitmap backup, a superset of
                        // what changed since this one.
                        if let Some(s) = snapshot.clone() {
                            tr.restore(s);
                        }
                    }
                }
                tr.set_last_backup(manifest.id.to_hex());
            }
            // The manifest is durable: the tracker state and then the feed may move on. A
            // failure here does not undo the backup, so it is not reported as a failed one
            // (the operator would retry what is already there): a tracker state left behind
            // makes the next backup a full one, an uncommitted feed position replays its
            // events (more blocks exported, nothing lost).
            if let Err(e) = t.persist().await {
                tracing::warn!(
                    backup = %manifest.id,
                    error = %e,
                    "the backup is committed, but saving the change tracking after it failed; \
                     the next backup re-reads those changes (or is a full backup)"
                );
            }
            Ok(BackupReport {
                manifest,
                full_reason,
                duration: started.elapsed(),
            })
        }
        (Ok((manifest, full_reason)), None) => Ok(BackupReport {
            manifest,
            full_reason,
            duration: started.elapsed(),
        }),
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

/// What a backup would do now. Nothing is written; the tracker is brought up to date but not
/// reset.
pub async fn plan(
    source: &dyn Source,
    repo: &dyn Repository,
    tracking: Option<&mut ChangeTracking>,
    req: &BackupRequest,
) -> Result<Plan, EngineError> {
    let catalog = source
        .catalog(&req.database)
        .await
        .map_err(|e| EngineError::source(format!("reading the catalog of {}", req.database), e))?;
    let snapshot = match tracking {
        Some(t) => {
            t.catch_up().await?;
            let mut tr = lock(t.tracker());
            let s = tr.snapshot_and_reset();
            tr.restore(s.clone());
            Some(s)
        }
        None => None,
    };
    let parent_state = latest_of(repo, &req.database).await?;
    plan_from(req, catalog, snapshot.as_ref(), parent_state)
}

/// The pure part of [`plan`]: what a backup of `catalog` would do given the tracker's
/// `snapshot` and the newest backup with the state its chain folds to.
pub fn plan_from(
    req: &BackupRequest,
    catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
    parent_state: Option<(Manifest, Folded)>,
) -> Result<Plan, EngineError> {
    let parent = parent_state.as_ref().map(|(m, f)| (m, f));
    let estimates = parent.map(|(_, f)| f);
    let d = decide_with(req, catalog, snapshot, parent)?;
    let mut p = Plan {
        database: req.database.clone(),
        engine: req.engine,
        kind: d.kind,
        full_reason: d.full_reason,
        parent: d.parent.map(|(id, _)| id),
        tables: Vec::new(),
        blocks: 0,
        whole_tables: 0,
        tombstones: 0,
        dropped_tables: d.dropped.len() as u64,
        estimated_rows: 0,
        estimated_bytes: 0,
    };
    for t in d.tasks {
        let blocks = t.blocks();
        p.blocks += blocks;
        p.whole_tables += t.whole as u64;
        p.tombstones += t.tombstone_if_empty.len() as u64;
        if let Some(f) = estimates {
            if let Some(stored) = f.tables.get(&t.table) {
                let rows: u64 = if t.whole {
                    stored.values().map(|b| b.rows).sum()
                } else {
                    matching(&t.buckets, stored).map(|(_, b)| b.rows).sum()
                };
                p.estimated_rows += rows;
            }
        }
        p.tables.push(PlanTable {
            table: t.table,
            buckets: t.buckets,
            blocks,
            whole_table: t.whole,
            tombstones: t.tombstone_if_empty,
            dropped: false,
        });
    }
    for name in d.dropped {
        p.tables.push(PlanTable {
            table: name,
            buckets: Vec::new(),
            blocks: 0,
            whole_table: false,
            tombstones: Vec::new(),
            dropped: true,
        });
    }
    p.tables.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(p)
}

/// The newest backup of `database` and the state its chain folds to.
async fn latest_of(
    repo: &dyn Repository,
    database: &str,
) -> Result<Option<(Manifest, Folded)>, EngineError> {
    let all = list_backups(repo).await?;
    let Some(latest) = all
        .iter()
        .filter(|m| m.database == database)
        .max_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)))
    else {
        return Ok(None);
    };
    let chain = chain_of(&all, latest)?;
    let folded = fold(&chain)?;
    Ok(Some((latest.clone(), folded)))
}

async fn decide(
    repo: &dyn Repository,
    req: &BackupRequest,
    catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
) -> Result<Decision, EngineError> {
    let parent = latest_of(repo, &req.database).await?;
    decide_with(req, catalog, snapshot, parent.as_ref().map(|(m, f)| (m, f)))
}

fn decide_with(
    req: &BackupRequest,
    mut catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
    parent: Option<(&Manifest, &Folded)>,
) -> Result<Decision, EngineError> {
    let full = |reason: Option<String>, catalog: CatalogSnapshot| Decision {
        kind: BackupKind::Full,
        full_reason: reason,
        parent: None,
        tasks: catalog
            .tables
            .iter()
            .map(|t| TableTask {
                table: t.name.clone(),
                whole: true,
                buckets: Vec::new(),
                tombstone_if_empty: Vec::new(),
            })
            .collect(),
        dropped: Vec::new(),
        catalog,
    };
    if req.engine == EngineKind::Full {
        return Ok(full(None, catalog));
    }
    if req.force_full {
        return Ok(full(
            Some("a full backup was asked for (--full)".into()),
            catalog,
        ));
    }
    let Some((parent, state)) = parent else {
        return Ok(full(
            Some(format!(
                "no previous backup of {} in the repository",
                req.database
            )),
            catalog,
        ));
    };
    if parent.bucket_width != req.bucket_width {
        return Ok(full(
            Some("the previous backup used another bucket width".into()),
            catalog,
        ));
    }
    let precision = catalog.database.precision;
    if parent.catalog.database.precision != precision {
        return Ok(full(
            Some("the database precision changed since the previous backup".into()),
            catalog,
        ));
    }
    let w = req.bucket_width.in_units(precision);
    let mut tasks = Vec::new();
    let in_catalog: std::collections::HashSet<&str> =
        catalog.tables.iter().map(|t| t.name.as_str()).collect();
    let mut dropped: Vec<String> = state
        .tables
        .keys()
        .filter(|n| !in_catalog.contains(n.as_str()))
        .cloned()
        .collect();
    match req.engine {
        // Returned above.
        EngineKind::Full => {}
        EngineKind::Time => {
            for t in &catalog.tables {
                match state.tables.get(&t.name) {
                    None => tasks.push(whole(&t.name, Vec::new())),
                    Some(blocks) => {
                        let Some(max) = blocks.values().map(|b| b.max_ts).max() else {
                            // Known but empty at the parent: everything may be new.
                            tasks.push(whole(&t.name, Vec::new()));
                            continue;
                        };
                        tasks.push(TableTask {
                            table: t.name.clone(),
                            whole: false,
                            // Marker: from this bucket on (resolved in `ranges_of`). From
                            // the bucket holding the previous maximum, not `max + 1`'s: with a
                            // composite key, rows can arrive later at that very timestamp.
                            buckets: vec![BucketRun::single(max.div_euclid(w))],
                            tombstone_if_empty: Vec::new(),
                        });
                    }
                }
            }
        }
        EngineKind::Bitmap => {
            let Some(snap) = snapshot else {
                return Err(EngineError::InvalidRequest(
                    "the bitmap engine needs change tracking (a change feed and a tracker state)"
                        .into(),
                ));
            };
            let gap =
                snap.inconsistency()
                    .map(str::to_string)
                    .or_else(|| match snap.last_backup() {
                        Some(b) if b == parent.id.to_hex() => None,
                        Some(b) => Some(format!(
                            "the tracker state covers backup {b}, but the newest backup is {}",
                            parent.id
                        )),
                        None => Some("the tracker state covers no backup yet".into()),
                    });
            if let Some(reason) = gap {
                if req.on_gap == OnGap::Fail {
                    return Err(EngineError::Gap { reason });
                }
                tracing::warn!(%reason, "taking a full backup");
                return Ok(full(Some(reason), catalog));
            }
            // Tables the feed saw dropped and not re-created, but which the catalog still
            // listed when read: gone now.
            let gone: BTreeSet<String> = snap
                .tables()
                .filter(|n| {
                    let c = snap.changes(n);
                    c.dropped && !c.created
                })
                .map(str::to_string)
                .collect();
            for t in &catalog.tables {
                let prev = state.tables.get(&t.name);
                let changes = snap.changes(&t.name);
                if gone.contains(&t.name) {
                    if prev.is_some() {
                        dropped.push(t.name.clone());
                    }
                    continue;
                }
                match prev {
                    None => tasks.push(whole(&t.name, Vec::new())),
                    Some(blocks) if changes.dropped => {
                        tasks.push(whole(&t.name, blocks.keys().copied().collect()));
                    }
                    Some(blocks) => {
                        // Dirty ∪ deleted (deleted buckets are normally dirty too).
                        let buckets = snap.changed_runs(&t.name);
                        if buckets.is_empty() {
                            continue;
                        }
                        let tomb = matching(&buckets, blocks).map(|(k, _)| k).collect();
                        tasks.push(TableTask {
                            table: t.name.clone(),
                            whole: false,
                            buckets,
                            tombstone_if_empty: tomb,
                        });
                    }
                }
            }
            catalog.tables.retain(|t| !gone.contains(&t.name));
        }
    }
    dropped.sort();
    dropped.dedup();
    Ok(Decision {
        kind: BackupKind::Incremental,
        full_reason: None,
        parent: Some((parent.id, parent.chain)),
        tasks,
        dropped,
        catalog,
    })
}

/// The entries of `blocks` whose keys lie in one of the ascending `runs`: one range
/// query per run, so the cost follows the entries found, not the buckets covered.
fn matching<'a, V: 'a>(
    runs: &'a [BucketRun],
    blocks: &'a BTreeMap<i64, V>,
) -> impl Iterator<Item = (i64, &'a V)> + 'a {
    runs.iter()
        .flat_map(move |r| blocks.range(r.buckets()).map(|(k, v)| (*k, v)))
}

impl TableTask {
    /// Buckets to export (0 for a whole table: its count is not known in advance).
    fn blocks(&self) -> u64 {
        self.buckets.iter().map(BucketRun::count).sum()
    }
}

fn whole(table: &str, tombstone_if_empty: Vec<i64>) -> TableTask {
    TableTask {
        table: table.to_string(),
        whole: true,
        buckets: Vec::new(),
        tombstone_if_empty,
    }
}

/// The export ranges of a task.
fn ranges_of(task: &TableTask, engine: EngineKind, kind: BackupKind, w: i64) -> Vec<TimeRange> {
    if task.whole {
        return vec![ALL_TIME];
    }
    if engine == EngineKind::Time && kind == BackupKind::Incremental {
        // One marker bucket: everything from its start on.
        let start = task
            .buckets
            .first()
            .map_or(ALL_TIME.start, |b| b.first.saturating_mul(w));
        return vec![TimeRange {
            start,
            end: ALL_TIME.end,
        }];
    }
    // One query per run; the source cuts its chunks at bucket boundaries (`split_every`).
    task.buckets
        .iter()
        .map(|r| TimeRange {
            start: r.first.saturating_mul(w),
            end: r.last.saturating_add(1).saturating_mul(w),
        })
        .collect()
}

/// Every timestamp TDengine can store (the extremes are kept out of the SQL literals).
const ALL_TIME: TimeRange = TimeRange {
    start: i64::MIN + 1,
    end: i64::MAX,
};

/// Counters shared by the export tasks.
#[derive(Default)]
struct Tally {
    rows: u64,
    blocks: u64,
    bytes_read: u64,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    source: &dyn Source,
    repo: &dyn Repository,
    req: &BackupRequest,
    d: Decision,
    feed: Option<(&Snapshot, &str)>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
    started_at: chrono::DateTime<Utc>,
) -> Result<(Manifest, Option<String>), EngineError> {
    let precision = d.catalog.database.precision;
    let w = req.bucket_width.in_units(precision);
    let bytes_before = repo.bytes_stored();
    let total_blocks: u64 = d.tasks.iter().map(TableTask::blocks).sum();
    progress.begin("export", total_blocks, 0);
    let kind = d.kind;
    let engine = req.engine;
    let exports = futures::stream::iter(d.tasks.into_iter().map(|task| async move {
        let ranges = ranges_of(&task, engine, kind, w);
        let blocks = export_table(
            source,
            repo,
            &req.database,
            precision,
            w,
            &task,
            ranges,
            progress,
            cancel,
        )
        .await?;
        Ok::<_, EngineError>((task, blocks))
    }))
    .buffer_unordered(req.parallel.max(1));
    futures::pin_mut!(exports);
    let mut tables: BTreeMap<String, TableRecord> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut tombstones = 0u64;
    while let Some(r) = exports.next().await {
        let (task, blocks) = r?;
        let mut recs: BTreeMap<i64, BlockRecord> = BTreeMap::new();
        for (bucket, (r, raw_bytes)) in &blocks {
            tally.rows += r.rows;
            tally.blocks += 1;
            tally.bytes_read += raw_bytes;
            recs.insert(*bucket, BlockRecord::Data(*r));
        }
        for b in &task.tombstone_if_empty {
            if !blocks.contains_key(b) {
                recs.insert(*b, BlockRecord::Deleted);
                tombstones += 1;
            }
        }
        if kind == BackupKind::Full || !recs.is_empty() || task.whole {
            tables.insert(task.table, TableRecord::Present { blocks: recs });
        }
    }
    progress.end();
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    if kind == BackupKind::Full {
        for t in &d.catalog.tables {
            tables
                .entry(t.name.clone())
                .or_insert_with(|| TableRecord::Present {
                    blocks: BTreeMap::new(),
                });
        }
    }
    for name in &d.dropped {
        tables.insert(name.clone(), TableRecord::Dropped);
        tombstones += 1;
    }
    let id = BackupId::from_bytes(rand::random());
    let (parent, chain) = match d.parent {
        Some((p, chain)) => (Some(p), chain),
        None => (None, id),
    };
    let feed_positions = feed.map(|(s, name)| FeedPositions {
        feed: name.to_string(),
        positions: s.positions().clone(),
    });
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        id,
        parent,
        chain,
        database: req.database.clone(),
        kind,
        engine: req.engine.as_str().to_string(),
        started_at,
        finished_at: Utc::now(),
        source: req.source_info.clone(),
        bucket_width: req.bucket_width,
        tables,
        feed_positions,
        stats: BackupStats {
            tables: d.catalog.tables.len() as u64,
            blocks: tally.blocks,
            tombstones,
            rows: tally.rows,
            bytes_read: tally.bytes_read,
            bytes_stored: 0,
            failed_blocks: 0,
        },
        catalog: d.catalog,
    };
    let mut manifest = manifest;
    // Blobs are written; what the manifest adds is small. Count before committing.
    manifest.stats.bytes_stored = repo.bytes_stored().saturating_sub(bytes_before);
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    repo.commit_manifest(&manifest)
        .await
        .map_err(|e| EngineError::repo(format!("committing backup {id}"), e))?;
    tracing::info!(backup = %id, kind = if manifest.kind == BackupKind::Full { "full" } else { "incremental" }, rows = manifest.stats.rows, blocks = manifest.stats.blocks, "backup committed");
    Ok((manifest, d.full_reason))
}

/// Exports one table's ranges, one blob per bucket. Returns bucket → (block, raw bytes).
#[allow(clippy::too_many_arguments)]
async fn export_table(
    source: &dyn Source,
    repo: &dyn Repository,
    database: &str,
    precision: Precision,
    w: i64,
    task: &TableTask,
    ranges: Vec<TimeRange>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<BTreeMap<i64, (BlockRef, u64)>, EngineError> {
    let mut out = BTreeMap::new();
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let context = || format!("exporting {database}.{}", task.table);
    let mut stream = source
        .export(
            database,
            precision,
            ExportRequest {
                table: task.table.clone(),
                ranges,
                split_every: Some(w),
            },
        )
        .await
        .map_err(|e| EngineError::source(context(), e))?;
    let mut current: Option<(i64, Vec<BlockChunk>)> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let next = stream
            .next_chunk()
            .await
            .map_err(|e| EngineError::source(context(), e))?;
        let bucket = next.as_ref().map(|c| c.range.start.div_euclid(w));
        let flush = match (&current, bucket) {
            (Some((b, _)), Some(nb)) => *b != nb,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if flush {
            if let Some((b, chunks)) = current.take() {
                let (r, raw) = store_block(repo, &task.table, b, &chunks).await?;
                progress.advance(1, r.rows, raw);
                out.insert(b, (r, raw));
            }
        }
        match next {
            None => break,
            Some(c) => {
                let b = c.range.start.div_euclid(w);
                match &mut current {
                    Some((_, chunks)) => chunks.push(c),
                    None => current = Some((b, vec![c])),
                }
            }
        }
    }
    Ok(out)
}

async fn store_block(
    repo: &dyn Repository,
    table: &str,
    bucket: i64,
    chunks: &[BlockChunk],
) -> Result<(BlockRef, u64), EngineError> {
    let mut data = Vec::new();
    let mut rows = 0u64;
    let mut raw = 0u64;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for c in chunks {
        c.encode(&mut data).map_err(|e| EngineError::DamagedBlock {
            table: table.to_string(),
            bucket,
            blob: String::new(),
            reason: e.to_string(),
        })?;
        rows += u64::from(c.rows);
        raw += c.raw.len() as u64;
        min_ts = min_ts.min(c.min_ts);
        max_ts = max_ts.max(c.max_ts);
    }
    let blob = repo
        .store_blob(&data)
        .await
        .map_err(|e| EngineError::repo(format!("storing {table} bucket {bucket}"), e))?;
    Ok((
        BlockRef {
            blob,
            rows,
            min_ts,
            max_ts,
        },
        raw,
    ))
}

/// The (table, bucket) pairs of `m` whose record `keep` accepts.
fn blocks_where(m: &Manifest, keep: impl Fn(&BlockRecord) -> bool) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (name, rec) in &m.tables {
        if let TableRecord::Present { blocks } = rec {
            for (b, r) in blocks {
                if keep(r) {
                    out.push((name.clone(), *b));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_the_intersection() {
        let blocks: BTreeMap<i64, u8> = [(-5, 0), (1, 1), (3, 3), (9, 9)].into();
        let run = |first, last| BucketRun { first, last };
        let runs = [run(-7, -5), run(2, 4), run(9, 10)];
        let got: Vec<i64> = matching(&runs, &blocks).map(|(k, _)| k).collect();
        assert_eq!(got, vec![-5, 3, 9]);
        assert_eq!(matching(&[], &blocks).count(), 0);
        assert_eq!(matching(&[run(i64::MIN, i64::MAX)], &blocks).count(), 4);
    }

    #[test]
    fn engine_names_round_trip() {
        for e in [EngineKind::Full, EngineKind::Time, EngineKind::Bitmap] {
            assert_eq!(e.as_str().parse::<EngineKind>().unwrap(), e);
        }
        assert!("fast".parse::<EngineKind>().is_err());
        assert_eq!("FAIL".parse::<OnGap>().unwrap(), OnGap::Fail);
        assert!("maybe".parse::<OnGap>().is_err());
    }

    #[test]
    fn time_engine_reads_from_the_bucket_after_the_previous_max() {
        let task = TableTask {
            table: "t".into(),
            whole: false,
            buckets: vec![BucketRun::single(3)],
            tombstone_if_empty: Vec::new(),
        };
        let r = ranges_of(&task, EngineKind::Time, BackupKind::Incremental, 10);
        assert_eq!(
            r,
            vec![TimeRange {
                start: 30,
                end: i64::MAX
            }]
        );
        let r = ranges_of(&task, EngineKind::Bitmap, BackupKind::Incremental, 10);
        assert_eq!(r, vec![TimeRange { start: 30, end: 40 }]);
    }
}
