//! Step 2 of a backup: export the decided tables in parallel, one blob per (table, bucket).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use taosbackup_core::{
    BackupKind, BackupSnapshot, BlobId, BlockChunk, BlockRef, Bucket, CatalogRoot, ExportRequest,
    Precision, Progress, Repository, Source, TimeRange,
};
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;
use super::{BackupRequest, Decision};
use crate::EngineError;
use crate::strategy::{EngineKind, TableTask};

/// What one table's export produced.
#[derive(Debug)]
pub(crate) struct Exported {
    pub(crate) task: TableTask,
    /// Bucket → (block, raw bytes read).
    pub(crate) blocks: BTreeMap<Bucket, (BlockRef, u64)>,
}

/// The shared zstd dictionaries of a backup (docs/format.md §5.3), for its catalog.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Dictionaries {
    /// Super table → the dictionary its new blocks are compressed with.
    pub(crate) current: BTreeMap<String, BlobId>,
    /// Every dictionary a data blob of the snapshot may need: the current ones and the
    /// parent's (whose blocks an incremental keeps).
    pub(crate) all: BTreeSet<BlobId>,
}

/// Blocks of a super table without a dictionary that are kept as training samples.
const SAMPLE_BLOCKS: usize = 128;
/// Sample bytes of one super table at which training starts even with fewer blocks: 64× the
/// dictionary's size. On the benchmark's blocks (29 and 41 KB) 2 MiB of samples (74 and 51
/// blocks) trained a dictionary that compressed every block of the run to within 0.02% and
/// 0.8% smaller than 4 MiB did, in half the training time (docs/performance-history.md, "Training
/// from 2 MiB of samples").
const SAMPLE_BYTES: usize = 2 << 20;
/// Sample bytes held across all super tables at once (memory bound); past it, blocks are
/// not sampled until training or a finished super table frees some.
const SAMPLE_BYTES_TOTAL: usize = 64 << 20;

/// A block held back as a training sample: stored once its super table's dictionary is
/// trained, with it, like every later block of the super table.
struct Held {
    table: String,
    bucket: Bucket,
    data: Vec<u8>,
    rows: u64,
    min_ts: i64,
    max_ts: i64,
    /// Raw bytes read for it.
    raw: u64,
}

/// How one super table's blocks are compressed.
enum DictState {
    /// Collecting blocks to train from, held back (not stored) meanwhile; their bytes.
    Sampling(Vec<Held>, usize),
    /// Being trained: blocks that arrive meanwhile are held back too (within the same
    /// memory bound), to be stored with the dictionary; their bytes.
    Training(Vec<Held>, usize),
    /// No dictionary could be trained, or the super table's exports ended before enough
    /// samples came: blocks go without one.
    Without,
    /// Blocks are compressed with this dictionary.
    With(BlobId),
}

/// Dictionary state of a running backup, shared by the parallel table exports.
struct DictPlan {
    /// Table → its super table (child tables only: normal tables have no dictionary).
    stable_of: HashMap<String, String>,
    state: Mutex<DictPlanState>,
}

struct DictPlanState {
    by_stable: HashMap<String, DictState>,
    /// Tasks not yet finished per super table (its held samples are stored at zero).
    tasks_left: HashMap<String, usize>,
    sample_bytes: usize,
    inherited: BTreeSet<BlobId>,
    /// Held blocks stored since: (table, bucket, block, raw bytes), for their tasks' results.
    stored_held: Vec<(String, Bucket, BlockRef, u64)>,
}

/// What to do with one block.
enum Compress {
    Plain(Held),
    With(BlobId, Held),
    /// Held back as a sample: nothing to store now.
    Hold,
    /// Train from these samples (the block among them), then store them all.
    Train(Vec<Held>),
}

