//! Cron schedules and the scheduler: one loop per database that fires full and incremental
//! runs, retries failed ones, applies retention, and refreshes the change feed in between;
//! plus one loop that checks the repository.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use serde::Deserialize;
use tokio::sync::RwLock;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::state::{DaemonState, Outcome, RunKind, RunProgress};
use super::{DaemonOptions, JobRunner, Shutdown, redact};

/// A cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`
/// (`"0 0 2 * * Sun"`, `"*/5 * * * * *"`); five fields mean seconds `0`. Weekdays follow
/// POSIX cron: `0` and `7` are Sunday, `1` is Monday; names (`Sun`, `Mon`) work too. Evaluated
/// in the local time zone of the daemon.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSchedule {
    expression: String,
    cron: croner::Cron,
}

impl CronSchedule {
    /// Parses `expression`; the error says what is wrong and how to write it.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let trimmed = expression.trim();
        let cron = croner::parser::CronParser::new()
            .parse(trimmed)
            .map_err(|e| {
                format!(
                    "invalid cron expression {expression:?}: {e}; write six fields \
                 \"sec min hour day-of-month month day-of-week\", e.g. \"0 0 2 * * Sun\""
                )
            })?;
        Ok(CronSchedule {
            expression: trimmed.to_owned(),
            cron,
        })
    }

    /// The first fire time strictly after `after`; None when the expression never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&Local);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;

    fn try_from(expression: String) -> Result<CronSchedule, String> {
        CronSchedule::parse(&expression)
    }
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(expression: &str) -> Result<CronSchedule, String> {
        CronSchedule::parse(expression)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule")
            .field(&self.expression)
            .finish()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &CronSchedule) -> bool {
        self.expression == other.expression
    }
}

impl Eq for CronSchedule {}

/// The next fire times of one database and the overlap policy, without any clock or I/O (so
/// it is tested with made-up times).
#[derive(Debug, Clone)]
pub(crate) struct Planner {
    full: Option<CronSchedule>,
    incremental: Option<CronSchedule>,
    next_full: Option<DateTime<Utc>>,
    next_incremental: Option<DateTime<Utc>>,
    /// A full fell due during a run and runs next.
    pending_full: bool,
}

/// What [`Planner::after_run`] decided about fires that fell due during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Missed {
    /// A full fell due; it runs next.
    pub full_pending: bool,
    /// An incremental fell due and is skipped.
    pub incremental_skipped: bool,
}

impl Planner {
    /// Plans from `now` on.
    pub(crate) fn new(
        full: Option<CronSchedule>,
        incremental: Option<CronSchedule>,
        now: DateTime<Utc>,
    ) -> Planner {
        let next_full = full.as_ref().and_then(|s| s.next_after(now));
        let next_incremental = incremental.as_ref().and_then(|s| s.next_after(now));
        Planner {
            full,
            incremental,
            next_full,
            next_incremental,
            pending_full: false,
        }
    }

    /// The next scheduled full and incremental fire times.
    pub(crate) fn next(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.next_full, self.next_incremental)
    }

    /// The earliest fire time (`now` when a full is pending).
    pub(crate) fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.pending_full {
            return Some(now);
        }
        match (self.next_full, self.next_incremental) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The run due at `now`, if any, and advances past it. A full and an incremental due
    /// together make one full.
    pub(crate) fn take_due(&mut self, now: DateTime<Utc>) -> Option<RunKind> {
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

    /// After a run (or its retries) ended at `now`: a full that fell due meanwhile becomes
    /// pending; an incremental that fell due meanwhile is skipped.
    pub(crate) fn after_run(&mut self, now: DateTime<Utc>) -> Missed {
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
        self.next_full = self.full.as_ref().and_then(|s| s.next_after(now));
    }

    fn advance_incremental(&mut self, now: DateTime<Utc>) {
        self.next_incremental = self.incremental.as_ref().and_then(|s| s.next_after(now));
    }
}

/// What every scheduler loop shares.
struct Context {
    options: DaemonOptions,
    runner: Arc<dyn JobRunner>,
    state: Arc<DaemonState>,
    shutdown: Shutdown,
    /// Backups hold it shared, retention exclusively: the repository's own locks would make
    /// one of them fail; this makes them wait instead.
    repository_gate: RwLock<()>,
}

