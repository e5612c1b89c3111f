//! Restore orchestration: resolve a backup point to one snapshot, read that snapshot's
//! objects only (its catalog, tree and the shards of the selected tables), recreate the
//! schema, write every block in parallel, then check row counts per table against it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use taosbackup_core::{
    BackupId, BlockChunk, BlockRef, Bucket, Progress, Repository, RestoreOptions, Source,
    TableKind, TimeRange,
};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::inspect::{ObjectsRead, load_state};
use crate::points::{BackupPoint, lineage, resolve_point};

/// One restore run's parameters.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Which backup.
    pub point: BackupPoint,
    /// Which source database's backups (needed when the repository holds several).
    pub database: Option<String>,
    /// Name of the database to restore into (the source's name when `None`).
    pub target_database: Option<String>,
    /// Only these tables (empty: all).
    pub tables: Vec<String>,
    /// Only the child tables of these super tables (empty: all).
    pub stables: Vec<String>,
    /// Write into an existing database instead of refusing.
    pub into_existing: bool,
    /// Create the target with `KEEP <days>d` so old rows are accepted.
    pub keep_override_days: Option<u32>,
    /// Only report what would be restored.
    pub dry_run: bool,
    /// Writes at once (each of one table's consecutive blocks, joined).
    pub parallel: usize,
}

/// A table whose row count after the restore differs from the backup's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CountMismatch {
    /// Table name.
    pub table: String,
    /// Rows the backup holds (minus rows the target refused because of its KEEP).
    pub expected: u64,
    /// Rows the target has.
    pub actual: u64,
}