impl DictPlan {
    /// Every super table starts sampling, except those whose dictionary `from` (the parent
    /// of an incremental, or the newest snapshot of the database for a full backup) names:
    /// those reuse it, so unchanged blocks keep their blob ids across backups.
    /// With `enabled` false nothing is sampled or trained and every new block is plain;
    /// an incremental still lists its parent's dictionaries (its kept blocks need them).
    fn new(d: &Decision, from: Option<&CatalogRoot>, enabled: bool) -> DictPlan {
        // Only the tables this backup exports are ever looked up: an incremental of 100
        // tables on a catalog of 10,000 copies 100 names, not 10,000 (and frees as few).
        let exported: HashSet<&str> = d.tasks.iter().map(|t| t.table.as_str()).collect();
        let stable_of: HashMap<String, String> = d
            .catalog
            .tables
            .iter()
            .filter(|t| exported.contains(t.name.as_str()))
            .filter_map(|t| Some((t.name.clone(), t.super_table.clone()?)))
            .collect();
        let mut tasks_left: HashMap<String, usize> = HashMap::new();
        for t in &d.tasks {
            if let Some(st) = stable_of.get(&t.table) {
                *tasks_left.entry(st.clone()).or_default() += 1;
            }
        }
        let mut by_stable = HashMap::new();
        let mut inherited = BTreeSet::new();
        if let Some(root) = from {
            for st in root.super_tables.iter().filter(|_| enabled) {
                if let Some(dict) = st.dictionary {
                    by_stable.insert(st.name.clone(), DictState::With(dict));
                }
            }
            // An incremental keeps the parent's blocks: every dictionary they may need.
            if d.kind == BackupKind::Incremental {
                inherited.extend(root.dictionaries.iter().copied());
                inherited.extend(root.super_tables.iter().filter_map(|s| s.dictionary));
            }
        }
        for st in d.catalog.super_tables.iter().filter(|_| enabled) {
            by_stable
                .entry(st.name.clone())
                .or_insert_with(|| DictState::Sampling(Vec::new(), 0));
        }
        DictPlan {
            stable_of,
            state: Mutex::new(DictPlanState {
                by_stable,
                tasks_left,
                sample_bytes: 0,
                inherited,
                stored_held: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DictPlanState> {
        // A panicking export task poisons nothing this code relies on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides how `block` is compressed.
    fn decide(&self, block: Held) -> Compress {
        let Some(stable) = self.stable_of.get(&block.table) else {
            return Compress::Plain(block);
        };
        let mut st = self.state();
        let st = &mut *st;
        match st.by_stable.get_mut(stable) {
            Some(DictState::With(id)) => Compress::With(*id, block),
            Some(DictState::Sampling(samples, bytes)) => {
                if let Err(block) = hold(&mut st.sample_bytes, samples, bytes, block) {
                    return Compress::Plain(block);
                }
                if samples.len() >= SAMPLE_BLOCKS || *bytes >= SAMPLE_BYTES {
                    st.sample_bytes -= *bytes;
                    let samples = std::mem::take(samples);
                    st.by_stable
                        .insert(stable.clone(), DictState::Training(Vec::new(), 0));
                    Compress::Train(samples)
                } else {
                    Compress::Hold
                }
            }
            Some(DictState::Training(held, bytes)) => {
                match hold(&mut st.sample_bytes, held, bytes, block) {
                    Ok(()) => Compress::Hold,
                    Err(block) => Compress::Plain(block),
                }
            }
            Some(DictState::Without) | None => Compress::Plain(block),
        }
    }

    /// The dictionary of `table`'s super table is trained (`None`: none could be): later
    /// blocks use it. Returns the blocks held back while it was trained, to be stored with
    /// it like the samples.
    fn trained(&self, table: &str, dict: Option<BlobId>) -> Vec<Held> {
        let Some(stable) = self.stable_of.get(table) else {
            return Vec::new();
        };
        let mut st = self.state();
        let st = &mut *st;
        let next = match dict {
            Some(d) => DictState::With(d),
            None => DictState::Without,
        };
        match st.by_stable.insert(stable.clone(), next) {
            Some(DictState::Training(held, bytes)) => {
                st.sample_bytes -= bytes;
                held
            }
            _ => Vec::new(),
        }
    }

    /// A task of `table` finished: a super table whose last task it was and that is still
    /// sampling (too few blocks to train from) gives back its held blocks, to be stored
    /// without a dictionary.
    fn task_done(&self, table: &str) -> Vec<Held> {
        let Some(stable) = self.stable_of.get(table) else {
            return Vec::new();
        };
        let mut st = self.state();
        let st = &mut *st;
        let left = st.tasks_left.entry(stable.clone()).or_default();
        *left = left.saturating_sub(1);
        if *left == 0 {
            if let Some(DictState::Sampling(held, bytes)) = st.by_stable.get_mut(stable) {
                st.sample_bytes -= *bytes;
                let held = std::mem::take(held);
                st.by_stable.insert(stable.clone(), DictState::Without);
                return held;
            }
        }
        Vec::new()
    }

    /// Records a held block as stored.
    fn held_stored(&self, h: &Held, block: BlockRef) {
        self.state()
            .stored_held
            .push((h.table.clone(), h.bucket, block, h.raw));
    }

    fn finish(&self) -> Dictionaries {
        let mut st = self.state();
        let current: BTreeMap<String, BlobId> = std::mem::take(&mut st.by_stable)
            .into_iter()
            .filter_map(|(name, s)| match s {
                DictState::With(id) => Some((name, id)),
                _ => None,
            })
            .collect();
        let mut all = std::mem::take(&mut st.inherited);
        all.extend(current.values().copied());
        Dictionaries { current, all }
    }

    /// Adds the held blocks stored since to their tasks' results. A block whose table has
    /// no result would be missing from the backup: that is an error, never skipped.
    fn merge_held(&self, out: &mut [Exported]) -> Result<(), EngineError> {
        let stored = std::mem::take(&mut self.state().stored_held);
        let by_table: HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, e)| (e.task.table.clone(), i))
            .collect();
        for (table, bucket, block, raw) in stored {
            let i = by_table.get(&table).ok_or_else(|| {
                EngineError::Internal(format!(
                    "block {table} bucket {bucket} was stored for a table this backup does \
                     not export"
                ))
            })?;
            out[*i].blocks.insert(bucket, (block, raw));
        }
        Ok(())
    }
}

/// Holds `block` back in `held` (their bytes: `bytes`), unless that would take the bytes
/// held across all super tables (`total`) past [`SAMPLE_BYTES_TOTAL`]: then gives it back.
fn hold(
    total: &mut usize,
    held: &mut Vec<Held>,
    bytes: &mut usize,
    block: Held,
) -> Result<(), Held> {
    let n = block.data.len();
    if *total + n > SAMPLE_BYTES_TOTAL {
        return Err(block);
    }
    held.push(block);
    *bytes += n;
    *total += n;
    Ok(())
}

/// The catalog whose dictionaries this backup reuses: the parent's (an incremental must
/// read it: its catalog lists the dictionaries the kept blocks need), or for a full backup
/// the newest snapshot of the same database, if any can be read (reading it only saves
/// training and keeps unchanged blocks' blob ids; a failure trains afresh).
async fn dictionary_source(
    repo: &dyn Repository,
    req: &BackupRequest,
    d: &Decision,
) -> Result<Option<CatalogRoot>, EngineError> {
    let read = |snapshot: BackupSnapshot| async move {
        let what = format!("catalog {} of backup {}", snapshot.catalog, snapshot.id);
        let bytes = repo
            .read_blob(&snapshot.catalog)
            .await
            .map_err(|e| EngineError::repo(format!("reading the {what}"), e))?;
        CatalogRoot::decode(&bytes, &what).map_err(|e| EngineError::DamagedSnapshot {
            backup: snapshot.id.to_hex(),
            reason: e.to_string(),
        })
    };
    if let Some(p) = &d.parent {
        return read(p.snapshot.clone()).await.map(Some);
    }
    if d.tasks.is_empty() || !req.dictionaries {
        return Ok(None);
    }
    let newest = match repo.list_snapshots().await {
        Ok(all) => all
            .into_iter()
            .filter(|s| s.database == req.database)
            .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id))),
        Err(e) => {
            tracing::warn!(error = %e, "listing backups for their dictionaries failed: they are trained afresh");
            None
        }
    };
    let Some(newest) = newest else {
        return Ok(None);
    };
    match read(newest).await {
        Ok(root) => Ok(Some(root)),
        Err(e) => {
            tracing::warn!(error = %e, "dictionaries are trained afresh");
            Ok(None)
        }
    }
}

