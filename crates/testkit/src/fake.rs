//! In-memory fakes of the seams in `taosbackup-core`, for tests that judge the engine (or any
//! caller of the traits) without a server, a socket or a repository on disk.
//!
//! * [`FakeDb`]: databases held in memory, changed by a scripted workload of [`Op`]s (the same
//!   ops render as SQL with [`Op::to_sql`], so one workload drives the emulator too). Every op
//!   is also written to a per-database change log, split into streams like TDengine's vgroups.
//! * [`FakeSource`]: [`Source`](taosbackup_core::Source) over a [`FakeDb`]. Exports real
//!   TDengine raw blocks ([`crate::raw_block`]) and writes them back by column name.
//! * [`FakeFeed`]: [`ChangeFeed`](taosbackup_core::ChangeFeed) over the change log: positions
//!   per stream, catch-up to the end as it was when the catch-up began, gaps when the log was
//!   purged past the committed positions ([`FakeDb::purge_log`]), injected events
//!   ([`FakeDb::push_event`]).
//! * [`MemoryRepository`]: [`Repository`](taosbackup_core::Repository) in memory, with the
//!   trait's guarantees checked (content ids, verified reads, atomic commit, no blob durable
//!   before a commit: [`MemoryRepository::crash`]).
//! * [`Faults`]: scripted failures at named [`FaultPoint`]s, shared by all of them.
//!
//! What the fakes leave out, on purpose: KEEP (nothing is refused as too old), DECIMAL
//! columns, JSON tags in SQL, and the retries of the real source (a fault is returned to the
//! caller as the error the real implementation raises once its retries are used up).

mod db;
mod feed;
mod repository;
mod source;
mod workload;

pub use db::{DbDump, FakeDb, TableDump};
pub use feed::FakeFeed;
pub use repository::MemoryRepository;
pub use source::FakeSource;
pub use workload::Op;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use taosbackup_core::{RepositoryError, RepositoryErrorKind, SourceError, SourceErrorKind};

/// Where a scripted failure can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// [`Source::catalog`](taosbackup_core::Source::catalog).
    Catalog,
    /// Opening an export.
    Export,
    /// Pulling the next chunk of an export (mid-stream).
    ExportChunk,
    /// [`Source::create_schema`](taosbackup_core::Source::create_schema).
    CreateSchema,
    /// [`Source::write_chunk`](taosbackup_core::Source::write_chunk).
    WriteChunk,
    /// [`ChangeFeed::start`](taosbackup_core::ChangeFeed::start).
    FeedStart,
    /// [`ChangeFeed::next_batch`](taosbackup_core::ChangeFeed::next_batch).
    FeedNext,
    /// [`ChangeFeed::commit`](taosbackup_core::ChangeFeed::commit).
    FeedCommit,
    /// [`Repository::store_blob`](taosbackup_core::Repository::store_blob).
    StoreBlob,
    /// [`Repository::read_blob`](taosbackup_core::Repository::read_blob).
    ReadBlob,
    /// [`Repository::commit_snapshot`](taosbackup_core::Repository::commit_snapshot).
    CommitSnapshot,
}

/// Scripted failures: "fail the next `n` calls at this point". Cloning shares the script.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    armed: Arc<Mutex<HashMap<FaultPoint, (u32, bool)>>>,
}

/// The error an injected fault raises.
#[derive(Debug, thiserror::Error)]
#[error("injected fault at {0:?}")]
pub struct InjectedFault(pub FaultPoint);

impl Faults {
    /// Makes the next `times` calls at `point` fail; `retryable` is what the error says.
    pub fn fail(&self, point: FaultPoint, times: u32, retryable: bool) {
        let mut armed = lock(&self.armed);
        match times {
            0 => armed.remove(&point),
            n => armed.insert(point, (n, retryable)),
        };
    }

    /// Disarms every point.
    pub fn clear(&self) {
        lock(&self.armed).clear();
    }

    /// Consumes one armed failure at `point`, if any: `Some(retryable)`.
    fn take(&self, point: FaultPoint) -> Option<bool> {
        let mut armed = lock(&self.armed);
        let (n, retryable) = armed.get_mut(&point)?;
        let r = *retryable;
        *n -= 1;
        if *n == 0 {
            armed.remove(&point);
        }
        Some(r)
    }

    /// `Err` when a failure is armed at `point` (a connection failure, as the source would
    /// report a dropped server).
    pub(crate) fn source(&self, point: FaultPoint) -> Result<(), SourceError> {
        match self.take(point) {
            Some(retryable) => Err(SourceError::new(
                SourceErrorKind::Connection,
                retryable,
                InjectedFault(point),
            )),
            None => Ok(()),
        }
    }

    /// `Err` when a failure is armed at `point` (a backend failure).
    pub(crate) fn repository(&self, point: FaultPoint) -> Result<(), RepositoryError> {
        match self.take(point) {
            Some(retryable) => Err(RepositoryError::new(
                RepositoryErrorKind::Backend,
                retryable,
                InjectedFault(point),
            )),
            None => Ok(()),
        }
    }
}

/// Locks a mutex, going on after a panic elsewhere (the fakes' state stays consistent:
/// every change is made under one lock, in one step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
