//! The in-memory TDengine behind the emulator: a catalog of databases, super tables and tables
//! with columnar, timestamp-sorted storage, and an executor for the SQL the parser accepts.
//!
//! One [`std::sync::RwLock`] guards the whole catalog: queries take the read lock and copy the
//! rows they return; writes take the write lock.
//!
//! Semantics follow TDengine 3.3: rows are kept sorted by timestamp (by (timestamp, key) with a
//! composite key), an insert at an existing timestamp (and key) replaces the whole row, `DELETE` removes the matching rows, rows older than
//! `now − KEEP` are rejected with 0x060B, ADD COLUMN fills NULLs, tables hash to a vgroup by
//! name (FNV-1a, deterministic) and every table gets a unique uid. Every change gets a WAL
//! version in its table's vgroup and is kept in that vgroup's log for TMQ (`wal`, `tmq`;
//! see `docs/emulator-tmq.md`); the logs keep their rows in a temporary file (`wal::Spill`).
//! [`Store::enable_wal_files`] also writes every vgroup's log as TDengine-format vnode WAL
//! files, for the `wal` change feed (`wal_files`).
//!
//! Known divergences from TDengine:
//! - date-time strings without a zone are read as UTC (there is no client time zone);
//! - an INSERT statement is validated completely before anything is written (TDengine may
//!   write some vgroups and fail others);
//! - DELETE accepts any condition, not only timestamp ranges; WHERE supports comparisons,
//!   BETWEEN, IN, LIKE, IS [NOT] NULL, AND/OR/NOT and simple arithmetic, no functions;
//! - aggregates: count, first, last, last_row, min, max, sum, avg over one column (`f(*)`
//!   expands to every data column); an aggregate over no rows gives no row unless only
//!   `count` is selected; no INTERVAL/window queries, no JSON `->` operator;
//! - `SHOW CREATE TABLE` prints a JSON tag quoted (TDengine prints it bare) so that it can be
//!   replayed; ENCODE/COMPRESS/LEVEL column options are accepted but not stored, so SHOW
//!   CREATE and DESCRIBE print TDengine's defaults for the column type;
//! - `information_schema` lists user objects only (no system tables in `ins_tables`);
//!   `ins_stables`, `ins_topics` and the other system tables follow the server version's
//!   behaviour set (`crate::Profile`, docs/emulator.md);
//! - KEEP/DURATION ratios, name syntax rules, TTL expiry and row-size limits are not enforced.

mod bind;
mod catalog;
mod column;
mod convert;
mod exec;
mod expr;
mod query;
mod show;
mod table;
mod tmq;
mod wal;
mod wal_files;
mod wkt;

/// What the TMQ server session needs from the store.
pub(crate) mod tmq_api {
    pub(crate) use super::tmq::{Assignment, OffsetReset, Polled};
    pub(crate) use super::wal::{WalBody, create_children};
}

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{EmuError, code};
use crate::raw_block::RawBlock;
use crate::sql::ast::Statement;
use crate::types::{ColumnData, Field, Precision};

use catalog::Catalog;
use convert::Ctx;
pub use wal_files::DEFAULT_SEGMENT_SIZE as DEFAULT_WAL_SEGMENT_SIZE;

/// Builders of TDengine's TMQ meta JSON (`client/src/clientRawBlockWrite.c`) for the kinds
/// no emulator statement produces, to log with [`Store::inject_meta`].
pub mod tmq_meta {
    pub use super::wal::{add_column_with_compress, alter_bare, alter_column_compress};
}
use wal_files::WalFilesConfig;

/// Configuration of the in-memory store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// User accepted at login.
    pub user: String,
    /// Password accepted at login.
    pub password: String,
    /// Version reported by `SELECT SERVER_VERSION()`.
    pub server_version: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            user: "root".into(),
            password: "taosdata".into(),
            server_version: "3.3.6.0".into(),
        }
    }
}

/// Per-connection state.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Current database (`USE db`, or the DSN's database).
    pub db: Option<String>,
}

/// Result of one statement.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// DDL / INSERT / DELETE: rows affected.
    Affected(usize),
    /// A query result.
    Rows(ResultSet),
}

/// A materialised query result.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// Column descriptions.
    pub fields: Vec<Field>,
    /// Timestamp precision of the result.
    pub precision: Precision,
    /// One vector per field, all of equal length.
    pub columns: Vec<ColumnData>,
}

impl ResultSet {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, ColumnData::len)
    }
}

const NO_OVERRIDE: i64 = i64::MIN;