/// What every export task holds: owned handles, so that each export runs as a task of its
/// own on the runtime's workers. A block is encoded, compressed, hashed and sealed by the
/// task that read it, so that work spreads over every worker; polled together inside the
/// backup's future, all of it ran on the one thread that polls that future
/// (docs/performance-history.md, "Exports as tasks of their own").
#[derive(Clone)]
struct Exporter {
    source: Arc<dyn Source>,
    repo: Arc<dyn Repository>,
    plan: Arc<DictPlan>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
    database: Arc<str>,
    precision: Precision,
    /// The bucket width in the database's precision.
    w: i64,
}

/// Exports every task of `d`; cancelled runs stop with [`EngineError::Cancelled`].
/// At most `req.parallel` exports run at once, each as a task; when one fails the others
/// are stopped, and this returns only once none of them runs any more (nothing of the run
/// keeps reading or storing after it reports).
pub(crate) async fn run(
    source: &Arc<dyn Source>,
    repo: &Arc<dyn Repository>,
    req: &BackupRequest,
    d: &Decision,
    progress: &Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<(Vec<Exported>, Dictionaries), EngineError> {
    let precision = d.catalog.database.precision;
    let w = req.bucket_width.in_units(precision);
    let from = dictionary_source(repo.as_ref(), req, d).await?;
    let dicts = Arc::new(DictPlan::new(d, from.as_ref(), req.dictionaries));
    if d.tasks.is_empty() {
        // Nothing changed: no export phase. Begun with a total of 0 it would read as "size
        // unknown", and the CLI would start estimating one from the catalog in the
        // background (a second catalog read competing with this run for nothing).
        return Ok((Vec::new(), dicts.finish()));
    }
    let total_blocks: u64 = d.tasks.iter().map(TableTask::blocks).sum();
    progress.begin("export", total_blocks, 0);
    let (kind, engine) = (d.kind, req.engine);
    let groups = group_tasks(
        d.tasks
            .iter()
            .map(|t| (t.clone(), ranges_of(t, engine, kind, w))),
        &dicts.stable_of,
        req.parallel.max(1),
        req.tables_per_query.max(1),
    );
    let exporter = Exporter {
        source: source.clone(),
        repo: repo.clone(),
        plan: dicts.clone(),
        progress: progress.clone(),
        cancel: cancel.clone(),
        database: Arc::from(req.database.as_str()),
        precision,
        w,
    };
    let mut tasks = Tasks::new(req.parallel, "an export task");
    let run = async move {
        for group in groups {
            tasks.spawn(exporter.clone().export_group(group)).await?;
        }
        tasks.finish().await
    }
    .await;
    progress.end();
    let mut out: Vec<Exported> = run?.into_iter().flatten().collect();
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    dicts.merge_held(&mut out)?;
    Ok((out, dicts.finish()))
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
            .map_or(ALL_TIME.start, |b| b.first.range_saturating(w).start);
        return vec![TimeRange {
            start,
            end: ALL_TIME.end,
        }];
    }
    // One query per run; the source cuts its chunks at bucket boundaries (`split_every`).
    task.buckets
        .iter()
        .map(|r| TimeRange {
            start: r.first.range_saturating(w).start,
            end: r.last.range_saturating(w).end,
        })
        .collect()
}

