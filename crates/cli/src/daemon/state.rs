//! What the daemon knows, shared by the scheduler (writer) and the HTTP server (reader): per
//! database the current run and its progress, the last result, the next scheduled runs, the
//! change feed's health; the repository's health; counters for the metrics.
//!
//! One `std::sync::Mutex` guards it: every critical section is a few field updates or a clone,
//! never an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use taosbackup_core::{BackupKind, BackupStats, Progress};

use super::{DaemonOptions, FeedHealth, RunSummary};

/// The scheduler's vocabulary, from the engine (`Outcome` keeps its name here: it labels the
/// HTTP JSON and the metrics).
pub use taosbackup_engine::{RunKind, RunOutcome as Outcome};

/// A component's health as last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked yet (the daemon just started).
    Unknown,
    /// The last check succeeded.
    Ok,
    /// The last check failed.
    Failed,
    /// The component does not exist here (a database without a change feed).
    None,
}

/// A run in progress.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentRun {
    #[serde(skip)]
    id: u64,
    /// The scheduled kind.
    pub kind: RunKind,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// When this attempt started.
    pub started_at: DateTime<Utc>,
    /// The engine's current phase (`"export"`, …), once it began one.
    pub phase: Option<String>,
    /// Blocks the phase has to process (0 when unknown).
    pub total_blocks: u64,
    /// Rows the phase expects (0 when unknown).
    pub estimated_rows: u64,
    /// Blocks processed in the phase.
    pub blocks: u64,
    /// Rows processed in the phase.
    pub rows: u64,
    /// Bytes processed in the phase.
    pub bytes: u64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// The scheduled kind.
    pub kind: RunKind,
    /// How it ended.
    pub result: Outcome,
    /// Which attempt this was.
    pub attempt: u32,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Its wall time.
    pub duration_seconds: f64,
    /// The committed backup (on success).
    pub backup_id: Option<String>,
    /// What the backup was (on success): an incremental may have become a full.
    pub backup_kind: Option<BackupKind>,
    /// Why an incremental became a full.
    pub full_reason: Option<String>,
    /// The backup's counters (on success).
    pub stats: Option<BackupStats>,
    /// Why it failed (passwords in URLs masked).
    pub error: Option<String>,
    /// Why the retention after it failed, if it did.
    pub retention_error: Option<String>,
}

/// A database's change feed as last refreshed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedState {
    /// Health of the last refresh.
    pub status: Health,
    /// Why the last refresh failed.
    pub error: Option<String>,
    /// When the last refresh ended.
    pub checked_at: Option<DateTime<Utc>>,
    /// When a refresh last succeeded.
    pub last_ok_at: Option<DateTime<Utc>>,
    /// Tracker counters from the last successful refresh.
    pub tracker: Option<FeedHealth>,
}

/// The repository as last checked.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryState {
    /// Health of the last check.
    pub status: Health,
    /// Why the last check failed.
    pub error: Option<String>,
    /// When the last check ended.
    pub checked_at: Option<DateTime<Utc>>,
}

/// Figures of the last successful run of one kind, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastOk {
    pub duration_seconds: f64,
    pub rows: u64,
    pub bytes_stored: u64,
    pub finished_at: i64,
}

/// Counters of one database, for the metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// Runs by (scheduled kind, outcome); every attempt counts.
    pub backups: BTreeMap<(RunKind, Outcome), u64>,
    /// The last successful run of each kind.
    pub last_ok: BTreeMap<RunKind, LastOk>,
    /// Rows in all committed backups.
    pub rows_total: u64,
    /// Bytes newly stored by all committed backups.
    pub bytes_stored_total: u64,
    /// Retention runs: (succeeded, failed).
    pub retention: (u64, u64),
}

/// Everything known about one database.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseState {
    pub current: Option<CurrentRun>,
    pub last: Option<LastRun>,
    pub last_success: Option<LastRun>,
    pub next_full: Option<DateTime<Utc>>,
    pub next_incremental: Option<DateTime<Utc>>,
    pub feed: FeedState,
    pub counters: Counters,
}

/// A consistent copy of the whole state.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub databases: BTreeMap<String, DatabaseState>,
    pub repository: RepositoryState,
    /// The kinds that have a schedule (their counters are shown from zero).
    pub scheduled_kinds: Vec<RunKind>,
    /// Storage requests retried since the start.
    pub storage_retries: u64,
}