/// Starts one scheduler loop per database, the repository check loop, and the shutdown timer.
pub(crate) fn spawn(
    options: DaemonOptions,
    runner: Arc<dyn JobRunner>,
    state: Arc<DaemonState>,
    shutdown: Shutdown,
) -> JoinSet<()> {
    let context = Arc::new(Context {
        options,
        runner,
        state,
        shutdown,
        repository_gate: RwLock::new(()),
    });
    let mut tasks = JoinSet::new();
    for database in context.options.databases.clone() {
        tasks.spawn(database_loop(context.clone(), database));
    }
    tasks.spawn(repository_loop(context.clone()));
    // Runs still going `shutdown_timeout` after a graceful stop are cancelled. Detached: it
    // must not keep `Daemon::wait` waiting once the loops have ended.
    let shutdown = context.shutdown.clone();
    let timeout = context.options.daemon.shutdown_timeout;
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.graceful.cancelled() => {}
            () = shutdown.immediate.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(timeout) => {
                tracing::warn!(
                    timeout = %humantime::format_duration(timeout),
                    "runs did not finish within daemon.shutdown_timeout; cancelling them"
                );
                shutdown.immediate.cancel();
            }
            () = shutdown.immediate.cancelled() => {}
        }
    });
    tasks
}

/// Sleeps until `deadline` (wall clock), at most a minute at a time so a changed system clock
/// is noticed; returns early (false) on a graceful stop.
async fn sleep_until(deadline: DateTime<Utc>, stop: &CancellationToken) -> bool {
    let wait = (deadline - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(60));
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Schedules one database until a graceful stop.
async fn database_loop(context: Arc<Context>, database: String) {
    let stop = context.shutdown.graceful.clone();
    let schedule = &context.options.schedule;
    let refresh_every = chrono::Duration::from_std(context.options.daemon.feed_refresh_interval)
        .unwrap_or(chrono::Duration::MAX);
    let mut planner = Planner::new(
        schedule.full.clone(),
        schedule.incremental.clone(),
        Utc::now(),
    );
    let (next_full, next_incremental) = planner.next();
    tracing::info!(
        database,
        full = schedule.full.as_ref().map(|s| s.to_string()),
        next_full = next_full.map(|t| t.to_rfc3339()),
        incremental = schedule.incremental.as_ref().map(|s| s.to_string()),
        next_incremental = next_incremental.map(|t| t.to_rfc3339()),
        "scheduling backups"
    );
    // The feed is read once at start, so health and the tracker are current at once.
    let mut next_refresh = Utc::now();
    while !stop.is_cancelled() {
        let (next_full, next_incremental) = planner.next();
        context
            .state
            .set_next_runs(&database, next_full, next_incremental);
        let now = Utc::now();
        if let Some(kind) = planner.take_due(now) {
            run_with_retries(&context, &database, kind).await;
            let missed = planner.after_run(Utc::now());
            if missed.full_pending {
                tracing::info!(
                    database,
                    "a full backup fell due during the previous run; it runs now"
                );
            }
            if missed.incremental_skipped {
                tracing::warn!(
                    database,
                    "skipped an incremental backup that fell due while another run of this \
                     database was in progress; the next incremental covers its changes"
                );
                context
                    .state
                    .record_skipped(&database, RunKind::Incremental);
            }
            continue;
        }
        if now >= next_refresh {
            refresh_feed(&context, &database).await;
            next_refresh = Utc::now() + refresh_every;
            continue;
        }
        let deadline = planner
            .next_fire(now)
            .map_or(next_refresh, |fire| fire.min(next_refresh));
        sleep_until(deadline, &stop).await;
    }
    context.state.set_next_runs(&database, None, None);
}

/// Refreshes the change feed of `database` and records the outcome.
async fn refresh_feed(context: &Context, database: &str) {
    match context.runner.refresh_feed(database).await {
        Ok(health) => context.state.record_feed_ok(database, health),
        Err(e) => {
            let text = redact(&format!("{e:#}"));
            tracing::warn!(database, error = %text, "change feed refresh failed");
            context.state.record_feed_failed(database, text);
        }
    }
}

/// Checks the repository every `feed_refresh_interval` until a graceful stop.
async fn repository_loop(context: Arc<Context>) {
    let stop = context.shutdown.graceful.clone();
    while !stop.is_cancelled() {
        let checked = context.runner.check_repository().await;
        context
            .state
            .record_storage_retries(context.runner.storage_retries());
        match checked {
            Ok(()) => context.state.record_repository_ok(),
            Err(e) => {
                let text = redact(&format!("{e:#}"));
                tracing::warn!(error = %text, "repository check failed");
                context.state.record_repository_failed(text);
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(context.options.daemon.feed_refresh_interval) => {}
        }
    }
}

/// Runs one scheduled backup, retrying a failure `retry_count` times; applies retention
/// after a success.
async fn run_with_retries(context: &Context, database: &str, kind: RunKind) {
    let schedule = &context.options.schedule;
    let attempts = schedule.retry_count.saturating_add(1);
    for attempt in 1..=attempts {
        let outcome = run_once(context, database, kind, attempt).await;
        context
            .state
            .record_storage_retries(context.runner.storage_retries());
        match outcome {
            Outcome::Ok => {
                apply_retention(context, database).await;
                return;
            }
            Outcome::Cancelled | Outcome::Skipped => return,
            Outcome::Failed if attempt < attempts => {
                tracing::warn!(
                    database,
                    kind = kind.as_str(),
                    attempt,
                    retry_in = %humantime::format_duration(schedule.retry_interval),
                    "backup failed; retrying"
                );
                tokio::select! {
                    () = context.shutdown.graceful.cancelled() => return,
                    () = tokio::time::sleep(schedule.retry_interval) => {}
                }
            }
            Outcome::Failed => {
                tracing::error!(
                    database,
                    kind = kind.as_str(),
                    attempts,
                    "backup failed on every attempt; waiting for the next scheduled run"
                );
            }
        }
    }
}

/// One attempt: runs the backup under the shared repository gate and records the result.
async fn run_once(context: &Context, database: &str, kind: RunKind, attempt: u32) -> Outcome {
    let cancel = context.shutdown.immediate.child_token();
    let _gate = tokio::select! {
        gate = context.repository_gate.read() => gate,
        () = cancel.cancelled() => return Outcome::Cancelled,
    };
    tracing::info!(database, kind = kind.as_str(), attempt, "backup started");
    let run_id = context.state.begin_run(database, kind, attempt);
    let progress = Arc::new(RunProgress::new(
        context.state.clone(),
        database.to_owned(),
        run_id,
    ));
    let result = context
        .runner
        .run_backup(database, kind == RunKind::Full, progress, cancel.clone())
        .await;
    match result {
        Ok(summary) => {
            tracing::info!(
                database,
                kind = kind.as_str(),
                backup = %summary.backup_id,
                committed = crate::output::kind(summary.kind),
                full_reason = summary.full_reason.as_deref(),
                rows = summary.stats.rows,
                bytes_stored = summary.stats.bytes_stored,
                "backup committed"
            );
            context.state.finish_ok(database, summary);
            Outcome::Ok
        }
        Err(e) if cancel.is_cancelled() => {
            let text = redact(&format!("{e:#}"));
            tracing::warn!(database, kind = kind.as_str(), error = %text, "backup cancelled by shutdown; nothing committed");
            context.state.finish_err(database, Outcome::Cancelled, text);
            Outcome::Cancelled
        }
        Err(e) => {
            let text = redact(&format!("{e:#}"));
            tracing::warn!(database, kind = kind.as_str(), attempt, error = %text, "backup failed");
            context.state.finish_err(database, Outcome::Failed, text);
            Outcome::Failed
        }
    }
}

/// Applies retention under the exclusive repository gate; a failure is logged and recorded,
/// and the backup stays a success.
async fn apply_retention(context: &Context, database: &str) {
    let cancel = &context.shutdown.immediate;
    let _gate = tokio::select! {
        gate = context.repository_gate.write() => gate,
        () = cancel.cancelled() => return,
    };
    match context.runner.apply_retention(database).await {
        Ok(()) => context.state.record_retention(database, None),
        Err(e) => {
            let text = redact(&format!("{e:#}"));
            tracing::warn!(database, error = %text, "retention failed; it runs again after the next backup");
            context.state.record_retention(database, Some(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Local
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("unambiguous local time")
            .with_timezone(&Utc)
    }

    #[test]
    fn weekly_full_fires_on_sunday_at_two() {
        let full = CronSchedule::parse("0 0 2 * * Sun").expect("parses");
        // 2026-11-25 is a Wednesday.
        let next = full.next_after(local(2026, 11, 25, 10, 0, 0));
        assert_eq!(next, Some(local(2026, 11, 29, 2, 0, 0)));
        // Strictly after: at the fire time itself, the next one is a week later.
        let after = full.next_after(local(2026, 11, 29, 2, 0, 0));
        assert_eq!(after, Some(local(2026, 12, 6, 2, 0, 0)));
        // Numeric weekdays are POSIX: 0 is Sunday.
        let numeric = CronSchedule::parse("0 0 2 * * 0").expect("parses");
        assert_eq!(numeric.next_after(local(2026, 11, 25, 10, 0, 0)), next);
    }

    #[test]
    fn hourly_and_every_second_and_five_fields() {
        let hourly = CronSchedule::parse("0 0 * * * *").expect("parses");
        assert_eq!(
            hourly.next_after(local(2026, 11, 25, 10, 59, 59)),
            Some(local(2026, 11, 25, 11, 0, 0))
        );
        let every = CronSchedule::parse("* * * * * *").expect("parses");
        assert_eq!(
            every.next_after(local(2026, 11, 25, 10, 0, 0)),
            Some(local(2026, 11, 25, 10, 0, 1))
        );
        let five = CronSchedule::parse("30 3 * * *").expect("parses");
        assert_eq!(
            five.next_after(local(2026, 11, 25, 10, 0, 0)),
            Some(local(2026, 11, 26, 3, 30, 0))
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression() {
        for bad in ["", "0 0 2 * * Funday", "61 * * * * *", "a b c"] {
            let err = CronSchedule::parse(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("0 0 2 * * Sun"), "{err}");
        }
    }

    fn planner() -> (Planner, DateTime<Utc>) {
        let start = local(2026, 11, 28, 23, 30, 0); // a Saturday
        let planner = Planner::new(
            Some(CronSchedule::parse("0 0 2 * * Sun").expect("parses")),
            Some(CronSchedule::parse("0 0 * * * *").expect("parses")),
            start,
        );
        (planner, start)
    }

    #[test]
    fn nothing_is_due_before_the_first_fire() {
        let (mut planner, start) = planner();
        assert_eq!(planner.take_due(start), None);
        assert_eq!(planner.next_fire(start), Some(local(2026, 11, 29, 0, 0, 0)));
        assert_eq!(
            planner.next(),
            (
                Some(local(2026, 11, 29, 2, 0, 0)),
                Some(local(2026, 11, 29, 0, 0, 0))
            )
        );
    }

    #[test]
    fn full_and_incremental_due_together_make_one_full() {
        let (mut planner, _) = planner();
        let two = local(2026, 11, 29, 2, 0, 0);
        // Midnight and 01:00 incrementals were missed (the loop was busy): one run only.
        assert_eq!(planner.take_due(two), Some(RunKind::Full));
        assert_eq!(planner.take_due(two), None);
        assert_eq!(
            planner.next(),
            (
                Some(local(2026, 12, 6, 2, 0, 0)),
                Some(local(2026, 11, 29, 3, 0, 0))
            )
        );
    }

    #[test]
    fn incremental_due_during_a_run_is_skipped() {
        let (mut planner, _) = planner();
        assert_eq!(
            planner.take_due(local(2026, 11, 29, 0, 0, 0)),
            Some(RunKind::Incremental)
        );
        // The run took 70 minutes: the 01:00 incremental fell due during it.
        let missed = planner.after_run(local(2026, 11, 29, 1, 10, 0));
        assert_eq!(
            missed,
            Missed {
                full_pending: false,
                incremental_skipped: true
            }
        );
        assert_eq!(planner.take_due(local(2026, 11, 29, 1, 10, 0)), None);
        assert_eq!(planner.next().1, Some(local(2026, 11, 29, 2, 0, 0)));
    }

    #[test]
    fn full_due_during_a_run_runs_right_after() {
        let (mut planner, _) = planner();
        assert_eq!(
            planner.take_due(local(2026, 11, 29, 1, 0, 0)),
            Some(RunKind::Incremental)
        );
        // The 01:00 incremental ran until 02:30: the 02:00 full is pending, the 02:00
        // incremental skipped.
        let end = local(2026, 11, 29, 2, 30, 0);
        let missed = planner.after_run(end);
        assert_eq!(
            missed,
            Missed {
                full_pending: true,
                incremental_skipped: true
            }
        );
        assert_eq!(planner.next_fire(end), Some(end));
        assert_eq!(planner.take_due(end), Some(RunKind::Full));
        assert_eq!(planner.take_due(end), None);
        assert_eq!(planner.next().0, Some(local(2026, 12, 6, 2, 0, 0)));
    }

    #[test]
    fn a_missing_schedule_never_fires() {
        let start = local(2026, 11, 28, 23, 30, 0);
        let mut planner = Planner::new(
            None,
            Some(CronSchedule::parse("0 0 * * * *").expect("parses")),
            start,
        );
        assert_eq!(planner.next().0, None);
        assert_eq!(
            planner.take_due(local(2026, 11, 29, 0, 0, 0)),
            Some(RunKind::Incremental)
        );
        assert_eq!(
            planner.after_run(local(2026, 11, 29, 0, 0, 5)),
            Missed::default()
        );
    }
}