/// Every timestamp TDengine can store (the extremes are kept out of the SQL literals).
const ALL_TIME: TimeRange = TimeRange {
    start: i64::MIN + 1,
    end: i64::MAX,
};

/// One table's export: its task and the ranges to read.
type Job = (TableTask, Vec<TimeRange>);

/// Splits the jobs into the groups exported together: child tables of one super table with
/// the same ranges, at most `most` a group and no more than an equal share of `parallel`
/// exports (so a small incremental still reads on every connection); every other table
/// alone. Groups keep the order in which their first job came.
fn group_tasks(
    jobs: impl Iterator<Item = Job>,
    stable_of: &HashMap<String, String>,
    parallel: usize,
    most: usize,
) -> Vec<Vec<Job>> {
    let mut keyed: Vec<Vec<Job>> = Vec::new();
    let mut index: HashMap<(&str, Vec<TimeRange>), usize> = HashMap::new();
    for job in jobs {
        let Some(stable) = stable_of.get(&job.0.table) else {
            keyed.push(vec![job]);
            continue;
        };
        let i = *index
            .entry((stable.as_str(), job.1.clone()))
            .or_insert_with(|| {
                keyed.push(Vec::new());
                keyed.len() - 1
            });
        keyed[i].push(job);
    }
    let mut out = Vec::new();
    for jobs in keyed {
        let size = jobs.len().div_ceil(parallel.max(1)).clamp(1, most.max(1));
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            out.push(jobs.by_ref().take(size).collect());
        }
    }
    out
}

