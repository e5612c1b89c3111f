//! The scheduler's tokio side: one loop per database that asks the engine's
//! [`Scheduler`] what to do (a backup, a feed refresh, retention, or nothing until some time),
//! does it, and records it in the shared state; plus one loop that checks the repository and
//! the shutdown timer. The decisions themselves (what runs when, retries, what was missed)
//! are the engine's (`taosbackup_engine::Scheduler`), tested without time passing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use taosbackup_engine::{AfterBackup, Missed, SchedulePolicy, Scheduler, Step};
use tokio::sync::RwLock;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::state::{DaemonState, Outcome, RunKind, RunProgress};
use super::{DaemonOptions, JobRunner, Shutdown, redact};

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
/// is noticed; returns early on a graceful stop.
async fn sleep_until(deadline: DateTime<Utc>, stop: &CancellationToken) {
    let wait = (deadline - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(60));
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// Schedules one database until a graceful stop.
async fn database_loop(context: Arc<Context>, database: String) {
    let stop = context.shutdown.graceful.clone();
    let schedule = &context.options.schedule;
    let mut scheduler = Scheduler::new(
        SchedulePolicy {
            full: schedule.full.clone(),
            incremental: schedule.incremental.clone(),
            retry_count: schedule.retry_count,
            retry_interval: schedule.retry_interval,
            feed_refresh_interval: context.options.daemon.feed_refresh_interval,
        },
        Utc::now(),
    );
    let (next_full, next_incremental) = scheduler.next_runs();
    tracing::info!(
        database,
        full = schedule.full.as_ref().map(|s| s.to_string()),
        next_full = next_full.map(|t| t.to_rfc3339()),
        incremental = schedule.incremental.as_ref().map(|s| s.to_string()),
        next_incremental = next_incremental.map(|t| t.to_rfc3339()),
        "scheduling backups"
    );
    while !stop.is_cancelled() {
        let (next_full, next_incremental) = scheduler.next_runs();
        context
            .state
            .set_next_runs(&database, next_full, next_incremental);
        match scheduler.step(Utc::now()) {
            Step::Backup { kind, attempt } => {
                let outcome = run_once(&context, &database, kind, attempt).await;
                context
                    .state
                    .record_storage_retries(context.runner.storage_retries());
                match scheduler.backup_ended(outcome, Utc::now()) {
                    AfterBackup::ApplyRetention => {
                        apply_retention(&context, &database).await;
                        let missed = scheduler.retention_ended(Utc::now());
                        report_missed(&context, &database, missed);
                    }
                    AfterBackup::Retry { attempt, .. } => {
                        tracing::warn!(
                            database,
                            kind = kind.as_str(),
                            attempt,
                            retry_in = %humantime::format_duration(schedule.retry_interval),
                            "backup failed; retrying"
                        );
                    }
                    AfterBackup::GaveUp { attempts, missed } => {
                        tracing::error!(
                            database,
                            kind = kind.as_str(),
                            attempts,
                            "backup failed on every attempt; waiting for the next scheduled run"
                        );
                        report_missed(&context, &database, missed);
                    }
                    AfterBackup::Ended { missed } => report_missed(&context, &database, missed),
                }
            }
            Step::RefreshFeed => {
                refresh_feed(&context, &database).await;
                scheduler.feed_refreshed(Utc::now());
            }
            Step::Wait(deadline) => sleep_until(deadline, &stop).await,
        }
    }
    // A retry still waiting is abandoned; what fell due during its run is reported as usual.
    let missed = scheduler.stop(Utc::now());
    report_missed(&context, &database, missed);
    context.state.set_next_runs(&database, None, None);
}

/// Logs (and counts) the fires that fell due while a run of `database` was in progress.
fn report_missed(context: &Context, database: &str, missed: Missed) {
    if missed.full_pending {
        tracing::info!(
            database,
            "a full backup fell due during the previous run; it runs now"
        );
    }
    if missed.incremental_skipped {
        tracing::warn!(
            database,
            "skipped an incremental backup that fell due while another run of this database \
             was in progress; the next incremental covers its changes"
        );
        context.state.record_skipped(database, RunKind::Incremental);
    }
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
