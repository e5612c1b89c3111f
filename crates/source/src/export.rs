//! Streaming export: a table's rows for requested time ranges as raw-block chunks.
//!
//! Adjacent ranges are merged into one query (`… WHERE ts >= a AND ts < b ORDER BY ts`).
//! A background task reads the result block by block and hands chunks over a channel of
//! capacity 2, so memory stays bounded whatever the table size. On a transient failure the
//! task takes a fresh connection and resumes *at* the last delivered timestamp (`ts >= t`,
//! never `t + 1`: with a composite key several rows share a timestamp, and the rest of that
//! timestamp's rows may not have been delivered), leaving out the rows of that timestamp
//! already delivered, recognised by their key (the composite key column, or the timestamp
//! alone for tables without one). The stream either delivers every row once or ends in an
//! error.
//!
//! Dropping the stream never cuts a fetch off mid-flight (taos-ws 0.12.3 panics in its
//! reader task when the answer of a dropped fetch arrives; see `Pool::abandon`): the task
//! notices the closed channel after the fetch in flight, stops issuing fetches, frees the
//! result and returns its connection. `TaosSource::close` waits for such tasks.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use taos::AsyncFetchable;
use taosbackup_core::{BlockChunk, Bucket, ChunkStream, Precision, SourceError, TimeRange};
use tokio::sync::mpsc;

use crate::Error;
use crate::conn::{Ctx, Pool};
use crate::raw::RawView;
use crate::sql;
use crate::wsquery::WsQuery;

/// Sorts `ranges` and groups adjacent ones (`a.end == b.start`): each group is read with one
/// query. Empty ranges are dropped; overlapping ranges are an error.
pub(crate) fn group_ranges(mut ranges: Vec<TimeRange>) -> Result<Vec<Vec<TimeRange>>, String> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut groups: Vec<Vec<TimeRange>> = Vec::new();
    for r in ranges {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|l| l.end > r.start) => {
                return Err(format!("ranges overlap at {}", r.start));
            }
            Some(g) if g.last().is_some_and(|l| l.end == r.start) => g.push(r),
            _ => groups.push(vec![r]),
        }
    }
    Ok(groups)
}

/// Where one export stands.
struct Job {
    pool: Arc<Pool>,
    db: String,
    table: String,
    ts_column: String,
    /// The composite key column, when the table has one.
    key_column: Option<String>,
    precision: Precision,
    groups: Vec<Vec<TimeRange>>,
    /// Cut chunks at multiples of this width too (the bucket width in timestamp units).
    split_every: Option<i64>,
    /// The table has DECIMAL, DECIMAL64 or BLOB columns, whose blocks the connector cannot
    /// parse: it must be read with the tool's own WebSocket query client (which reads every
    /// table where the endpoint suits it, [`Pool::own_client`]).
    connector_cannot_read: bool,
    tx: mpsc::Sender<Result<BlockChunk, Error>>,
}

/// Where a resumed query starts and which rows at that timestamp were already delivered.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The next query reads `ts >= from`.
    from: i64,
    /// The keys (composite key cell, or empty for tables without one) of the rows at `from`
    /// already delivered.
    seen: HashSet<Vec<u8>>,
}

impl Resume {
    /// A progress measure: it grows with every delivered block.
    fn mark(&self) -> (i64, usize) {
        (self.from, self.seen.len())
    }
}

/// Converts the connector's precision.
fn precision_of(p: taos::Precision) -> Precision {
    match p {
        taos::Precision::Millisecond => Precision::Ms,
        taos::Precision::Microsecond => Precision::Us,
        taos::Precision::Nanosecond => Precision::Ns,
    }
}