/// The result of a restore.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// The backup point restored.
    pub backup: BackupId,
    /// Its lineage (parents still in the repository, back to a full backup), oldest first,
    /// ending with `backup`. Informational: only `backup`'s objects are read.
    pub chain: Vec<BackupId>,
    /// The repository objects read to plan the restore (snapshot, tree, catalog, shards);
    /// the data blobs come on top.
    pub objects_read: ObjectsRead,
    /// The database written.
    pub target_database: String,
    /// Tables restored.
    pub tables: u64,
    /// Blocks written.
    pub blocks: u64,
    /// Rows the backup holds for the restored tables.
    pub rows_expected: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows the target refused because they are older than its KEEP.
    pub rows_rejected_by_keep: u64,
    /// Tables whose row counts do not match (empty after a good restore).
    pub count_mismatches: Vec<CountMismatch>,
    /// Nothing was written.
    pub dry_run: bool,
    /// Wall time.
    #[serde(with = "secs")]
    pub duration: Duration,
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Restores a backup point.
pub async fn restore(
    source: &dyn Source,
    repo: &dyn Repository,
    req: &RestoreRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<RestoreReport, EngineError> {
    let started = Instant::now();
    let (listed, all) = resolve_point(repo, req.database.as_deref(), &req.point).await?;
    // The listing may come from a local cache: what is restored is read from the
    // repository itself.
    let point = repo
        .load_snapshot(&listed.id)
        .await
        .map_err(|e| EngineError::repo(format!("loading backup {}", listed.id), e))?;
    let (folded, objects_read) = load_state(repo, &point, &req.tables, &req.stables).await?;
    crate::phase("restore", "backup read", started, folded.tables.len());
    let mut catalog = folded.catalog.clone();
    select(&mut catalog, &req.tables, &req.stables)?;
    let target_name = req
        .target_database
        .clone()
        .unwrap_or_else(|| catalog.database.name.clone());
    let mut report = RestoreReport {
        backup: point.id,
        chain: lineage(&all, &listed),
        objects_read,
        target_database: target_name,
        tables: catalog.tables.len() as u64,
        blocks: 0,
        rows_expected: 0,
        rows_written: 0,
        rows_rejected_by_keep: 0,
        count_mismatches: Vec::new(),
        dry_run: req.dry_run,
        duration: Duration::ZERO,
    };
    let jobs = interleave(
        catalog
            .tables
            .iter()
            .filter_map(|t| folded.tables.get(&t.name).map(|blocks| (&t.name, blocks))),
        req.parallel.max(1),
        RUN_BLOCKS,
    );
    report.blocks = jobs.iter().map(|j| j.1.len() as u64).sum();
    report.rows_expected = jobs.iter().flat_map(|j| &j.1).map(|(_, r)| r.rows).sum();
    if req.dry_run {
        report.duration = started.elapsed();
        return Ok(report);
    }
    let options = RestoreOptions {
        target_database: req.target_database.clone(),
        keep: req.keep_override_days.map(|d| format!("{d}d")),
        allow_existing: req.into_existing,
    };
    let target = source
        .create_schema(&catalog, &options)
        .await
        .map_err(|e| EngineError::source("creating the target database and tables", e))?;
    report.target_database = target.clone();
    crate::phase("restore", "schema created", started, catalog.tables.len());
    progress.begin("restore", report.blocks, report.rows_expected);
    let target_ref = target.as_str();
    let writes = futures::stream::iter(jobs.into_iter().map(|(table, run)| async move {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let written = write_run(source, repo, target_ref, &table, &run, (progress, cancel)).await?;
        Ok::<_, EngineError>((table, written))
    }))
    .buffer_unordered(req.parallel.max(1));
    futures::pin_mut!(writes);
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(r) = writes.next().await {
        let (table, (written, refused)) = r?;
        report.rows_written += written;
        report.rows_rejected_by_keep += refused;
        if refused > 0 {
            *rejected.entry(table).or_default() += refused;
        }
    }
    progress.end();
    crate::phase("restore", "rows written", started, report.blocks as usize);
    // The check: every restored table has the rows the backup holds. Child tables are
    // counted one query per super table (one per table would double the round trips of
    // restoring many small tables); normal tables one by one.
    let mut normal: Vec<&str> = Vec::new();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &catalog.tables {
        match t.super_table.as_deref() {
            Some(st) if t.kind == TableKind::Child => children.entry(st).or_default().push(&t.name),
            _ => normal.push(&t.name),
        }
    }
    let counts = futures::stream::iter(
        children
            .into_iter()
            .map(|(st, names)| CountJob::Children(st, names))
            .chain(normal.into_iter().map(CountJob::Table))
            .map(|job| async move {
                match job {
                    CountJob::Table(name) => {
                        let n = source.count_rows(target_ref, name).await.map_err(|e| {
                            EngineError::source(
                                format!("counting the rows of {target_ref}.{name}"),
                                e,
                            )
                        })?;
                        Ok::<_, EngineError>(vec![(name, n)])
                    }
                    CountJob::Children(st, names) => {
                        let by_child =
                            source
                                .count_rows_by_child(target_ref, st)
                                .await
                                .map_err(|e| {
                                    EngineError::source(
                                        format!("counting the rows of {target_ref}.{st}'s tables"),
                                        e,
                                    )
                                })?;
                        Ok(names
                            .into_iter()
                            .map(|n| (n, by_child.get(n).copied().unwrap_or(0)))
                            .collect())
                    }
                }
            }),
    )
    .buffer_unordered(req.parallel.max(1));
    futures::pin_mut!(counts);
    let mut checked: Vec<(String, u64, u64)> = Vec::new();
    while let Some(r) = counts.next().await {
        for (name, actual) in r? {
            let expected = folded
                .rows(name)
                .saturating_sub(rejected.get(name).copied().unwrap_or(0));
            checked.push((name.to_string(), expected, actual));
        }
    }
    let checked_tables = checked.len();
    for (table, expected, actual) in checked {
        // Merging into an existing table may add rows of its own; fewer is always wrong.
        let bad = if req.into_existing {
            actual < expected
        } else {
            actual != expected
        };
        if bad {
            report.count_mismatches.push(CountMismatch {
                table,
                expected,
                actual,
            });
        }
    }
    report
        .count_mismatches
        .sort_by(|a, b| a.table.cmp(&b.table));
    crate::phase("restore", "rows counted", started, checked_tables);
    report.duration = started.elapsed();
    Ok(report)
}

/// Bytes (as read, before the inverse transforms) up to which a block is decoded on the
/// restore's task rather than on the blocking pool. The benchmark's blocks (one day of
/// one-minute meters rows, ~29–36 KB; 20 rows, ~1 KB) restore faster and with less CPU
/// decoded inline (docs/performance-history.md, "Small blocks decoded on the restore's task");
/// larger blocks, which the benchmark does not have, stay on the pool as before.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Blocks of one table that one restore job reads in turn, joining them into as few writes
/// as [`JOIN_BYTES`] allows.
const RUN_BLOCKS: usize = 16;

/// Raw bytes up to which a table's consecutive blocks are joined into one raw-block write.
/// Each write is a round trip and, on the server, one submit to apply (TDengine's
/// documentation advises writing in batches: "High Performance Writing"). 1 MiB is a
/// choice, not a limit read in TDengine's or taosAdapter's source: a job holds about this
/// plus one block, and a block of the benchmark's meters rows is ~41 KB.
const JOIN_BYTES: usize = 1 << 20;

/// The writes, as runs of up to `run` consecutive blocks of one table, in groups of `width`
/// tables, each group's runs interleaved table by table: the first run of each, then the
/// second of each, and so on. With `width` jobs at once, the writes in flight are then of
/// different tables, and a table's blocks arrive in time order: the emulator appends them
/// instead of merging a block into rows written after it (whether TDengine's memtable gains
/// from the order was not checked; no answer depends on it). A group's tables are
/// neighbours in the backup, so its blocks lie close together in the packs, where one
/// read-ahead serves them.
#[allow(clippy::type_complexity)]
fn interleave<'a>(
    tables: impl Iterator<Item = (&'a String, &'a BTreeMap<i64, BlockRef>)>,
    width: usize,
    run: usize,
) -> Vec<(String, Vec<(Bucket, BlockRef)>)> {
    let tables: Vec<_> = tables.collect();
    let mut jobs = Vec::new();
    for group in tables.chunks(width.max(1)) {
        let mut iters: Vec<_> = group.iter().map(|(n, b)| (*n, b.iter())).collect();
        loop {
            let before = jobs.len();
            for (name, blocks) in &mut iters {
                let next: Vec<(Bucket, BlockRef)> = blocks
                    .by_ref()
                    .take(run.max(1))
                    .map(|(b, r)| (Bucket(*b), *r))
                    .collect();
                if !next.is_empty() {
                    jobs.push(((*name).clone(), next));
                }
            }
            if jobs.len() == before {
                break;
            }
        }
    }
    jobs
}

