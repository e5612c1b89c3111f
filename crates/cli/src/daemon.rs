//! `taosbackup daemon`: scheduled full and incremental backups of each configured database,
//! the change feed kept current between runs, retention after each backup, and an HTTP status
//! server (`GET /health`, `GET /backup/status`, `GET /metrics`).
//!
//! The daemon knows nothing of TDengine or of the repository: it drives a [`JobRunner`], which
//! the CLI implements with the engine and tests implement with a fake. Its parts:
//!
//! - [`schedule`]: the tokio side of scheduling: one loop per database that asks the engine's
//!   [`Scheduler`](taosbackup_engine::Scheduler) what to do and does it (the decisions — cron
//!   fires ([`CronSchedule`]), the overlap policy, retries, when retention runs — are the
//!   engine's, pure and tested without time passing);
//! - [`state`]: what the daemon knows (current run and its progress, last results, next runs,
//!   component health, counters), shared by the scheduler and the HTTP server;
//! - [`http`]: the axum server and the Prometheus text exposition.
//!
//! Policies (documented for operators in `docs/operations.md`, section "Daemon"). Those of
//! one database — runs never overlap, a skipped incremental, a pending full, retries, retention
//! after each committed backup — are stated and tested in the engine's `schedule` module. The
//! daemon adds:
//!
//! - Different databases run concurrently, but retention (which takes the repository's
//!   exclusive lock) waits until no backup runs, and backups wait while retention runs.
//! - A run that failed on every attempt is logged and recorded; the daemon never exits because
//!   a run failed.
//! - The first SIGTERM or SIGINT stops scheduling, lets the current runs finish for up to
//!   `daemon.shutdown_timeout`, then cancels them (a cancelled backup commits nothing); a
//!   second signal cancels them at once. The HTTP server answers until the runs have ended.

pub mod http;
pub mod schedule;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize};
use taosbackup_core::{BackupKind, BackupStats, Progress};
use tokio_util::sync::CancellationToken;

pub use taosbackup_engine::CronSchedule;

/// The work the daemon schedules, implemented by the CLI with the engine (and by fakes in
/// tests). Every method may be called concurrently for different databases; the daemon never
/// calls [`run_backup`](JobRunner::run_backup) or [`refresh_feed`](JobRunner::refresh_feed)
/// concurrently for the same database.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs one backup of `database`: a full one when `full`, else an incremental (which the
    /// runner may turn into a full, saying why in [`RunSummary::full_reason`]). Reports progress
    /// into `progress`. When `cancel` fires, stops without committing anything and returns an
    /// error.
    async fn run_backup(
        &self,
        database: &str,
        full: bool,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunSummary>;

    /// Reads the change feed of `database` to its current end into the persisted tracker.
    /// Called every `daemon.feed_refresh_interval` between runs. `Ok(None)` means the database
    /// has no change feed (engines `full` and `time`).
    async fn refresh_feed(&self, database: &str) -> anyhow::Result<Option<FeedHealth>>;

    /// Applies the retention policy after a successful backup of `database`.
    async fn apply_retention(&self, database: &str) -> anyhow::Result<()>;

    /// Checks that the repository is reachable (and readable with the configured key).
    /// Called every `daemon.feed_refresh_interval`.
    async fn check_repository(&self) -> anyhow::Result<()>;

    /// Storage requests retried so far (for `taosbackup_storage_retries_total`).
    fn storage_retries(&self) -> u64 {
        0
    }
}

/// What a successful backup run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The committed backup's id.
    pub backup_id: String,
    /// What was actually done: an incremental may have become a full.
    pub kind: BackupKind,
    /// Why a requested incremental became a full, if it did.
    pub full_reason: Option<String>,
    /// The run's counters (from the snapshot).
    pub stats: BackupStats,
}

/// The state of a database's change tracking after a feed refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedHealth {
    /// Dirty or new blocks awaiting the next backup.
    pub dirty_blocks: u64,
    /// Blocks with deletes awaiting the next backup.
    pub deleted_blocks: u64,
    /// Events applied since the daemon started.
    pub events_processed: u64,
    /// Changes the feed still has to deliver (for TMQ: WAL versions), when the feed knows.
    pub lag_events: Option<u64>,
    /// Why the next backup must be a full one, if it must (a gap in the feed, a lost tracker).
    pub inconsistency: Option<String>,
}