impl Job {
    async fn run(self) {
        if let Err(e) = self.run_inner().await {
            // The receiver may be gone (the caller stopped reading); nothing to report to.
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn run_inner(&self) -> Result<(), Error> {
        for group in &self.groups {
            if self.tx.is_closed() {
                break;
            }
            self.export_group(group).await?;
        }
        Ok(())
    }

    /// Reads one group of adjacent ranges, resuming after transient failures.
    async fn export_group(&self, group: &[TimeRange]) -> Result<(), Error> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(());
        };
        let end = last.end;
        let mut resume = Resume {
            from: first.start,
            seen: HashSet::new(),
        };
        let mut attempt = 0u32;
        loop {
            if self.tx.is_closed() {
                return Ok(());
            }
            let before = resume.mark();
            match self.read_from(group, &mut resume, end).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if resume.mark() != before {
                        // Progress since the last failure: the retry budget starts again.
                        attempt = 0;
                    }
                    if !e.is_retryable() || attempt >= self.pool.retry_count {
                        return Err(e);
                    }
                    attempt += 1;
                    tracing::warn!(table = %self.table, attempt, error = %e, "export interrupted, resuming");
                    tokio::time::sleep(self.pool.retry_interval).await;
                }
            }
        }
    }

    /// One query from `resume` to `end`; `resume` follows every delivered block, so on
    /// failure it says where to start again.
    async fn read_from(
        &self,
        group: &[TimeRange],
        resume: &mut Resume,
        end: i64,
    ) -> Result<(), Error> {
        let ctx = Ctx::table(&self.db, &self.table).doing("exporting rows");
        let sql = sql::export_rows(&self.db, &self.table, &self.ts_column, resume.from, end);
        let mut answer = Answer::start(
            &self.pool,
            ctx,
            &sql,
            self.connector_cannot_read,
            self.precision,
        )
        .await?;
        let key_col = self.key_index(&answer.names)?;
        if answer.precision != self.precision {
            let name = match answer.precision {
                Precision::Ms => "ms",
                Precision::Us => "us",
                Precision::Ns => "ns",
            };
            tracing::debug!(table = %self.table, precision = name, "result precision differs from the request");
        }
        loop {
            // The reader is gone (the engine stopped: cancelled or failed): issue no more
            // fetches, and free the result.
            if self.tx.is_closed() {
                answer.stop(&self.pool).await;
                return Ok(());
            }
            let Some(raw) = answer.next(&self.pool, ctx).await? else {
                return Ok(());
            };
            let precision = answer.precision;
            if !self
                .deliver(group, &answer.names, precision, raw, key_col, resume)
                .await?
            {
                answer.stop(&self.pool).await;
                return Ok(());
            }
        }
    }

    /// The index of the composite key column among `names`.
    fn key_index(&self, names: &[String]) -> Result<Option<usize>, Error> {
        match &self.key_column {
            None => Ok(None),
            Some(k) => {
                Some(
                    names
                        .iter()
                        .position(|n| n == k)
                        .ok_or_else(|| Error::UnexpectedReply {
                            what: "the exported rows".into(),
                            database: Some(self.db.clone()),
                            table: Some(self.table.clone()),
                            reason: format!("no composite key column {k} in {names:?}"),
                        }),
                )
                .transpose()
            }
        }
    }

    /// Cuts one block into chunks and sends them; `resume` then points after it. `false`
    /// when the caller dropped the stream.
    async fn deliver(
        &self,
        group: &[TimeRange],
        names: &[String],
        precision: Precision,
        raw: Vec<u8>,
        key_col: Option<usize>,
        resume: &mut Resume,
    ) -> Result<bool, Error> {
        let (chunks, tail) = self
            .cut()
            .split(group, names, precision, raw, key_col, resume)?;
        for chunk in chunks {
            if self.tx.send(Ok(chunk)).await.is_err() {
                // The caller dropped the stream: stop quietly.
                return Ok(false);
            }
        }
        // Every row of the block is delivered: remember where it ended.
        if let Some((last, keys)) = tail {
            if last != resume.from {
                resume.from = last;
                resume.seen.clear();
            }
            resume.seen.extend(keys);
        }
        Ok(true)
    }

    /// How this table's blocks are cut into chunks.
    fn cut(&self) -> Cut<'_> {
        Cut {
            db: &self.db,
            table: &self.table,
            split_every: self.split_every,
            built: false,
        }
    }
}

/// A query's answer read block by block: through the tool's own WebSocket client where it
/// serves the endpoint (or is `required`: tables the connector cannot parse), else through
/// the connector. Shared by the per-table export and the several-table one
/// (`export_tables.rs`).
pub(crate) struct Answer {
    /// The answer's column names.
    pub(crate) names: Vec<String>,
    /// The precision of its timestamps: the connector's, or with the own client (raw bytes,
    /// never parsed) the database's, as the caller gives it.
    pub(crate) precision: Precision,
    via: Via,
}