impl Exporter {
    /// Exports a group of tables' ranges (one table: [`Source::export`]; several:
    /// [`Source::export_tables`]), one blob per table and bucket. A table's dictionary task is
    /// done once its last chunk is stored.
    async fn export_group(self, group: Vec<Job>) -> Result<Vec<Exported>, EngineError> {
        let (repo, plan, progress) = (
            self.repo.as_ref(),
            self.plan.as_ref(),
            self.progress.as_ref(),
        );
        let (database, precision, w, cancel) =
            (&*self.database, self.precision, self.w, &self.cancel);
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let context = || match group.as_slice() {
            [(t, _)] => format!("exporting {database}.{}", t.table),
            [(t, _), ..] => format!(
                "exporting {database}.{} and {} other tables",
                t.table,
                group.len() - 1
            ),
            [] => format!("exporting from {database}"),
        };
        let mut requests: Vec<ExportRequest> = group
            .iter()
            .map(|(t, ranges)| ExportRequest {
                table: t.table.clone(),
                ranges: ranges.clone(),
                split_every: Some(w),
            })
            .collect();
        let mut stream = match requests.len() {
            1 => {
                self.source
                    .export(database, precision, requests.remove(0))
                    .await
            }
            _ => {
                self.source
                    .export_tables(database, precision, requests)
                    .await
            }
        }
        .map_err(|e| EngineError::source(context(), e))?;
        // Table → its index in the group, and whether its chunks have ended.
        let index: HashMap<&str, usize> = group
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.table.as_str(), i))
            .collect();
        let mut blocks: Vec<BTreeMap<Bucket, (BlockRef, u64)>> = vec![BTreeMap::new(); group.len()];
        let mut ended = vec![false; group.len()];
        // The open block: its table's index, its bucket and its chunks.
        let mut current: Option<(usize, Bucket, Vec<BlockChunk>)> = None;
        loop {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let next = stream
                .next_chunk()
                .await
                .map_err(|e| EngineError::source(context(), e))?;
            let at = match &next {
                None => None,
                Some(c) => {
                    let i = *index.get(c.table.as_str()).ok_or_else(|| {
                        EngineError::Internal(format!(
                            "{}: the source returned rows of {}, which was not asked for",
                            context(),
                            c.table
                        ))
                    })?;
                    if ended[i] {
                        return Err(EngineError::Internal(format!(
                            "{}: the source returned rows of {} after those of another table",
                            context(),
                            c.table
                        )));
                    }
                    Some((i, Bucket::containing(c.range.start, w)))
                }
            };
            let same =
                matches!((&current, at), (Some((i, b, _)), Some((ni, nb))) if *i == ni && *b == nb);
            if !same {
                if let Some((i, b, chunks)) = current.take() {
                    // A block held back as a dictionary sample is added when it is stored.
                    let table = &group[i].0.table;
                    if let Some(stored) =
                        store_block((repo, plan), table, b, &chunks, progress).await?
                    {
                        blocks[i].insert(b, stored);
                    }
                    if at.is_none_or(|(ni, _)| ni != i) {
                        ended[i] = true;
                        task_done((repo, plan), table, progress).await?;
                    }
                }
            }
            match (next, at) {
                (Some(c), Some((i, b))) => match &mut current {
                    Some((_, _, chunks)) => chunks.push(c),
                    None => current = Some((i, b, vec![c])),
                },
                _ => break,
            }
        }
        // Tables without rows in their ranges.
        for (i, (t, _)) in group.iter().enumerate() {
            if !ended[i] {
                task_done((repo, plan), &t.table, progress).await?;
            }
        }
        Ok(group
            .into_iter()
            .zip(blocks)
            .map(|((task, _), blocks)| Exported { task, blocks })
            .collect())
    }
}

async fn store_block(
    (repo, plan): (&dyn Repository, &DictPlan),
    table: &str,
    bucket: Bucket,
    chunks: &[BlockChunk],
    progress: &dyn Progress,
) -> Result<Option<(BlockRef, u64)>, EngineError> {
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
    let block = Held {
        table: table.to_string(),
        bucket,
        data,
        rows,
        min_ts,
        max_ts,
        raw,
    };
    match plan.decide(block) {
        Compress::Plain(h) => store_now(repo, &h, None, progress).await.map(Some),
        Compress::With(dict, h) => store_now(repo, &h, Some(&dict), progress).await.map(Some),
        Compress::Hold => Ok(None),
        Compress::Train(samples) => {
            let data: Vec<&[u8]> = samples.iter().map(|h| h.data.as_slice()).collect();
            let dict = repo.train_dictionary(&data).await.map_err(|e| {
                EngineError::repo(
                    format!("training a dictionary for {table}'s super table"),
                    e,
                )
            })?;
            let late = plan.trained(table, dict);
            for h in samples.into_iter().chain(late) {
                store_held((repo, plan), h, dict.as_ref(), progress).await?;
            }
            Ok(None)
        }
    }
}

