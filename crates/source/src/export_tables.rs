//! Several child tables of one super table exported with one query.
//!
//! A table costs a query and its fetches whatever its size; at 10,000 tables of 1,000 rows
//! that was ~40% of a backup's CPU (docs/performance-history.md, "Several tables per query"). When
//! every table of a request is a child of the same super table (known from the last
//! catalog read), without a composite key or a column the connector cannot parse, and all
//! ask for the same single run of adjacent ranges, they are read with
//!
//! ```sql
//! SELECT <the super table's columns>, TBNAME FROM db.stable
//!  WHERE TBNAME IN ('t1', …) AND ts >= a AND ts < b
//! ```
//!
//! TDengine returns such rows without a per-table order: its reader walks the data file
//! sets one after another and, within each, every listed table's blocks, then the memtable
//! (tsdbRead2.c, `doTsdbNextDataBlockFilesFirst`); the project operator merges blocks of
//! different tables into one (`doProjectOperation` → `blockDataMerge`); and `TBNAME IN`
//! ignores names that do not exist (`optimizeTbnameInCondImpl`, executil.c). So each
//! block is cut into runs of one table by its `TBNAME` column, which is then dropped (a
//! stored chunk stays what a per-table read gives: the same columns, named as the server
//! names them, the alias of a column being its name: `releaseRawExprNode`, parAstCreater.c),
//! and each table's runs are held until the query ends: only then is a table known to be
//! complete. Each table's timestamps must ascend across its runs (no composite key: a
//! timestamp is a row); a table whose rows did not would make the query's answer unusable.
//!
//! Grouping pays for small tables only: their requests, not their rows, are their cost. So
//! the first query over a super table's children reads a few of them ([`PROBE_TABLES`]),
//! and the rest of each group shares one query only if those averaged at most
//! [`SMALL_TABLE_BYTES`]; otherwise the super table's children are read one by one for the
//! rest of the source's life.
//!
//! Nothing is delivered before a query has been read to its end, so any failure — a
//! refused statement, a dropped connection, rows out of order, more than [`GROUP_BYTES`]
//! held (after which the super table is read table by table too) — falls back to reading
//! that query's tables one by one with the per-table export (and its retries and resumes),
//! as if the query had not been tried. A table without rows in the answer is read alone
//! too, so that a table dropped since the catalog read fails as a per-table export does
//! instead of looking empty.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use taosbackup_core::{BlockChunk, ExportRequest, Precision, TimeRange};
use tokio::sync::mpsc;

use crate::Error;
use crate::conn::{Ctx, Pool};
use crate::export::{Answer, Cut, ExportStream, Resume, group_ranges};
use crate::raw::RawView;
use crate::source::TableKeys;
use crate::sql;

/// Raw bytes one query may hold before it is given up for per-table reads (with
/// `--parallel` groups at once, this many each): a bound, not a size aimed at.
pub(crate) const GROUP_BYTES: usize = 8 << 20;

/// The tables of a super table read first, with one query, to learn their size.
const PROBE_TABLES: usize = 8;

/// The largest average size of a table (raw bytes in the requested ranges) at which the
/// rest of a group shares one query: ~2,200 rows of the benchmark's data, 100 tables in
/// 6.4 MiB (under [`GROUP_BYTES`]). Larger tables gain little from sharing a query (their
/// rows, not their requests, are the cost), and held whole, 100 tables of 5,000 rows
/// (~145 KB each) made the 50 M-row full backup take more CPU (mostly the emulator's, which
/// materialises each answer) and 2.5× the peak memory of per-table reads. Up to 2026-12-07
/// the bound was 40 KB, just under one day's bucket of the benchmark's tables (~42 KB), so a
/// 1% incremental at 50 M rows read its 400 changed blocks one query each; grouped, it took
/// 4–8% less time in pairs (docs/performance-history.md, "Several tables per query, built",
/// "Groups of tables up to 64 KiB").
const SMALL_TABLE_BYTES: usize = 64 << 10;

/// Per database and super table: whether its children are small enough to share queries
/// (learnt from a first query over a few of them, or from a query that passed the bound).
pub(crate) type Sizes = Arc<Mutex<HashMap<(String, String), bool>>>;

