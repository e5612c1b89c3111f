//! `taosbackup daemon`: the daemon's [`JobRunner`] implemented with the real engine, source
//! and repository, and the command that starts the daemon.
//!
//! The repository is opened (or created) once; each database keeps its change tracking open
//! between runs (the feed is read into the persisted tracker every
//! `daemon.feed_refresh_interval`). A tracking that failed is dropped and reopened from its
//! persisted state on the next call, so a broken connection never poisons later runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use taosbackup_core::Progress;
use taosbackup_engine::{CancellationToken, ChangeTracking, EngineKind};
use taosbackup_sink::{Forget, Repo, RetentionPolicy};
use taosbackup_source::{ConnectOptions, TaosSource};
use tokio::sync::Mutex;

use crate::commands::backup::{open_tracking, request, run_backup};
use crate::commands::prune;
use crate::context::Context;
use crate::daemon::{self, DaemonOptions, FeedHealth, JobRunner, RunSummary, Shutdown};
use crate::error::{Exit, usage};

type Slot = Arc<Mutex<Option<ChangeTracking>>>;

/// The engine-backed [`JobRunner`].
pub struct EngineRunner {
    ctx: Context,
    repo: Repo,
    source: Arc<TaosSource>,
    connect: ConnectOptions,
    engine: EngineKind,
    parallel: usize,
    retention: Option<RetentionPolicy>,
    tracking: StdMutex<HashMap<String, Slot>>,
}

impl EngineRunner {
    /// Opens (or creates) the repository and prepares the source from `ctx`'s config.
    pub async fn new(ctx: Context) -> anyhow::Result<EngineRunner> {
        let url = ctx.repo_url(&None)?;
        let engine = ctx.engine(None)?;
        let parallel = ctx.backup_parallel(None)?;
        let connect = ctx.source_options(&None, parallel)?;
        let source = Arc::new(ctx.connect(connect.clone())?);
        let retention = ctx.retention(&Default::default())?;
        let choice = ctx.init_choice(false, None, None)?;
        let repo = ctx.open_or_init(&url, choice).await?;
        Ok(EngineRunner {
            ctx,
            repo,
            source,
            connect,
            engine,
            parallel,
            retention,
            tracking: StdMutex::new(HashMap::new()),
        })
    }

    fn slot(&self, database: &str) -> Slot {
        let mut map = self.tracking.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(database.to_string()).or_default().clone()
    }

    /// Opens the tracking of `database` into `slot` when it is not open.
    async fn ensure_tracking<'a>(
        &self,
        slot: &'a mut Option<ChangeTracking>,
        database: &str,
    ) -> anyhow::Result<&'a mut ChangeTracking> {
        if slot.is_none() {
            let t = open_tracking(&self.ctx, &self.repo, &self.connect, database).await?;
            *slot = Some(t);
        }
        slot.as_mut()
            .ok_or_else(|| anyhow::anyhow!("change tracking of {database} is not open"))
    }
}

#[async_trait]
impl JobRunner for EngineRunner {
    async fn run_backup(
        &self,
        database: &str,
        full: bool,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunSummary> {
        let slot = self.slot(database);
        let mut guard = slot.lock().await;
        let req = request(
            &self.ctx,
            database.to_string(),
            self.engine,
            full,
            self.parallel,
            &self.source,
        );
        let result = async {
            let tracking = if self.engine == EngineKind::Bitmap {
                Some(self.ensure_tracking(&mut guard, database).await?)
            } else {
                None
            };
            run_backup(
                &self.ctx,
                &self.repo,
                &self.source,
                &self.connect,
                req,
                tracking,
                progress,
                &cancel,
            )
            .await
        }
        .await;
        match result {
            Ok(report) => {
                let m = report.snapshot;
                Ok(RunSummary {
                    backup_id: m.id.to_hex(),
                    kind: m.kind,
                    full_reason: report.full_reason,
                    stats: m.stats,
                })
            }
            Err(e) => {
                // Reopen from the persisted state next time.
                *guard = None;
                Err(e)
            }
        }
    }

    async fn refresh_feed(&self, database: &str) -> anyhow::Result<Option<FeedHealth>> {
        if self.engine != EngineKind::Bitmap {
            return Ok(None);
        }
        let slot = self.slot(database);
        let mut guard = slot.lock().await;
        let result = async {
            let t = self.ensure_tracking(&mut guard, database).await?;
            t.catch_up().await?;
            t.persist().await?;
            let s = t.stats();
            anyhow::Ok(FeedHealth {
                dirty_blocks: s.dirty_blocks,
                deleted_blocks: s.deleted_blocks,
                events_processed: s.events_processed,
                lag_events: None,
                inconsistency: s.inconsistency,
            })
        }
        .await;
        if result.is_err() {
            *guard = None;
        }
        result.map(Some)
    }

    async fn apply_retention(&self, _database: &str) -> anyhow::Result<()> {
        let Some(policy) = &self.retention else {
            return Ok(());
        };
        let report = prune::apply(&self.repo, Some(&Forget::Policy(policy.clone())), false).await?;
        tracing::info!(
            forgotten = report["forgotten"].as_array().map_or(0, |f| f.len()),
            bytes_freed = report["bytes_freed"].as_i64().unwrap_or(0),
            "retention applied"
        );
        Ok(())
    }

    async fn check_repository(&self) -> anyhow::Result<()> {
        self.repo.list_backups().await?;
        Ok(())
    }

    fn storage_retries(&self) -> u64 {
        self.repo.backend().stats().retries
    }
}

/// Runs `taosbackup daemon --config FILE` until SIGTERM/SIGINT.
pub async fn run(ctx: &Context) -> anyhow::Result<Exit> {
    if ctx.global.config.is_none() {
        return Err(usage(
            "the daemon needs a config file",
            "run `taosbackup daemon --config /etc/taosbackup/taosbackup.toml` (see \
             examples/taosbackup.toml)",
        ));
    }
    let options = DaemonOptions {
        daemon: ctx.config.daemon.clone().unwrap_or_default(),
        schedule: ctx.config.schedule.clone().unwrap_or_default(),
        databases: ctx.config.databases(),
    };
    // A config the scheduler cannot run is refused (exit code 2) before anything connects.
    daemon::validate(&options)?;
    let shutdown = Shutdown::on_signals()?;
    let runner = Arc::new(EngineRunner::new(ctx.clone()).await?);
    let result = daemon::run(options, runner.clone(), shutdown).await;
    crate::commands::backup::close_source(&runner.source).await;
    result?;
    Ok(Exit::Ok)
}