/// `table`'s export ended: stores the blocks its super table held back as dictionary
/// samples if it was the last task to (see [`DictPlan::task_done`]).
async fn task_done(
    (repo, plan): (&dyn Repository, &DictPlan),
    table: &str,
    progress: &dyn Progress,
) -> Result<(), EngineError> {
    for h in plan.task_done(table) {
        store_held((repo, plan), h, None, progress).await?;
    }
    Ok(())
}

/// Stores a block that was held back as a sample (with the dictionary trained from it, if
/// any) and records it for its task's result.
async fn store_held(
    (repo, plan): (&dyn Repository, &DictPlan),
    h: Held,
    dict: Option<&BlobId>,
    progress: &dyn Progress,
) -> Result<(), EngineError> {
    let (block, _) = store_now(repo, &h, dict, progress).await?;
    plan.held_stored(&h, block);
    Ok(())
}

/// Stores one block (with `dict` when given) and reports it to `progress`.
async fn store_now(
    repo: &dyn Repository,
    h: &Held,
    dict: Option<&BlobId>,
    progress: &dyn Progress,
) -> Result<(BlockRef, u64), EngineError> {
    let blob = match dict {
        None => repo.store_blob(&h.data).await,
        Some(d) => repo.store_blob_with_dictionary(&h.data, d).await,
    }
    .map_err(|e| EngineError::repo(format!("storing {} bucket {}", h.table, h.bucket), e))?;
    progress.advance(1, h.rows, h.raw);
    Ok((
        BlockRef {
            blob,
            rows: h.rows,
            min_ts: h.min_ts,
            max_ts: h.max_ts,
        },
        h.raw,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::BucketRun;

    fn job(table: &str, start: i64) -> Job {
        let task = TableTask {
            table: table.into(),
            whole: true,
            buckets: Vec::new(),
            tombstones: crate::strategy::Tombstones::None,
        };
        (task, vec![TimeRange { start, end: 100 }])
    }

    fn tables(groups: &[Vec<Job>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|(t, _)| t.table.as_str()).collect())
            .collect()
    }

    #[test]
    fn children_of_one_super_table_with_the_same_ranges_are_grouped() {
        let stable_of: HashMap<String, String> = [("a", "s"), ("b", "s"), ("c", "s"), ("x", "u")]
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect();
        let jobs = || {
            vec![
                job("a", 0),
                job("n", 0),
                job("x", 0),
                job("b", 0),
                job("c", 5),
                job("m", 0),
            ]
            .into_iter()
        };
        // Normal tables alone; `c` asks for other ranges; `x` is another super table's.
        let g = group_tasks(jobs(), &stable_of, 1, 100);
        assert_eq!(
            tables(&g),
            vec![vec!["a", "b"], vec!["n"], vec!["x"], vec!["c"], vec!["m"]]
        );
        // At most `most` a group.
        let g = group_tasks(jobs(), &stable_of, 1, 1);
        assert_eq!(g.len(), 6);
        assert!(g.iter().all(|g| g.len() == 1));
    }

    #[test]
    fn groups_share_the_tables_out_over_the_parallel_exports() {
        let stable_of: HashMap<String, String> = (0..10)
            .map(|i| (format!("t{i}"), "s".to_string()))
            .collect();
        let jobs = || (0..10).map(|i| job(&format!("t{i}"), 0));
        let sizes = |g: Vec<Vec<Job>>| g.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(group_tasks(jobs(), &stable_of, 4, 100)), [3, 3, 3, 1]);
        assert_eq!(sizes(group_tasks(jobs(), &stable_of, 1, 4)), [4, 4, 2]);
        assert_eq!(sizes(group_tasks(jobs(), &stable_of, 20, 100)), [1; 10]);
    }

    #[test]
    fn time_engine_reads_from_the_bucket_after_the_previous_max() {
        let task = TableTask {
            table: "t".into(),
            whole: false,
            buckets: vec![BucketRun::single(Bucket(3))],
            tombstones: crate::strategy::Tombstones::None,
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