/// One post-restore count query: a normal table, or a super table's children.
enum CountJob<'a> {
    Table(&'a str),
    Children(&'a str, Vec<&'a str>),
}

/// Reads a run of one table's blocks in order and writes their rows, joining consecutive
/// chunks into one raw block up to [`JOIN_BYTES`] ([`BlockChunk::concat`]; chunks it cannot
/// join are written one by one, as before). Returns (rows written, rows refused by KEEP).
async fn write_run(
    source: &dyn Source,
    repo: &dyn Repository,
    target: &str,
    table: &str,
    run: &[(Bucket, BlockRef)],
    (progress, cancel): (&dyn Progress, &CancellationToken),
) -> Result<(u64, u64), EngineError> {
    let mut pending = Pending::default();
    let (mut written, mut refused) = (0, 0);
    for (bucket, r) in run {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let (chunks, bytes) = read_block(repo, table, *bucket, r).await?;
        let size: usize = chunks.iter().map(|c| c.raw.len()).sum();
        if !pending.chunks.is_empty() && pending.size + size > JOIN_BYTES {
            let (w, k) = pending.flush(source, target, table, progress).await?;
            written += w;
            refused += k;
        }
        pending.chunks.extend(chunks);
        pending.size += size;
        pending.blocks += 1;
        pending.bytes += bytes;
    }
    let (w, k) = pending.flush(source, target, table, progress).await?;
    Ok((written + w, refused + k))
}