/// Starts exporting `tables` (each with its columns' keys): with one query where they
/// qualify (module docs), else one after another.
pub(crate) fn start(
    pool: Arc<Pool>,
    sizes: Sizes,
    db: &str,
    precision: Precision,
    tables: Vec<(ExportRequest, Arc<TableKeys>)>,
) -> ExportStream {
    let (tx, rx) = mpsc::channel(2);
    let job = Group {
        pool: pool.clone(),
        sizes,
        db: db.to_string(),
        precision,
        tables,
        tx,
    };
    ExportStream::from_parts(rx, pool.spawn(job.run()))
}

struct Group {
    pool: Arc<Pool>,
    sizes: Sizes,
    db: String,
    precision: Precision,
    tables: Vec<(ExportRequest, Arc<TableKeys>)>,
    tx: mpsc::Sender<Result<BlockChunk, Error>>,
}

/// What one query over the group needs.
struct Plan<'a> {
    stable: &'a str,
    columns: &'a [String],
    ranges: Vec<TimeRange>,
    sql: String,
    /// Table name → its index in the group.
    index: HashMap<&'a [u8], usize>,
}

/// How reading the group's query ended.
enum Read {
    /// Each table's runs (blocks without the `TBNAME` column), in arrival order, the column
    /// names of a chunk, its precision and the runs' bytes.
    Done(Vec<Vec<Vec<u8>>>, Vec<String>, Precision, usize),
    /// More than [`GROUP_BYTES`] arrived.
    TooLarge,
    /// The reader is gone.
    Closed,
}

/// A group's answer as it arrives.
struct Runs<'p> {
    index: &'p HashMap<&'p [u8], usize>,
    ncols: usize,
    per_table: Vec<Vec<Vec<u8>>>,
    last_ts: Vec<Option<i64>>,
    bytes: usize,
}

fn unusable(db: &str, stable: &str, reason: String) -> Error {
    Error::UnexpectedReply {
        what: "the rows of several tables".into(),
        database: Some(db.to_string()),
        table: Some(stable.to_string()),
        reason,
    }
}

impl Runs<'_> {
    /// Cuts one block of the answer into runs of one table. `Ok(false)`: the bound is
    /// passed.
    fn take(&mut self, db: &str, stable: &str, raw: &[u8]) -> Result<bool, Error> {
        let view = RawView::parse(raw)?;
        if view.ncols() != self.ncols {
            return Err(unusable(
                db,
                stable,
                format!("{} columns, not {}", view.ncols(), self.ncols),
            ));
        }
        let name_col = self.ncols - 1;
        let keep: Vec<usize> = (0..name_col).collect();
        let ts = view.timestamps()?;
        let mut r = 0;
        for (end, name) in view.equal_runs(name_col)? {
            let i = *self.index.get(name).ok_or_else(|| {
                unusable(
                    db,
                    stable,
                    format!("rows of {}, not asked for", String::from_utf8_lossy(name)),
                )
            })?;
            for &t in &ts[r..end] {
                if self.last_ts[i].is_some_and(|l| t <= l) {
                    return Err(unusable(
                        db,
                        stable,
                        format!(
                            "the rows of {} do not ascend ({t} after {})",
                            String::from_utf8_lossy(name),
                            self.last_ts[i].unwrap_or_default()
                        ),
                    ));
                }
                self.last_ts[i] = Some(t);
            }
            let run = view.rewrite(&keep, r, end)?;
            self.bytes += run.len();
            self.per_table[i].push(run);
            if self.bytes > GROUP_BYTES {
                return Ok(false);
            }
            r = end;
        }
        Ok(true)
    }
}