/// `TSDB_MAX_ALLOWED_SQL_LEN` (`include/util/tdef.h`): the longest statement, in bytes.
pub const MAX_SQL_LEN: usize = 1024 * 1024;

/// The in-memory TDengine.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    catalog: RwLock<Catalog>,
    now_override: AtomicI64,
    /// Raw-block writes waiting for the write lock ([`Store::queue_raw_block`]).
    writes: Mutex<WriteQueue>,
}

/// Raw-block writes queued for one drainer, as a TDengine vnode's write worker takes every
/// message queued so far and processes them in one call (`vmProcessWriteQueue(SQueueInfo *,
/// STaosQall *qall, int32_t numOfMsgs)`, source/dnode/mgmt/mgmt_vnode/src/vmWorker.c).
#[derive(Default)]
struct WriteQueue {
    pending: Vec<QueuedWrite>,
    /// Whether a drainer is running (a write being applied in place counts as one). A write
    /// that finds none, with the store's lock free, is applied in place and then starts one
    /// for the writes queued behind it; with the lock taken, it queues and starts one.
    draining: bool,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue")
            .field("pending", &self.pending.len())
            .field("draining", &self.draining)
            .finish()
    }
}

/// What [`Store::take_turn`] did with a write.
enum Turn {
    /// Applied in place, with its result.
    Applied(Result<usize, EmuError>),
    /// Queued for a drainer, which answers here.
    Queued(tokio::sync::oneshot::Receiver<Result<usize, EmuError>>),
}

/// One queued raw-block write and where its result goes.
struct QueuedWrite {
    db: Option<String>,
    table: String,
    fields: Vec<Field>,
    block: RawBlock,
    reply: tokio::sync::oneshot::Sender<Result<usize, EmuError>>,
}

/// If a drainer unwinds, fails the writes still queued (their replies dropped, as are those
/// of the batch it held: each writer gets an error, none waits) and clears
/// [`WriteQueue::draining`], so that the next write starts another drainer.
struct DrainGuard<'a>(&'a Mutex<WriteQueue>);

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
            q.pending.clear();
            q.draining = false;
        }
    }
}

impl Store {
    /// A new empty store.
    pub fn new(config: StoreConfig) -> Store {
        Store {
            config,
            catalog: RwLock::new(Catalog::default()),
            now_override: AtomicI64::new(NO_OVERRIDE),
            writes: Mutex::new(WriteQueue::default()),
        }
    }

