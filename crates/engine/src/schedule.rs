//! The daemon's decisions, without a clock or I/O: which backup runs next and when (full or
//! incremental, by the cron schedules and the overlap policy), when a failed run is retried
//! and when the daemon gives up on it, when retention runs, and when the change feed is read
//! between runs. Every method takes the current time as an argument, so the whole policy is
//! tested with made-up times; the CLI's daemon owns the clock, the tokio tasks, the backups
//! themselves, HTTP and signals, and asks a [`Scheduler`] what to do.
//!
//! Policies (documented for operators in `docs/operations.md`, section "Daemon"):
//!
//! - Runs of one database never overlap. An incremental that falls due while a run of the
//!   same database is in progress (or while a failed run waits for its retry) is skipped: the
//!   next incremental covers its changes ([`Missed::incremental_skipped`]). A full that falls
//!   due then runs as soon as the current run ends, because skipping it would lengthen the
//!   chain until the next full ([`Missed::full_pending`]). When a full and an incremental fall
//!   due at the same second, only the full runs.
//! - A failed run is retried `retry_count` times, `retry_interval` apart; then the scheduler
//!   gives up and waits for the next scheduled run.
//! - Retention runs after every committed backup, before the next run is chosen. Which
//!   backups it forgets is the repository's retention policy (the rules `prune` applies);
//!   the scheduler only says when.
//! - The change feed is read at start and then every `feed_refresh_interval` while no run is
//!   due (never while a failed run waits for its retry).

mod cron;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use cron::CronSchedule;

/// The kind of backup the schedule asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `schedule.full`.
    Full,
    /// `schedule.incremental`.
    Incremental,
}

impl RunKind {
    /// `"full"` or `"incremental"` (metric labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Incremental => "incremental",
        }
    }
}

/// How a scheduled run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// The backup was committed.
    Ok,
    /// The backup failed (it may be retried).
    Failed,
    /// A shutdown cancelled it; nothing was committed.
    Cancelled,
    /// It fell due while another run of the database was in progress and did not run.
    Skipped,
}

impl RunOutcome {
    /// `"ok"`, `"failed"`, `"cancelled"` or `"skipped"` (metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Skipped => "skipped",
        }
    }
}

/// The schedule of one database: `[schedule]` and `daemon.feed_refresh_interval` of the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulePolicy {
    /// When full backups fall due; None: never.
    pub full: Option<CronSchedule>,
    /// When incremental backups fall due; None: never.
    pub incremental: Option<CronSchedule>,
    /// How often a failed run is retried before the scheduler gives up on it.
    pub retry_count: u32,
    /// The wait between a failed run and its retry.
    pub retry_interval: Duration,
    /// How often the change feed is read between runs.
    pub feed_refresh_interval: Duration,
}

/// What the daemon should do now for one database ([`Scheduler::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run a backup now, then report how it ended with [`Scheduler::backup_ended`].
    Backup {
        /// What the schedule asked for.
        kind: RunKind,
        /// 1 for the first attempt, 2 for the first retry, …
        attempt: u32,
    },
    /// Read the change feed now, then call [`Scheduler::feed_refreshed`].
    RefreshFeed,
    /// Nothing to do before this time (ask again then, or earlier: asking early is harmless).
    Wait(DateTime<Utc>),
}

/// What follows a backup attempt ([`Scheduler::backup_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterBackup {
    /// The backup was committed: apply retention now, then call
    /// [`Scheduler::retention_ended`].
    ApplyRetention,
    /// The attempt failed and is retried at `at` ([`Scheduler::step`] says when).
    Retry {
        /// When the retry falls due.
        at: DateTime<Utc>,
        /// The attempt that failed.
        attempt: u32,
    },
    /// The attempt failed and was the last one allowed: the run is given up.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// Fires that fell due during the run.
        missed: Missed,
    },
    /// The run was cancelled (or did not run); it is not retried.
    Ended {
        /// Fires that fell due during the run.
        missed: Missed,
    },
}

/// Fires that fell due while a run (with its retries and retention) was in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missed {
    /// A full fell due; it runs next.
    pub full_pending: bool,
    /// An incremental fell due and is skipped (count it as a skipped run).
    pub incremental_skipped: bool,
}

/// Where the scheduler of one database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next fire or feed refresh.
    Idle,
    /// A backup attempt was handed out and has not ended.
    Running { kind: RunKind, attempt: u32 },
    /// An attempt failed; the next one falls due at `at`.
    Retrying {
        kind: RunKind,
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// A backup was committed and retention was handed out.
    Retention,
}

/// The schedule of one database as a state machine: [`step`](Scheduler::step) says what to do
/// at a given time; the other methods report what happened. Every method takes the current
/// time; none reads a clock.
#[derive(Debug, Clone)]
pub struct Scheduler {
    policy: SchedulePolicy,
    next_full: Option<DateTime<Utc>>,
    next_incremental: Option<DateTime<Utc>>,
    /// A full fell due during a run and runs next.
    pending_full: bool,
    next_refresh: DateTime<Utc>,
    phase: Phase,
}

impl Scheduler {
    /// Schedules from `now` on: the first fires are the schedules' first times after `now`;
    /// the feed is read at once.
    pub fn new(policy: SchedulePolicy, now: DateTime<Utc>) -> Scheduler {
        let next_full = policy.full.as_ref().and_then(|s| s.next_after(now));
        let next_incremental = policy.incremental.as_ref().and_then(|s| s.next_after(now));
        Scheduler {
            policy,
            next_full,
            next_incremental,
            pending_full: false,
            next_refresh: now,
            phase: Phase::Idle,
        }
    }