/// `[daemon]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Address of the HTTP status server. Default `127.0.0.1:8080`: loopback, because the
    /// endpoints have no authentication (they expose no secrets, but do expose database names).
    pub listen: SocketAddr,
    /// How often the change feed is read into the tracker between runs, and the repository
    /// checked (`"30s"`, `"5m"`). Default 30 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub feed_refresh_interval: Duration,
    /// After SIGTERM/SIGINT, how long runs in progress may take to finish before they are
    /// cancelled. Default 60 s (below systemd's default stop timeout of 90 s).
    #[serde(deserialize_with = "deserialize_duration")]
    pub shutdown_timeout: Duration,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            feed_refresh_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
        }
    }
}

/// `[schedule]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// When full backups run: a cron expression with seconds, in local time
    /// (`"0 0 2 * * Sun"`: Sundays at 02:00:00). None: no scheduled fulls.
    pub full: Option<CronSchedule>,
    /// When incremental backups run (`"0 0 * * * *"`: hourly). None: no scheduled
    /// incrementals.
    pub incremental: Option<CronSchedule>,
    /// How often a failed run is retried before the daemon waits for the next scheduled run.
    /// Default 3.
    pub retry_count: u32,
    /// The wait between a failed run and its retry (`"60s"`). Default 60 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub retry_interval: Duration,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        ScheduleSection {
            full: None,
            incremental: None,
            retry_count: 3,
            retry_interval: Duration::from_secs(60),
        }
    }
}

/// Everything [`run`] needs besides the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// `[daemon]`.
    pub daemon: DaemonSection,
    /// `[schedule]`.
    pub schedule: ScheduleSection,
    /// The databases to back up (at least one): the config's `backup.databases`, else
    /// `backup.database`.
    pub databases: Vec<String>,
}

/// Parses a human-readable duration (`"30s"`, `"5m"`, `"1h 30m"`).
fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e}; write it like \"30s\", \"5m\" or \"1h 30m\""
        ))
    })
}

/// How the daemon is told to stop: a graceful stop (finish the current runs, up to
/// `daemon.shutdown_timeout`) and an immediate one (cancel them now).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    immediate: CancellationToken,
}

impl Shutdown {
    /// A shutdown triggered only through [`stop`](Shutdown::stop) and
    /// [`stop_now`](Shutdown::stop_now).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A shutdown triggered by signals: the first SIGTERM or SIGINT stops gracefully, the next
    /// one immediately. The handlers are installed before this returns; call it inside the
    /// tokio runtime that runs the daemon.
    pub fn on_signals() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = Shutdown::new();
        let mut term = signal(SignalKind::terminate())
            .context("cannot install the SIGTERM handler; the daemon could not stop cleanly")?;
        let mut int = signal(SignalKind::interrupt())
            .context("cannot install the SIGINT handler; the daemon could not stop cleanly")?;
        let handle = shutdown.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    else => return,
                };
                seen += 1;
                if seen == 1 {
                    tracing::info!(
                        signal = name,
                        "stopping: no new runs; current runs may finish"
                    );
                    handle.stop();
                } else {
                    tracing::warn!(signal = name, "stopping now: cancelling current runs");
                    handle.stop_now();
                    return;
                }
            }
        });
        Ok(shutdown)
    }

    /// Stops scheduling; runs in progress may finish within `daemon.shutdown_timeout`.
    pub fn stop(&self) {
        self.graceful.cancel();
    }

    /// Cancels runs in progress at once (and stops scheduling).
    pub fn stop_now(&self) {
        self.graceful.cancel();
        self.immediate.cancel();
    }
}