#[derive(Debug)]
struct Inner {
    next_run_id: u64,
    finished_runs: u64,
    databases: BTreeMap<String, DatabaseState>,
    repository: RepositoryState,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct DaemonState {
    started_at: DateTime<Utc>,
    scheduled_kinds: Vec<RunKind>,
    storage_retries: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
}

impl DaemonState {
    /// Empty state for the databases and schedules of `options`.
    pub(crate) fn new(options: &DaemonOptions) -> DaemonState {
        let mut scheduled_kinds = Vec::new();
        if options.schedule.full.is_some() {
            scheduled_kinds.push(RunKind::Full);
        }
        if options.schedule.incremental.is_some() {
            scheduled_kinds.push(RunKind::Incremental);
        }
        let databases = options
            .databases
            .iter()
            .map(|name| {
                let state = DatabaseState {
                    current: None,
                    last: None,
                    last_success: None,
                    next_full: None,
                    next_incremental: None,
                    feed: FeedState {
                        status: Health::Unknown,
                        error: None,
                        checked_at: None,
                        last_ok_at: None,
                        tracker: None,
                    },
                    counters: Counters::default(),
                };
                (name.clone(), state)
            })
            .collect();
        DaemonState {
            started_at: Utc::now(),
            scheduled_kinds,
            storage_retries: Default::default(),
            inner: Mutex::new(Inner {
                next_run_id: 1,
                finished_runs: 0,
                databases,
                repository: RepositoryState {
                    status: Health::Unknown,
                    error: None,
                    checked_at: None,
                },
            }),
        }
    }

    /// The state is plain data that every writer leaves consistent between statements, so a
    /// panic elsewhere while holding the lock does not make it unusable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `f` to the state of `database` (a configured one; others are ignored).
    fn with_database(&self, database: &str, f: impl FnOnce(&mut DatabaseState)) {
        if let Some(state) = self.lock().databases.get_mut(database) {
            f(state);
        }
    }

    /// A consistent copy for the HTTP server.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            started_at: self.started_at,
            now: Utc::now(),
            databases: inner.databases.clone(),
            repository: inner.repository.clone(),
            scheduled_kinds: self.scheduled_kinds.clone(),
            storage_retries: self
                .storage_retries
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Runs that ended (any outcome but skipped) since the start.
    pub(crate) fn finished_runs(&self) -> u64 {
        self.lock().finished_runs
    }

    /// Publishes the next fire times of `database`.
    pub(crate) fn set_next_runs(
        &self,
        database: &str,
        full: Option<DateTime<Utc>>,
        incremental: Option<DateTime<Utc>>,
    ) {
        self.with_database(database, |state| {
            state.next_full = full;
            state.next_incremental = incremental;
        });
    }

    /// A run of `database` starts; returns its id for [`RunProgress`].
    pub(crate) fn begin_run(&self, database: &str, kind: RunKind, attempt: u32) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_run_id;
        inner.next_run_id += 1;
        if let Some(state) = inner.databases.get_mut(database) {
            state.current = Some(CurrentRun {
                id,
                kind,
                attempt,
                started_at: Utc::now(),
                phase: None,
                total_blocks: 0,
                estimated_rows: 0,
                blocks: 0,
                rows: 0,
                bytes: 0,
            });
        }
        id
    }

    /// Ends the current run of `database` and returns its last-run record (None when no run
    /// was current).
    fn end_run(
        inner: &mut Inner,
        database: &str,
        result: Outcome,
        fill: impl FnOnce(&mut LastRun),
    ) -> Option<LastRun> {
        let state = inner.databases.get_mut(database)?;
        let current = state.current.take()?;
        let finished_at = Utc::now();
        let mut last = LastRun {
            kind: current.kind,
            result,
            attempt: current.attempt,
            started_at: current.started_at,
            finished_at,
            duration_seconds: (finished_at - current.started_at)
                .to_std()
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            backup_id: None,
            backup_kind: None,
            full_reason: None,
            stats: None,
            error: None,
            retention_error: None,
        };
        fill(&mut last);
        *state
            .counters
            .backups
            .entry((current.kind, result))
            .or_default() += 1;
        state.last = Some(last.clone());
        inner.finished_runs += 1;
        Some(last)
    }

    /// The current run of `database` committed a backup.
    pub(crate) fn finish_ok(&self, database: &str, summary: RunSummary) {
        let mut inner = self.lock();
        let stats = summary.stats;
        let Some(last) = Self::end_run(&mut inner, database, Outcome::Ok, |last| {
            last.backup_id = Some(summary.backup_id);
            last.backup_kind = Some(summary.kind);
            last.full_reason = summary.full_reason;
            last.stats = Some(summary.stats);
        }) else {
            return;
        };
        if let Some(state) = inner.databases.get_mut(database) {
            let counters = &mut state.counters;
            counters.rows_total = counters.rows_total.saturating_add(stats.rows);
            counters.bytes_stored_total = counters
                .bytes_stored_total
                .saturating_add(stats.bytes_stored);
            counters.last_ok.insert(
                last.kind,
                LastOk {
                    duration_seconds: last.duration_seconds,
                    rows: stats.rows,
                    bytes_stored: stats.bytes_stored,
                    finished_at: last.finished_at.timestamp(),
                },
            );
            state.last_success = Some(last);
        }
    }