/// Decoded blocks of one table waiting to be written together.
#[derive(Default)]
struct Pending {
    chunks: Vec<BlockChunk>,
    /// Raw bytes of `chunks`.
    size: usize,
    /// Blocks and stored bytes they came from (for progress).
    blocks: u64,
    bytes: u64,
}

impl Pending {
    /// Writes the pending chunks, each run of them with the same columns joined into one
    /// write (a run that cannot be joined is written chunk by chunk), and reports their
    /// blocks done.
    async fn flush(
        &mut self,
        source: &dyn Source,
        target: &str,
        table: &str,
        progress: &dyn Progress,
    ) -> Result<(u64, u64), EngineError> {
        // Each run joined, or left as its chunks when it cannot be.
        fn push(writes: &mut Vec<BlockChunk>, run: Vec<BlockChunk>) {
            if run.len() > 1 {
                if let Some(joined) = BlockChunk::concat(&run) {
                    writes.push(joined);
                    return;
                }
            }
            writes.extend(run);
        }
        let mut writes: Vec<BlockChunk> = Vec::new();
        let mut run: Vec<BlockChunk> = Vec::new();
        for c in std::mem::take(&mut self.chunks) {
            // A column added or dropped between two blocks starts another run.
            if run
                .last()
                .is_some_and(|l| l.columns != c.columns || l.precision != c.precision)
            {
                push(&mut writes, std::mem::take(&mut run));
            }
            run.push(c);
        }
        push(&mut writes, run);
        let (mut written, mut refused) = (0, 0);
        for c in &writes {
            let w = source
                .write_chunk(target, table, c)
                .await
                .map_err(|e| EngineError::source(format!("writing {target}.{table}"), e))?;
            written += w.rows_written;
            refused += w.rows_rejected_by_keep;
        }
        progress.advance(self.blocks, written, self.bytes);
        *self = Pending::default();
        Ok((written, refused))
    }
}

/// Reads and decodes one block, checking its rows against the shard's record; returns its
/// chunks and its stored size.
async fn read_block(
    repo: &dyn Repository,
    table: &str,
    bucket: Bucket,
    r: &BlockRef,
) -> Result<(Vec<BlockChunk>, u64), EngineError> {
    let data = repo.read_blob_ahead(&r.blob).await.map_err(|e| {
        EngineError::repo(
            format!("reading block {table} bucket {bucket} ({})", r.blob),
            e,
        )
    })?;
    let damaged = |reason: String| EngineError::DamagedBlock {
        table: table.to_string(),
        bucket,
        blob: r.blob.to_hex(),
        reason,
    };
    let range = TimeRange {
        start: r.min_ts,
        end: r.max_ts.saturating_add(1),
    };
    // Decoding (the inverse column transforms) is CPU work: on the blocking pool it runs on
    // another core while this task's siblings read and write other blocks, instead of
    // holding up the one task that polls every write of the restore. A small block is
    // decoded here: handing it to another thread and waking this one again costs more than
    // its decoding.
    let bytes = data.len() as u64;
    let chunks = if data.len() <= INLINE_DECODE_BYTES {
        BlockChunk::decode_all(&data, table, range)
    } else {
        let name = table.to_string();
        tokio::task::spawn_blocking(move || BlockChunk::decode_all(&data, &name, range))
            .await
            .map_err(|e| EngineError::InvalidRequest(format!("decoding a block failed: {e}")))?
    }
    .map_err(|e| damaged(e.to_string()))?;
    let rows: u64 = chunks.iter().map(|c| u64::from(c.rows)).sum();
    if rows != r.rows {
        return Err(damaged(format!(
            "holds {rows} rows, the manifest says {}",
            r.rows
        )));
    }
    Ok((chunks, bytes))
}