/// Runs the daemon until `shutdown` stops it: binds the HTTP server, then schedules every
/// database. Returns an error only when it cannot start (bad options, address in use); failed
/// runs are reported through the status endpoints and logs, never returned.
pub async fn run(
    options: DaemonOptions,
    runner: Arc<dyn JobRunner>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let daemon = Daemon::start(options, runner, shutdown).await?;
    tracing::info!(listen = %daemon.local_addr(), "daemon started");
    daemon.wait().await
}

/// How long the HTTP server may take to finish its requests once the runs have ended.
const SERVER_DRAIN: Duration = Duration::from_secs(5);

/// A started daemon: its HTTP server is listening and its schedulers run.
pub struct Daemon {
    local_addr: SocketAddr,
    state: Arc<state::DaemonState>,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    server_stop: CancellationToken,
}

impl Daemon {
    /// Validates `options`, binds `daemon.listen`, and starts the schedulers.
    pub async fn start(
        options: DaemonOptions,
        runner: Arc<dyn JobRunner>,
        shutdown: Shutdown,
    ) -> anyhow::Result<Daemon> {
        validate(&options)?;
        let state = Arc::new(state::DaemonState::new(&options));
        let listener = tokio::net::TcpListener::bind(options.daemon.listen)
            .await
            .map_err(|e| crate::error::Advised {
                message: format!(
                    "cannot listen on {} for the daemon's HTTP server: {e}",
                    options.daemon.listen
                ),
                hint: "free that address (another daemon running?) or set daemon.listen to \
                       another one"
                    .into(),
            })?;
        let local_addr = listener.local_addr().with_context(|| {
            format!("cannot read the bound address of {}", options.daemon.listen)
        })?;
        let server_stop = CancellationToken::new();
        let app = http::router(state.clone());
        let stop = server_stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        let tasks = schedule::spawn(options, runner, state.clone(), shutdown);
        Ok(Daemon {
            local_addr,
            state,
            tasks,
            server,
            server_stop,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the schedulers have stopped (after a shutdown), then stops the HTTP server.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut panicked = None;
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                panicked = Some(e);
            }
        }
        // Idle connections close at once; a client stuck mid-request gets a few seconds.
        self.server_stop.cancel();
        let served = tokio::time::timeout(SERVER_DRAIN, &mut self.server).await;
        if served.is_err() {
            tracing::warn!("HTTP clients still connected after the runs ended; closing them");
            self.server.abort();
        }
        if let Some(e) = panicked {
            return Err(anyhow::anyhow!(
                "a daemon scheduler task failed: {e}; this is a bug, please report it"
            ));
        }
        match served {
            Err(_) | Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                return Err(e).context("the daemon's HTTP server failed");
            }
            Ok(Err(e)) => {
                return Err(anyhow::anyhow!(
                    "the daemon's HTTP server task failed: {e}; this is a bug, please report it"
                ));
            }
        }
        tracing::info!(
            runs = self.state.finished_runs(),
            "daemon stopped after its runs ended"
        );
        Ok(())
    }
}

/// Refuses options the scheduler cannot work with: bad config, exit code 2.
pub(crate) fn validate(options: &DaemonOptions) -> anyhow::Result<()> {
    use crate::error::usage;
    if options.databases.is_empty() {
        return Err(usage(
            "the daemon has no database to back up",
            "set backup.databases (or backup.database) in the config file",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for database in &options.databases {
        if !seen.insert(database) {
            return Err(usage(
                format!("database {database:?} is listed twice in backup.databases"),
                "list each database once",
            ));
        }
    }
    if options.schedule.full.is_none() && options.schedule.incremental.is_none() {
        return Err(usage(
            "the daemon has nothing to schedule",
            "set schedule.full and/or schedule.incremental (cron expressions with seconds, \
             e.g. \"0 0 2 * * Sun\")",
        ));
    }
    if options.daemon.feed_refresh_interval.is_zero() {
        return Err(usage(
            "daemon.feed_refresh_interval is zero",
            "set a positive duration such as \"30s\"",
        ));
    }
    Ok(())
}

/// Hides the password of every `scheme://user:password@host` in `text`, so error texts from a
/// connector never leak a DSN's password through the status endpoints.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; credentials end at its
        // last '@'.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