enum Via {
    /// The own client's connection, the result id, and the pool permit it holds until the
    /// answer ends.
    Own {
        c: WsQuery,
        id: u64,
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    Connector(crate::conn::Conn, taos::ResultSet),
    Ended,
}

impl Answer {
    /// Runs `sql` on `pool` (errors carry `ctx`).
    pub(crate) async fn start(
        pool: &Arc<Pool>,
        ctx: Ctx<'_>,
        sql: &str,
        required: bool,
        precision: Precision,
    ) -> Result<Answer, Error> {
        let permit = pool.permit().await;
        if let Some(mut c) = pool.own_client(required).await.map_err(|e| ctx.fill(e))? {
            return match c.query(sql).await {
                Ok(cols) => Ok(Answer {
                    names: cols.names,
                    precision,
                    via: Via::Own {
                        c,
                        id: cols.id,
                        _permit: permit,
                    },
                }),
                Err(e) => {
                    if e.is_retryable() {
                        pool.own_client_broken();
                    }
                    Err(ctx.fill(e))
                }
            };
        }
        drop(permit);
        let mut conn = pool.get(ctx).await?;
        let (rs, names) = conn.start_query(ctx, sql).await?;
        Ok(Answer {
            names,
            precision: precision_of(rs.precision()),
            via: Via::Connector(conn, rs),
        })
    }

    /// The next raw block, `None` at the end (the own client's connection then goes back to
    /// the pool). A fetch that outlasts the pool's timeout is abandoned (see
    /// [`Pool::abandon`]); after a transient failure the connection is closed.
    pub(crate) async fn next(
        &mut self,
        pool: &Pool,
        ctx: Ctx<'_>,
    ) -> Result<Option<Vec<u8>>, Error> {
        match &mut self.via {
            Via::Own { c, id, .. } => match c.fetch(*id).await {
                Ok(Some(raw)) => Ok(Some(raw)),
                Ok(None) => {
                    if let Via::Own { c, .. } = std::mem::replace(&mut self.via, Via::Ended) {
                        pool.own_client_idle(c);
                    }
                    Ok(None)
                }
                Err(e) => {
                    if e.is_retryable() {
                        pool.own_client_broken();
                    }
                    self.via = Via::Ended;
                    Err(ctx.fill(e))
                }
            },
            Via::Connector(conn, rs) => {
                let next = match tokio::time::timeout(pool.timeout, rs.blocks().next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        if let Via::Connector(mut conn, rs) =
                            std::mem::replace(&mut self.via, Via::Ended)
                        {
                            conn.abandon(rs);
                        }
                        return Err(pool.timeout_error("fetch", ctx));
                    }
                };
                match next {
                    None => {
                        self.via = Via::Ended;
                        Ok(None)
                    }
                    Some(Err(e)) => {
                        let e = pool.error("fetch", ctx, e);
                        if e.is_retryable() {
                            conn.mark_broken();
                        }
                        self.via = Via::Ended;
                        Err(e)
                    }
                    // Copy the connector's bytes before anything reads values (reading NCHAR
                    // values converts a parsed block in place).
                    Some(Ok(b)) => Ok(Some(b.as_raw_bytes().to_vec())),
                }
            }
            Via::Ended => Ok(None),
        }
    }

    /// Stops before the end, between fetches (never cutting one off: see the module docs):
    /// the own client frees the result (no reply comes to it) and keeps its connection; the
    /// connector's result is freed when dropped.
    pub(crate) async fn stop(mut self, pool: &Pool) {
        if let Via::Own { mut c, id, .. } = std::mem::replace(&mut self.via, Via::Ended) {
            if c.free(id).await.is_ok() {
                pool.own_client_idle(c);
            }
        }
    }
}

/// How one table's blocks are cut into chunks: the table they belong to and the bucket
/// width they are cut at (besides the requested ranges).
pub(crate) struct Cut<'a> {
    pub(crate) db: &'a str,
    pub(crate) table: &'a str,
    pub(crate) split_every: Option<i64>,
    /// The blocks are runs this crate built from a checked view of a server's block
    /// ([`RawView::parse_built`]), not a server's blocks.
    pub(crate) built: bool,
}