    /// The next scheduled full and incremental fire times (for the status report).
    pub fn next_runs(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.next_full, self.next_incremental)
    }

    /// What to do at `now`. A retry waits for its time and nothing else happens meanwhile;
    /// otherwise a due (or pending) full comes first, then a due incremental (a full and an
    /// incremental due together make one full), then a feed refresh; else wait for the
    /// earliest of them. While a handed-out backup or retention has not ended, the answer is
    /// to wait for it (`Wait(now)`).
    pub fn step(&mut self, now: DateTime<Utc>) -> Step {
        match self.phase {
            Phase::Running { .. } | Phase::Retention => return Step::Wait(now),
            Phase::Retrying { kind, attempt, at } => {
                if now < at {
                    return Step::Wait(at);
                }
                self.phase = Phase::Running { kind, attempt };
                return Step::Backup { kind, attempt };
            }
            Phase::Idle => {}
        }
        if let Some(kind) = self.take_due(now) {
            self.phase = Phase::Running { kind, attempt: 1 };
            return Step::Backup { kind, attempt: 1 };
        }
        if now >= self.next_refresh {
            return Step::RefreshFeed;
        }
        let next_fire = match (self.next_full, self.next_incremental) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Step::Wait(next_fire.map_or(self.next_refresh, |fire| fire.min(self.next_refresh)))
    }

    /// The backup handed out by [`step`](Scheduler::step) ended at `now` with `outcome`.
    /// Reported when no backup is running, it changes nothing and answers `Ended`.
    pub fn backup_ended(&mut self, outcome: RunOutcome, now: DateTime<Utc>) -> AfterBackup {
        let Phase::Running { kind, attempt } = self.phase else {
            return AfterBackup::Ended {
                missed: Missed::default(),
            };
        };
        match outcome {
            RunOutcome::Ok => {
                self.phase = Phase::Retention;
                AfterBackup::ApplyRetention
            }
            RunOutcome::Failed if attempt < self.policy.retry_count.saturating_add(1) => {
                let wait = chrono::Duration::from_std(self.policy.retry_interval)
                    .unwrap_or(chrono::Duration::MAX);
                let at = now
                    .checked_add_signed(wait)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                self.phase = Phase::Retrying {
                    kind,
                    attempt: attempt.saturating_add(1),
                    at,
                };
                AfterBackup::Retry { at, attempt }
            }
            RunOutcome::Failed => AfterBackup::GaveUp {
                attempts: attempt,
                missed: self.end_run(now),
            },
            RunOutcome::Cancelled | RunOutcome::Skipped => AfterBackup::Ended {
                missed: self.end_run(now),
            },
        }
    }

    /// The retention after a committed backup ended at `now` (whether it succeeded or not:
    /// a failed retention runs again after the next backup). Returns the fires missed during
    /// the run.
    pub fn retention_ended(&mut self, now: DateTime<Utc>) -> Missed {
        if self.phase != Phase::Retention {
            return Missed::default();
        }
        self.end_run(now)
    }

    /// The change feed was read; the next refresh falls due `feed_refresh_interval` after
    /// `now`.
    pub fn feed_refreshed(&mut self, now: DateTime<Utc>) {
        let every = chrono::Duration::from_std(self.policy.feed_refresh_interval)
            .unwrap_or(chrono::Duration::MAX);
        self.next_refresh = now
            .checked_add_signed(every)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// The daemon stops scheduling at `now`: a retry that was waiting is abandoned, which
    /// ends its run (returns the fires missed during it); otherwise nothing was missed.
    pub fn stop(&mut self, now: DateTime<Utc>) -> Missed {
        match self.phase {
            Phase::Retrying { .. } => self.end_run(now),
            _ => Missed::default(),
        }
    }

    /// The run due at `now`, if any, and advances past it.
    fn take_due(&mut self, now: DateTime<Utc>) -> Option<RunKind> {
        let full_due = self.pending_full || self.next_full.is_some_and(|t| t <= now);
        let incremental_due = self.next_incremental.is_some_and(|t| t <= now);
        if full_due {
            self.pending_full = false;
            self.advance_full(now);
        }
        if incremental_due {
            self.advance_incremental(now);
        }
        if full_due {
            Some(RunKind::Full)
        } else if incremental_due {
            Some(RunKind::Incremental)
        } else {
            None
        }
    }

    /// A run (with its retries and retention) ended at `now`: back to idle; a full that fell
    /// due meanwhile becomes pending, an incremental that fell due meanwhile is skipped.
    fn end_run(&mut self, now: DateTime<Utc>) -> Missed {
        self.phase = Phase::Idle;
        let mut missed = Missed::default();
        if self.next_full.is_some_and(|t| t <= now) {
            self.pending_full = true;
            self.advance_full(now);
            missed.full_pending = true;
        }
        if self.next_incremental.is_some_and(|t| t <= now) {
            self.advance_incremental(now);
            missed.incremental_skipped = true;
        }
        missed
    }

    fn advance_full(&mut self, now: DateTime<Utc>) {
        self.next_full = self.policy.full.as_ref().and_then(|s| s.next_after(now));
    }

    fn advance_incremental(&mut self, now: DateTime<Utc>) {
        self.next_incremental = self
            .policy
            .incremental
            .as_ref()
            .and_then(|s| s.next_after(now));
    }
}

#[cfg(test)]
mod tests;