impl Group {
    async fn run(self) {
        if let Err(e) = self.run_inner().await {
            // The receiver may be gone (the caller stopped reading); nothing to report to.
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn run_inner(&self) -> Result<(), Error> {
        let n = self.tables.len();
        let mut alone: Vec<usize> = Vec::new();
        let mut at = 0;
        if let Some(stable) = self.shared_stable() {
            let key = (self.db.clone(), stable.to_string());
            while at < n {
                let small = self.sizes.lock().ok().and_then(|m| m.get(&key).copied());
                let end = match small {
                    Some(false) => break,
                    Some(true) => n,
                    None => (at + PROBE_TABLES).min(n),
                };
                let range = at..end;
                at = end;
                let Some(plan) = self.plan(stable, range.clone()) else {
                    alone.extend(range);
                    continue;
                };
                match self.read(&plan).await {
                    Ok(Read::Done(per_table, names, precision, bytes)) => {
                        if small.is_none() {
                            let fits = bytes / range.len() <= SMALL_TABLE_BYTES;
                            tracing::debug!(
                                stable,
                                tables = range.len(),
                                bytes,
                                fits,
                                "children measured: they share queries if they fit"
                            );
                            if let Ok(mut m) = self.sizes.lock() {
                                m.entry(key.clone()).or_insert(fits);
                            }
                        }
                        for (i, runs) in per_table.into_iter().enumerate().skip(range.start) {
                            if i >= range.end {
                                break;
                            }
                            if runs.is_empty() {
                                alone.push(i);
                            } else if !self.deliver(i, &plan, &names, precision, runs).await? {
                                return Ok(());
                            }
                        }
                    }
                    Ok(Read::Closed) => return Ok(()),
                    Ok(Read::TooLarge) => {
                        tracing::debug!(
                            stable,
                            "a query outgrew its bound: the super table's children are read one by one"
                        );
                        if let Ok(mut m) = self.sizes.lock() {
                            m.insert(key.clone(), false);
                        }
                        alone.extend(range);
                    }
                    Err(e) => {
                        tracing::warn!(stable, tables = range.len(), error = %e, "reading several tables with one query failed: reading them one by one");
                        alone.extend(range);
                    }
                }
            }
        }
        alone.extend(at..n);
        for i in alone {
            if !self.export_alone(i).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The super table whose children may share queries: every table of the group is one
    /// of its children known from the catalog read, without a composite key or a column
    /// the connector cannot parse, asking for the same ranges (module docs).
    fn shared_stable(&self) -> Option<&str> {
        let ((first, keys), rest) = self.tables.split_first()?;
        let (stable, _) = keys.stable.as_ref()?;
        let qualifies = |(r, k): &(ExportRequest, Arc<TableKeys>)| {
            k.key.is_none()
                && !k.connector_cannot_read
                && k.ts == keys.ts
                && k.stable.as_ref().is_some_and(|(s, _)| s == stable)
                && r.ranges == first.ranges
                && r.split_every == first.split_every
        };
        (!rest.is_empty() && self.tables.iter().all(qualifies)).then_some(stable.as_str())
    }

    /// The one query over the tables `range` of the group, children of `stable`: `None`
    /// for fewer than two tables, several runs of ranges, or a statement too long.
    fn plan<'s>(&'s self, stable: &'s str, range: Range<usize>) -> Option<Plan<'s>> {
        let tables = self.tables.get(range.clone()).filter(|t| t.len() >= 2)?;
        let (first, keys) = tables.first()?;
        let (_, columns) = keys.stable.as_ref()?;
        let mut groups = group_ranges(first.ranges.clone()).ok()?;
        if groups.len() != 1 {
            return None;
        }
        let ranges = groups.pop()?;
        let (from, to) = (ranges.first()?.start, ranges.last()?.end);
        let names: Vec<&str> = tables.iter().map(|(r, _)| r.table.as_str()).collect();
        let sql = sql::export_children(&self.db, stable, columns, &names, &keys.ts, from, to);
        if sql.len() >= sql::MAX_SQL_LEN {
            return None;
        }
        let index: HashMap<&[u8], usize> = names
            .iter()
            .zip(range)
            .map(|(n, i)| (n.as_bytes(), i))
            .collect();
        if index.len() != names.len() {
            return None;
        }
        Some(Plan {
            stable,
            columns,
            ranges,
            sql,
            index,
        })
    }

    /// Checks the answer's columns: the super table's, then `TBNAME`.
    fn check_names(&self, plan: &Plan<'_>, names: &[String]) -> Result<(), Error> {
        let expected = plan
            .columns
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("tbname"));
        if names.len() != plan.columns.len() + 1
            || !names
                .iter()
                .zip(expected)
                .all(|(n, e)| n.eq_ignore_ascii_case(e))
        {
            return Err(unusable(
                &self.db,
                plan.stable,
                format!("columns {names:?}, not {:?} and tbname", plan.columns),
            ));
        }
        Ok(())
    }

    /// Reads the group's query to its end (or until the bound or a closed reader stops it).
    async fn read(&self, plan: &Plan<'_>) -> Result<Read, Error> {
        let ctx = Ctx::table(&self.db, plan.stable).doing("exporting rows");
        let mut runs = Runs {
            index: &plan.index,
            ncols: plan.columns.len() + 1,
            per_table: vec![Vec::new(); self.tables.len()],
            last_ts: vec![None; self.tables.len()],
            bytes: 0,
        };
        let mut answer = Answer::start(&self.pool, ctx, &plan.sql, false, self.precision).await?;
        self.check_names(plan, &answer.names)?;
        loop {
            // Stopping between fetches frees the result (never mid-fetch: see export.rs).
            if self.tx.is_closed() {
                answer.stop(&self.pool).await;
                return Ok(Read::Closed);
            }
            let Some(raw) = answer.next(&self.pool, ctx).await? else {
                break;
            };
            if !runs.take(&self.db, plan.stable, &raw)? {
                answer.stop(&self.pool).await;
                return Ok(Read::TooLarge);
            }
        }
        let names = answer.names[..answer.names.len() - 1].to_vec();
        Ok(Read::Done(
            runs.per_table,
            names,
            answer.precision,
            runs.bytes,
        ))
    }

    /// Cuts table `i`'s runs into chunks and sends them. `false`: the reader is gone.
    async fn deliver(
        &self,
        i: usize,
        plan: &Plan<'_>,
        names: &[String],
        precision: Precision,
        runs: Vec<Vec<u8>>,
    ) -> Result<bool, Error> {
        let request = &self.tables[i].0;
        let cut = Cut {
            db: &self.db,
            table: &request.table,
            split_every: request.split_every,
            built: true,
        };
        // A table's rows may come in several runs within one bucket (the answer's blocks
        // mix tables). Joined, a bucket's rows make one chunk, as a per-table read of a
        // bucket under a block's size gives them; as separate frames they compressed
        // worse (3.6% more repository at 1 M rows in the benchmark).
        let mut pending: Vec<BlockChunk> = Vec::new();
        for raw in runs {
            let (chunks, _) = cut.split(
                &plan.ranges,
                names,
                precision,
                raw,
                None,
                &Resume::default(),
            )?;
            for c in chunks {
                if pending.last().is_some_and(|p| p.range != c.range)
                    && !self.send_joined(&mut pending).await
                {
                    return Ok(false);
                }
                pending.push(c);
            }
        }
        Ok(self.send_joined(&mut pending).await)
    }

    /// Sends `chunks` (one table's, of one range, in order) as one chunk where
    /// [`BlockChunk::concat`] can join them, else as they are. `false`: the reader is gone.
    async fn send_joined(&self, chunks: &mut Vec<BlockChunk>) -> bool {
        let joined = match chunks.len() {
            0 | 1 => None,
            _ => BlockChunk::concat(chunks),
        };
        let out = match joined {
            Some(j) => {
                chunks.clear();
                vec![j]
            }
            None => std::mem::take(chunks),
        };
        for c in out {
            if self.tx.send(Ok(c)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Exports table `i` alone and forwards its chunks. `false`: the reader is gone.
    async fn export_alone(&self, i: usize) -> Result<bool, Error> {
        let (request, keys) = &self.tables[i];
        let mut stream = ExportStream::start(
            (self.pool.clone(), keys.connector_cannot_read),
            &self.db,
            &request.table,
            (keys.ts.clone(), keys.key.clone()),
            self.precision,
            request.ranges.clone(),
            request.split_every,
        )?;
        while let Some(c) = stream.next().await? {
            if self.tx.send(Ok(c)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