    /// The current run of `database` failed or was cancelled, with `error`.
    pub(crate) fn finish_err(&self, database: &str, result: Outcome, error: String) {
        let mut inner = self.lock();
        Self::end_run(&mut inner, database, result, |last| {
            last.error = Some(error)
        });
    }

    /// A scheduled run of `database` was skipped.
    pub(crate) fn record_skipped(&self, database: &str, kind: RunKind) {
        self.with_database(database, |state| {
            *state
                .counters
                .backups
                .entry((kind, Outcome::Skipped))
                .or_default() += 1;
        });
    }

    /// Retention after the last run of `database` ended (`error` when it failed).
    pub(crate) fn record_retention(&self, database: &str, error: Option<String>) {
        self.with_database(database, |state| {
            match error {
                None => state.counters.retention.0 += 1,
                Some(_) => state.counters.retention.1 += 1,
            }
            if let Some(last) = state.last.as_mut() {
                last.retention_error.clone_from(&error);
            }
            if let Some(last) = state.last_success.as_mut() {
                last.retention_error = error;
            }
        });
    }

    /// A feed refresh of `database` succeeded.
    pub(crate) fn record_feed_ok(&self, database: &str, health: Option<FeedHealth>) {
        let now = Utc::now();
        self.with_database(database, |state| {
            state.feed.status = if health.is_some() {
                Health::Ok
            } else {
                Health::None
            };
            state.feed.error = None;
            state.feed.checked_at = Some(now);
            state.feed.last_ok_at = Some(now);
            state.feed.tracker = health;
        });
    }

    /// A feed refresh of `database` failed.
    pub(crate) fn record_feed_failed(&self, database: &str, error: String) {
        self.with_database(database, |state| {
            state.feed.status = Health::Failed;
            state.feed.error = Some(error);
            state.feed.checked_at = Some(Utc::now());
        });
    }

    /// The runner's count of retried storage requests.
    pub(crate) fn record_storage_retries(&self, retries: u64) {
        self.storage_retries
            .store(retries, std::sync::atomic::Ordering::Relaxed);
    }

    /// The repository check succeeded.
    pub(crate) fn record_repository_ok(&self) {
        let mut inner = self.lock();
        inner.repository = RepositoryState {
            status: Health::Ok,
            error: None,
            checked_at: Some(Utc::now()),
        };
    }

    /// The repository check failed.
    pub(crate) fn record_repository_failed(&self, error: String) {
        let mut inner = self.lock();
        inner.repository = RepositoryState {
            status: Health::Failed,
            error: Some(error),
            checked_at: Some(Utc::now()),
        };
    }

    /// Progress of the run `run_id` of `database` (ignored once that run has ended).
    fn progress(&self, database: &str, run_id: u64, f: impl FnOnce(&mut CurrentRun)) {
        self.with_database(database, |state| {
            if let Some(current) = state.current.as_mut().filter(|c| c.id == run_id) {
                f(current);
            }
        });
    }
}

/// The [`Progress`] handed to [`JobRunner::run_backup`](super::JobRunner::run_backup): writes
/// the run's progress into the shared state.
pub(crate) struct RunProgress {
    state: Arc<DaemonState>,
    database: String,
    run_id: u64,
}

impl RunProgress {
    /// Progress of run `run_id` of `database`.
    pub(crate) fn new(state: Arc<DaemonState>, database: String, run_id: u64) -> RunProgress {
        RunProgress {
            state,
            database,
            run_id,
        }
    }
}

impl Progress for RunProgress {
    fn begin(&self, phase: &str, total_blocks: u64, estimated_rows: u64) {
        self.state.progress(&self.database, self.run_id, |run| {
            run.phase = Some(phase.to_owned());
            run.total_blocks = total_blocks;
            run.estimated_rows = estimated_rows;
            run.blocks = 0;
            run.rows = 0;
            run.bytes = 0;
        });
    }

    fn advance(&self, blocks: u64, rows: u64, bytes: u64) {
        self.state.progress(&self.database, self.run_id, |run| {
            run.blocks = run.blocks.saturating_add(blocks);
            run.rows = run.rows.saturating_add(rows);
            run.bytes = run.bytes.saturating_add(bytes);
        });
    }
}