    /// Checks a login: unknown user → 0x0351 "Invalid user", wrong password → 0x0357.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<(), EmuError> {
        if user != self.config.user {
            return Err(EmuError::new(code::INVALID_USER, "Invalid user"));
        }
        if password != self.config.password {
            return Err(EmuError::new(code::AUTH_FAILURE, "Authentication failure"));
        }
        Ok(())
    }

    /// The version `SELECT SERVER_VERSION()` reports.
    pub fn server_version(&self) -> &str {
        &self.config.server_version
    }

    /// The behaviour set the server version selects.
    pub fn profile(&self) -> crate::Profile {
        crate::Profile::of(&self.config.server_version)
    }

    /// Fixes "now" (nanoseconds since the epoch) for tests; `None` returns to the system clock.
    pub fn set_now_override(&self, now_ns: Option<i64>) {
        self.now_override
            .store(now_ns.unwrap_or(NO_OVERRIDE), Ordering::SeqCst);
    }

    /// "Now" in nanoseconds since the epoch.
    pub fn now_ns(&self) -> i64 {
        let o = self.now_override.load(Ordering::SeqCst);
        if o != NO_OVERRIDE {
            return o;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The execution environment of a statement run for a session in database `db`.
    fn env<'s>(&'s self, db: Option<&'s str>, now_ns: i64) -> exec::Env<'s> {
        exec::Env {
            db,
            now_ns,
            server_version: &self.config.server_version,
            user: &self.config.user,
            profile: self.profile(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The write lock if it is free now.
    fn try_write(&self) -> Option<RwLockWriteGuard<'_, Catalog>> {
        match self.catalog.try_write() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// From now on, also writes every vgroup's log as a TDengine-format vnode WAL directory
    /// under `dir` (TDengine's dataDir: `<dir>/vnode/vnode<vgId>/{vnode.json, wal/…}`, see
    /// `docs/wal-format.md`), with segments of [`DEFAULT_WAL_SEGMENT_SIZE`] bytes. Vnodes of
    /// existing databases start at their log's end (earlier changes are not written, as on a
    /// server whose older WAL was purged); databases created later start at version 0.
    /// Calling it again with the same directory does nothing; another directory is refused.
    pub fn enable_wal_files(&self, dir: &std::path::Path) -> Result<(), EmuError> {
        self.enable_wal_files_with(dir, DEFAULT_WAL_SEGMENT_SIZE)
    }

    /// [`enable_wal_files`](Self::enable_wal_files) rolling segments once they exceed
    /// `segment_size` bytes (0 = never).
    pub fn enable_wal_files_with(
        &self,
        dir: &std::path::Path,
        segment_size: u64,
    ) -> Result<(), EmuError> {
        let cfg = WalFilesConfig {
            root: dir.to_path_buf(),
            segment_size,
        };
        let mut cat = self.write();
        match &cat.wal_files {
            Some(c) if *c == cfg => return Ok(()),
            Some(c) => {
                return Err(EmuError::new(
                    code::INVALID_OPERATION,
                    format!(
                        "WAL files are already written to {} (segments of {} bytes); they \
                         cannot move to {} ({} bytes): start another emulator",
                        c.root.display(),
                        c.segment_size,
                        dir.display(),
                        segment_size
                    ),
                ));
            }
            None => {}
        }
        for db in cat.dbs.values_mut() {
            db.create_files(&cfg)?;
        }
        cat.wal_files = Some(cfg);
        Ok(())
    }

    /// The directory [`enable_wal_files`](Self::enable_wal_files) writes to, if enabled.
    pub fn wal_files_dir(&self) -> Option<std::path::PathBuf> {
        self.read().wal_files.as_ref().map(|c| c.root.clone())
    }

    /// Executes one SQL statement.
    pub fn execute(&self, session: &mut Session, sql: &str) -> Result<Outcome, EmuError> {
        // The client library refuses a statement over TSDB_MAX_ALLOWED_SQL_LEN
        // (`include/util/tdef.h`: 1 MiB) before sending it (`clientImpl.c` `buildRequest`:
        // TSDB_CODE_TSC_EXCEED_SQL_LIMIT); taosAdapter goes through that library.
        if sql.len() > MAX_SQL_LEN {
            return Err(EmuError::new(
                code::EXCEED_SQL_LIMIT,
                "SQL statement too long, check maxSQLLength config",
            ));
        }
        let stmt = crate::sql::parse(sql)?;
        let now_ns = self.now_ns();
        let env = self.env(session.db.as_deref(), now_ns);
        match stmt {
            Statement::Use(db) => {
                let system = db.eq_ignore_ascii_case("information_schema")
                    || db.eq_ignore_ascii_case("performance_schema");
                if !system {
                    self.read().db(&db)?;
                }
                session.db = Some(db);
                Ok(Outcome::Affected(0))
            }
            Statement::DropDatabase { if_exists, name } => {
                let r = exec::drop_database(&mut self.write(), if_exists, &name);
                if r.is_ok() && session.db.as_deref() == Some(name.as_str()) {
                    session.db = None;
                }
                r
            }
            Statement::Select(s) => query::select(&self.read(), &env, &s).map(Outcome::Rows),
            Statement::ShowDatabases
            | Statement::ShowStables { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowCreateDatabase(_)
            | Statement::ShowCreateTable { .. }
            | Statement::Describe(_)
            | Statement::ShowVgroups(_) => show::show(&self.read(), &env, &stmt).map(Outcome::Rows),
            Statement::CreateTopic {
                if_not_exists,
                name,
                with_meta,
                db,
            } => self.create_topic(if_not_exists, name, with_meta, db, sql),
            Statement::DropTopic { if_exists, name } => self.drop_topic(if_exists, &name),
            Statement::PurgeWal { db, vgroup, to } => self.purge_sql(&db, vgroup, to),
            Statement::ShowTopics
            | Statement::ShowSubscriptions
            | Statement::ShowGrants
            | Statement::ShowDnodes => show::show(&self.read(), &env, &stmt).map(Outcome::Rows),
            other => exec::execute(&mut self.write(), &env, other),
        }
    }

    /// The data columns of an existing table (`table` may be `db.table`), e.g. to name the
    /// columns of a raw block that arrives without field names.
    pub fn table_fields(&self, session: &Session, table: &str) -> Result<Vec<Field>, EmuError> {
        let env = self.env(session.db.as_deref(), self.now_ns());
        exec::table_fields(&self.read(), &env, table)
    }

    /// Writes a raw block into an existing table, binding its columns as TDengine's
    /// `rawBlockBindData` does (by name when `fields` are given, else by position).
    pub fn write_raw_block(
        &self,
        session: &Session,
        table: &str,
        fields: &[Field],
        block: RawBlock,
    ) -> Result<usize, EmuError> {
        self.apply_raw_block(
            &mut self.write(),
            session.db.as_deref(),
            table,
            fields,
            block,
        )
    }

    /// Applies one raw-block write under the write lock `catalog` holds, `db` being the
    /// writer's current database.
    fn apply_raw_block(
        &self,
        catalog: &mut Catalog,
        db: Option<&str>,
        table: &str,
        fields: &[Field],
        block: RawBlock,
    ) -> Result<usize, EmuError> {
        let env = self.env(db, self.now_ns());
        exec::write_raw_block(catalog, &env, table, fields, block)
    }

    /// [`Store::write_raw_block`] through the store's write queue: the writes queued while
    /// one is being applied are applied together, under one hold of the write lock, by one
    /// blocking thread (the server's connections would otherwise each take a blocking
    /// thread and queue on the lock). Each write is bound and checked alone, with its own
    /// result, as before. A write that finds no drainer running and the store's lock free is
    /// applied here, on the connection's own thread, without the hand-off to a blocking
    /// thread and the wake-up back: the writes queued meanwhile go to a drainer as before.
    /// One that finds the lock taken (by a statement or a query) queues for a drainer, so
    /// that no connection's thread waits for the lock.
    pub async fn queue_raw_block(
        self: &Arc<Self>,
        session: &Session,
        table: String,
        fields: Vec<Field>,
        block: RawBlock,
    ) -> Result<usize, EmuError> {
        match self.take_turn(session, table, fields, block) {
            Turn::Applied(r) => r,
            Turn::Queued(result) => result
                .await
                .map_err(|_| EmuError::new(0xffff, "write task failed"))?,
        }
    }

    /// The synchronous part of [`Store::queue_raw_block`]: applies the write now when no
    /// drainer runs and the store's lock is free, else queues it (starting a drainer when
    /// none runs). Nothing here waits for a lock other than the queue's, so a connection's
    /// thread is never blocked behind a statement or a query; and no guard is held across
    /// the caller's `.await` (the guards are not `Send`).
    fn take_turn(
        self: &Arc<Self>,
        session: &Session,
        table: String,
        fields: Vec<Field>,
        block: RawBlock,
    ) -> Turn {
        let mut q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing is queued when no drainer runs (a drainer stops only once the queue is
        // empty): a write that finds none is the next, whether applied here or queued.
        let catalog = if q.draining { None } else { self.try_write() };
        let Some(mut catalog) = catalog else {
            let (reply, result) = tokio::sync::oneshot::channel();
            q.pending.push(QueuedWrite {
                db: session.db.clone(),
                table,
                fields,
                block,
                reply,
            });
            if !q.draining {
                // The store is busy (a statement or a query holds its lock): waiting for it
                // here would block one of the runtime's few threads, so a drainer on a
                // blocking thread waits instead.
                q.draining = true;
                self.start_drainer();
            }
            return Turn::Queued(result);
        };
        q.draining = true;
        drop(q);
        let r = {
            let _guard = DrainGuard(&self.writes);
            self.apply_raw_block(&mut catalog, session.db.as_deref(), &table, &fields, block)
        };
        drop(catalog);
        self.end_turn();
        Turn::Applied(r)
    }

    /// Ends the turn of a write applied in place: the writes queued meanwhile go to a
    /// drainer started here; with none queued, no drainer runs.
    fn end_turn(self: &Arc<Self>) {
        let more = {
            let mut q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
            q.draining = !q.pending.is_empty();
            q.draining
        };
        if more {
            self.start_drainer();
        }
    }

    /// Starts a drainer on a blocking thread; the caller has marked the queue draining.
    fn start_drainer(self: &Arc<Self>) {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || store.drain_writes());
    }

    /// Applies queued writes until the queue is empty.
    fn drain_writes(&self) {
        let _guard = DrainGuard(&self.writes);
        loop {
            let batch = {
                let mut q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
                if q.pending.is_empty() {
                    q.draining = false;
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let mut catalog = self.write();
            for w in batch {
                let r = self.apply_raw_block(
                    &mut catalog,
                    w.db.as_deref(),
                    &w.table,
                    &w.fields,
                    w.block,
                );
                // The writer may have gone (its connection closed): nothing to tell.
                let _ = w.reply.send(r);
            }
        }
    }
}

impl Ctx {
    /// A conversion context for a precision at `now_ns`.
    pub fn new(precision: Precision, now_ns: i64) -> Ctx {
        Ctx { precision, now_ns }
    }
}

#[cfg(test)]
mod tests;