impl Cut<'_> {
    /// Cuts a block at the requested ranges' boundaries, after leaving out the rows already
    /// delivered before a resume (timestamp `resume.from`, key in `resume.seen`). Also returns
    /// the timestamp of the block's last row and the keys of the rows at that timestamp.
    #[allow(clippy::type_complexity)]
    pub(crate) fn split(
        &self,
        group: &[TimeRange],
        names: &[String],
        precision: Precision,
        raw: Vec<u8>,
        key_col: Option<usize>,
        resume: &Resume,
    ) -> Result<(Vec<BlockChunk>, Option<(i64, Vec<Vec<u8>>)>), Error> {
        let with_table = |e: Error| match e {
            Error::InvalidBlock { reason, .. } => Error::InvalidBlock {
                table: Some(format!("{}.{}", self.db, self.table)),
                reason,
            },
            e => e,
        };
        let key = |view: &RawView<'_>, r: usize| -> Result<Vec<u8>, Error> {
            match key_col {
                Some(c) => view.cell_bytes(c, r).map_err(with_table),
                None => Ok(Vec::new()),
            }
        };
        let view = if self.built {
            RawView::parse_built(&raw)
        } else {
            RawView::parse(&raw)
        }
        .map_err(with_table)?;
        let ts = view.timestamps().map_err(with_table)?;
        if ts.is_empty() {
            return Ok((Vec::new(), None));
        }
        if !resume.seen.is_empty() && ts[0] == resume.from {
            let mut keep = Vec::with_capacity(ts.len());
            for (r, t) in ts.iter().enumerate() {
                if *t != resume.from || !resume.seen.contains(&key(&view, r)?) {
                    keep.push(r);
                }
            }
            if keep.len() < ts.len() {
                if keep.is_empty() {
                    return Ok((Vec::new(), None));
                }
                let rest = view.select_rows(&keep).map_err(with_table)?;
                let built = Cut {
                    built: true,
                    ..*self
                };
                return built.split(group, names, precision, rest, key_col, &Resume::default());
            }
        }
        let last = ts[ts.len() - 1];
        let mut tail_keys = Vec::new();
        for r in (0..ts.len()).rev().take_while(|&r| ts[r] == last) {
            tail_keys.push(key(&view, r)?);
        }
        let tail = Some((last, tail_keys));
        let mut out = Vec::new();
        let mut pieces = Vec::new();
        for r in group {
            let mut from = ts.partition_point(|t| *t < r.start);
            let to = ts.partition_point(|t| *t < r.end);
            match self.split_every {
                Some(w) if w > 0 => {
                    // Cut at bucket boundaries: each piece's range is its range ∩ its bucket.
                    while from < to {
                        let TimeRange {
                            start: b_start,
                            end: b_end,
                        } = Bucket::containing(ts[from], w).range_saturating(w);
                        let piece_end = from + ts[from..to].partition_point(|t| *t < b_end);
                        let range = TimeRange {
                            start: r.start.max(b_start),
                            end: r.end.min(b_end),
                        };
                        pieces.push((range, from, piece_end));
                        from = piece_end;
                    }
                }
                _ => {
                    if from < to {
                        pieces.push((*r, from, to));
                    }
                }
            }
        }
        let whole = pieces.len() == 1 && pieces[0].1 == 0 && pieces[0].2 == ts.len();
        let chunk = |range, from: usize, to: usize, raw| BlockChunk {
            table: self.table.to_string(),
            range,
            precision,
            columns: names.to_vec(),
            rows: (to - from) as u32,
            min_ts: ts[from],
            max_ts: ts[to - 1],
            raw,
        };
        if whole {
            // The usual case (a block inside one bucket): hand the block over as it is,
            // without copying it.
            let (range, from, to) = pieces[0];
            let c = chunk(range, from, to, Vec::new());
            drop(view);
            return Ok((vec![BlockChunk { raw, ..c }], tail));
        }
        for (range, from, to) in pieces {
            let bytes = view.slice_rows(from, to).map_err(with_table)?;
            out.push(chunk(range, from, to, bytes));
        }
        Ok((out, tail))
    }
}