/// Keeps only the selected tables (and the super tables they need).
fn select(
    catalog: &mut taosbackup_core::CatalogSnapshot,
    tables: &[String],
    stables: &[String],
) -> Result<(), EngineError> {
    if tables.is_empty() && stables.is_empty() {
        return Ok(());
    }
    for t in tables {
        if !catalog.tables.iter().any(|x| &x.name == t) {
            return Err(EngineError::InvalidRequest(format!(
                "table {t} is not in the backup (see `taosbackup show`)"
            )));
        }
    }
    for s in stables {
        if !catalog.super_tables.iter().any(|x| &x.name == s) {
            return Err(EngineError::InvalidRequest(format!(
                "super table {s} is not in the backup (see `taosbackup show`)"
            )));
        }
    }
    catalog.tables.retain(|t| {
        tables.contains(&t.name) || t.super_table.as_ref().is_some_and(|s| stables.contains(s))
    });
    let needed: BTreeSet<&str> = catalog
        .tables
        .iter()
        .filter_map(|t| t.super_table.as_deref())
        .chain(stables.iter().map(String::as_str))
        .collect();
    let needed: BTreeSet<String> = needed.into_iter().map(str::to_string).collect();
    catalog.super_tables.retain(|s| needed.contains(&s.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use taosbackup_core::BlobId;

    fn blocks(buckets: &[i64]) -> BTreeMap<i64, BlockRef> {
        buckets
            .iter()
            .map(|&b| {
                let r = BlockRef {
                    blob: BlobId::from_bytes([b as u8; 32]),
                    rows: b as u64,
                    min_ts: b,
                    max_ts: b,
                };
                (b, r)
            })
            .collect()
    }

    #[test]
    fn writes_interleave_runs_of_width_tables_at_a_time() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let maps = [
            blocks(&[1, 2, 3]),
            blocks(&[1]),
            blocks(&[5, 6]),
            blocks(&[7]),
            blocks(&[]),
        ];
        let order = |width, run| -> Vec<(String, Vec<i64>)> {
            interleave(names.iter().zip(&maps), width, run)
                .into_iter()
                .map(|(t, blocks)| {
                    let buckets = blocks
                        .iter()
                        .map(|(b, r)| {
                            assert_eq!(r.min_ts, b.0, "each bucket keeps its block");
                            b.0
                        })
                        .collect();
                    (t, buckets)
                })
                .collect()
        };
        let named = |v: &[(&str, &[i64])]| -> Vec<(String, Vec<i64>)> {
            v.iter().map(|(t, b)| (t.to_string(), b.to_vec())).collect()
        };
        // Runs of one block: the blocks of `width` tables interleaved.
        assert_eq!(
            order(2, 1),
            named(&[
                ("a", &[1]),
                ("b", &[1]),
                ("a", &[2]),
                ("a", &[3]),
                ("c", &[5]),
                ("d", &[7]),
                ("c", &[6])
            ])
        );
        // Runs of two: a table's consecutive blocks together, in time order.
        assert_eq!(
            order(2, 2),
            named(&[
                ("a", &[1, 2]),
                ("b", &[1]),
                ("a", &[3]),
                ("c", &[5, 6]),
                ("d", &[7])
            ])
        );
        assert_eq!(
            order(1, 16),
            named(&[("a", &[1, 2, 3]), ("b", &[1]), ("c", &[5, 6]), ("d", &[7])])
        );
        assert_eq!(order(0, 0), order(1, 1));
        assert_eq!(order(8, 1).len(), 7);
    }
}
