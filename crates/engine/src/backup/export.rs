//! Step 2 of a backup: export the decided tables in parallel, one blob per (table, bucket).

use std::collections::BTreeMap;

use futures::StreamExt;
use taosbackup_core::{
    BackupKind, BlockChunk, BlockRef, Bucket, ExportRequest, Precision, Progress, Repository,
    Source, TimeRange,
};
use tokio_util::sync::CancellationToken;

use super::{BackupRequest, Decision};
use crate::EngineError;
use crate::strategy::{EngineKind, TableTask};

/// What one table's export produced.
#[derive(Debug)]
pub(crate) struct Exported {
    pub(crate) task: TableTask,
    /// Bucket → (block, raw bytes read).
    pub(crate) blocks: BTreeMap<i64, (BlockRef, u64)>,
}

/// Exports every task of `d`; cancelled runs stop with [`EngineError::Cancelled`].
pub(crate) async fn run(
    source: &dyn Source,
    repo: &dyn Repository,
    req: &BackupRequest,
    d: &Decision,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Vec<Exported>, EngineError> {
    let precision = d.catalog.database.precision;
    let w = req.bucket_width.in_units(precision);
    let total_blocks: u64 = d.tasks.iter().map(TableTask::blocks).sum();
    progress.begin("export", total_blocks, 0);
    let kind = d.kind;
    let engine = req.engine;
    let exports = futures::stream::iter(d.tasks.iter().cloned().map(|task| async move {
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
        Ok::<_, EngineError>(Exported { task, blocks })
    }))
    .buffer_unordered(req.parallel.max(1));
    futures::pin_mut!(exports);
    let mut out = Vec::with_capacity(d.tasks.len());
    while let Some(r) = exports.next().await {
        out.push(r?);
    }
    progress.end();
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    Ok(out)
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
        let bucket = next
            .as_ref()
            .map(|c| Bucket::containing(c.range.start, w).index());
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
                let b = Bucket::containing(c.range.start, w).index();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::BucketRun;

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