/// The receiving end of an export. Dropping it stops the export after the fetch in flight
/// (never by aborting the task: see the module docs; the handle is kept to tell a panicked
/// task from a finished one, and dropping it detaches the task).
pub(crate) struct ExportStream {
    rx: mpsc::Receiver<Result<BlockChunk, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl ExportStream {
    /// A stream fed by `task` through `rx` (exports of several tables: `export_tables.rs`).
    pub(crate) fn from_parts(
        rx: mpsc::Receiver<Result<BlockChunk, Error>>,
        task: tokio::task::JoinHandle<()>,
    ) -> ExportStream {
        ExportStream { rx, task }
    }

    /// Starts exporting `ranges` of `db.table` on `pool` (through the tool's own WebSocket
    /// client where the endpoint suits it or, with `connector_cannot_read`, the table
    /// needs it); the table's timestamp column and composite key column (if any) name the
    /// columns a resume orders and de-duplicates by.
    pub(crate) fn start(
        (pool, connector_cannot_read): (Arc<Pool>, bool),
        db: &str,
        table: &str,
        (ts_column, key_column): (String, Option<String>),
        precision: Precision,
        ranges: Vec<TimeRange>,
        split_every: Option<i64>,
    ) -> Result<ExportStream, Error> {
        let groups = group_ranges(ranges).map_err(|reason| Error::InvalidRequest {
            database: db.to_string(),
            table: table.to_string(),
            reason,
        })?;
        let (tx, rx) = mpsc::channel(2);
        let job = Job {
            pool,
            db: db.to_string(),
            table: table.to_string(),
            ts_column,
            key_column,
            precision,
            groups,
            split_every,
            connector_cannot_read,
            tx,
        };
        let task_pool = job.pool.clone();
        let task = task_pool.spawn(job.run());
        Ok(ExportStream { rx, task })
    }

    /// The next chunk. The end of the channel is the end of the data only if the export task
    /// finished normally: a task that panicked (taos-query 0.12.4 panics parsing a block with
    /// a type it does not know, e.g. DECIMAL or BLOB) is an error, never a short export.
    pub(crate) async fn next(&mut self) -> Result<Option<BlockChunk>, Error> {
        match self.rx.recv().await {
            Some(Ok(c)) => Ok(Some(c)),
            Some(Err(e)) => Err(e),
            None => match (&mut self.task).await {
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(Error::UnexpectedReply {
                        what: "export".into(),
                        database: None,
                        table: None,
                        reason: format!("the export stopped with a panic: {msg}"),
                    })
                }
                _ => Ok(None),
            },
        }
    }
}

#[async_trait]
impl ChunkStream for ExportStream {
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError> {
        self.next().await.map_err(SourceError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i64, end: i64) -> TimeRange {
        TimeRange { start, end }
    }

    #[tokio::test]
    async fn a_panicked_export_is_an_error_not_an_end() {
        let (tx, rx) = mpsc::channel::<Result<BlockChunk, Error>>(2);
        let task = tokio::spawn(async move {
            let _tx = tx;
            panic!("unsupported type: DECIMAL");
        });
        let mut s = ExportStream { rx, task };
        let e = s.next().await.unwrap_err();
        assert!(e.to_string().contains("unsupported type: DECIMAL"), "{e}");
        let (tx, rx) = mpsc::channel::<Result<BlockChunk, Error>>(2);
        let task = tokio::spawn(async move { drop(tx) });
        let mut s = ExportStream { rx, task };
        assert!(s.next().await.unwrap().is_none());
    }

    #[test]
    fn adjacent_ranges_merge() {
        let g = group_ranges(vec![r(20, 30), r(0, 10), r(10, 20), r(40, 50), r(5, 5)]).unwrap();
        assert_eq!(
            g,
            vec![vec![r(0, 10), r(10, 20), r(20, 30)], vec![r(40, 50)]]
        );
        assert!(group_ranges(vec![r(0, 10), r(5, 15)]).is_err());
        assert!(group_ranges(vec![]).unwrap().is_empty());
    }
}
