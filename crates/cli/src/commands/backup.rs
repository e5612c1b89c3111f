//! `taosbackup backup` (also the command meant when none is given), and the wiring of one
//! backup run that the daemon shares: repository session, change tracking, engine, summary.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use taosbackup_core::{
    ChangeBatch, ChangeFeed, FeedStart, Positions, Progress, SourceError, SourceInfo,
};
use taosbackup_engine::{
    BackupReport, BackupRequest, CancellationToken, ChangeTracking, EngineError, EngineKind,
};
use taosbackup_sink::Repo;
use taosbackup_source::{
    CatalogResolver, ConnectOptions, TaosSource, TmqFeed, TmqFeedOptions, WalFeed, WalFeedOptions,
};

use crate::args::BackupArgs;
use crate::context::Context;
use crate::error::{Advised, Exit};
use crate::estimate::Estimating;
use crate::output::{backup_json, kind, plural, print_json, rfc3339};
use crate::progress::{CliProgress, bytes, count};

/// Opens the change tracking of `database` for repository `repo`: the persisted tracker
/// state and the configured feed: `tmq` (topic and consumer group named after the repository
/// id and the database) or the experimental `wal` reader of `bitmap_engine.wal_path`. The
/// tracker's precision is its state file's (each backup checks it against the catalog).
pub async fn open_tracking(
    ctx: &Context,
    repo: &Repo,
    connect: &ConnectOptions,
    database: &str,
) -> anyhow::Result<ChangeTracking> {
    let repo_id = repo.config().id.clone();
    let config = ctx.tracking_config(&repo_id, database)?;
    if let Some(dir) = config.persistence_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Advised {
            message: format!(
                "cannot create the change tracker's state directory {}: {e}",
                dir.display()
            ),
            hint: "set bitmap_engine.persistence_path to a writable directory".into(),
        })?;
    }
    let feed: Box<dyn ChangeFeed> = match ctx.config.bitmap_engine.change_feed.as_deref() {
        None | Some("tmq") => {
            let options = TmqFeedOptions::new(&repo_id, database);
            tracing::debug!(
                topic = %options.topic,
                group = %options.group,
                state = %config.persistence_path.display(),
                "opening change tracking"
            );
            let feed = TmqFeed::new(connect.clone(), options).with_context(|| {
                format!("cannot set up the tmq change feed of database {database}")
            })?;
            Box::new(RetentionWarning {
                feed,
                database: database.to_string(),
            })
        }
        Some("wal") => {
            let wal_path = ctx.config.bitmap_engine.wal_path.clone().ok_or_else(|| Advised {
                message: "change_feed = \"wal\" needs the TDengine data directory".into(),
                hint: "set bitmap_engine.wal_path to TDengine's dataDir on this host (e.g. /var/lib/taos)"
                    .into(),
            })?;
            let state_file = config.persistence_path.with_extension("walfeed");
            tracing::warn!(
                wal_path = %wal_path.display(),
                "the wal change feed is experimental (format taken from TDengine 3.3.7, commit a4874a8c; not yet run against a real server)"
            );
            let resolver = CatalogResolver::connect(connect, database).with_context(|| {
                format!("cannot connect the wal feed's catalog lookups for database {database}")
            })?;
            Box::new(WalFeed::new(
                WalFeedOptions::new(wal_path, database, state_file),
                Box::new(resolver),
            ))
        }
        Some(other) => {
            return Err(Advised {
                message: format!("unknown change feed {other:?}"),
                hint: "set bitmap_engine.change_feed to \"tmq\" or \"wal\"".into(),
            }
            .into());
        }
    };
    let tracking = ChangeTracking::open(feed, config, repo.config().bucket_width)
        .await
        .with_context(|| format!("cannot start change tracking of database {database}"))?;
    Ok(tracking)
}

/// WAL kept for less than this makes gaps (and full backups) likely between backups.
const SHORT_WAL_RETENTION_SECS: i64 = 3600;

/// The tmq feed, warning after `start` when the database keeps its WAL only briefly.
struct RetentionWarning {
    feed: TmqFeed,
    database: String,
}

#[async_trait::async_trait]
impl ChangeFeed for RetentionWarning {
    fn name(&self) -> &'static str {
        self.feed.name()
    }

    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError> {
        let start = self.feed.start(committed).await?;
        if let Some(secs) = self.feed.wal_retention_period() {
            if (0..SHORT_WAL_RETENTION_SECS).contains(&secs) {
                tracing::warn!(
                    database = %self.database,
                    wal_retention_period = secs,
                    "database {} keeps its WAL for only {secs} s: when backups (or the daemon's \
                     feed reads) are further apart, changes are purged before they are read and \
                     the next backup is a full one; run ALTER DATABASE {} WAL_RETENTION_PERIOD 86400",
                    self.database,
                    self.database
                );
            }
        }
        Ok(start)
    }

    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
        self.feed.next_batch().await
    }

    fn positions(&self) -> Positions {
        self.feed.positions()
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError> {
        self.feed.commit(positions).await
    }
}

/// One backup run through a repository session (released whatever happens). Opens change
/// tracking for the bitmap engine unless `tracking` is given (the daemon keeps its own).
#[allow(clippy::too_many_arguments)]
pub async fn run_backup(
    ctx: &Context,
    repo: &Repo,
    source: &Arc<TaosSource>,
    connect: &ConnectOptions,
    mut req: BackupRequest,
    tracking: Option<&mut ChangeTracking>,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> anyhow::Result<BackupReport> {
    req.bucket_width = repo.config().bucket_width;
    // A full export begins without a total: estimate one from the catalog.
    let progress: Arc<dyn Progress> = Arc::new(Estimating::new(
        progress,
        source.clone(),
        &req.database,
        req.bucket_width,
    ));
    // Scoped to the database: a second backup of it (another process, another daemon)
    // is refused while this one runs; it would share the tracker state and feed positions.
    // Shared with the backup's export tasks, which have all ended when it returns.
    let session = Arc::new(
        repo.session_scoped("backup", Some(&format!("database {}", req.database)))
            .await
            .context("cannot lock the repository")?,
    );
    let result = async {
        let mut own: Option<ChangeTracking> = None;
        let tracking = match (req.engine, tracking) {
            (_, Some(t)) => Some(t),
            (EngineKind::Bitmap, None) => {
                let opened = open_tracking(ctx, repo, connect, &req.database).await?;
                Some(own.insert(opened))
            }
            (_, None) => None,
        };
        let report = taosbackup_engine::backup(
            source.clone(),
            session.clone(),
            tracking,
            &req,
            progress,
            cancel,
        )
        .await?;
        anyhow::Ok(report)
    }
    .await;
    let written = session.bytes_stored();
    let released = match Arc::try_unwrap(session) {
        Ok(session) => session.finish().await,
        // Cannot happen (the engine waits for its tasks); the lock then goes stale by itself.
        Err(_) => Err(taosbackup_sink::Error::SessionFailed {
            reason: "a task of the backup still holds the repository session".into(),
        }),
    };
    match result {
        Err(e) if is_cancelled(&e) => {
            let lock = match &released {
                Ok(()) => "the repository lock was released",
                Err(_) => "releasing the repository lock failed too (it goes stale by itself)",
            };
            Err(Advised {
                message: format!(
                    "backup of {} cancelled by a signal: nothing was committed; {lock}",
                    req.database
                ),
                hint: "run the backup again; the repository is unchanged and verifies".into(),
            }
            .into())
        }
        Err(e) => {
            if let Err(r) = released {
                tracing::warn!(error = %r, "releasing the repository lock after the failure failed");
            }
            Err(e)
        }
        Ok(report) => {
            // The snapshot's bytes_stored (the sealed bytes of the new blobs and tree objects,
            // counted before the commit) is what the summary, `list` and `show` all print; the
            // packs' headers and the index add a little on top.
            tracing::debug!(
                packs_bytes = written,
                bytes_stored = report.snapshot.stats.bytes_stored,
                "bytes written by the session"
            );
            released
                .context("the backup was committed, but releasing the repository lock failed")?;
            Ok(report)
        }
    }
}

/// Drops the change-feed topic a failed first backup created. Its consumer has just closed;
/// the server may take a moment to see that ("Topic subscribed cannot be dropped").
async fn drop_new_topic(source: &TaosSource, topic: &str) {
    let mut last = None;
    for _ in 0..10 {
        match source.drop_feed_topic(topic).await {
            Ok(()) => {
                tracing::info!(
                    topic,
                    "dropped the change-feed topic this failed first backup created"
                );
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(e) = last {
        tracing::warn!(
            topic,
            error = %e,
            "the failed first backup created change-feed topic {topic} and could not drop it; \
             `taosbackup feed drop --source DSN {topic}` does"
        );
    }
}

/// Runs `open`, which opens the repository (Argon2id keeps one core busy for ~0.2 s), while
/// `source`'s connections open in the background when `warm_up` holds, so that the
/// command's first statements find them open. If `open` fails, the source is closed before
/// the error returns: the warm-up's statements may be in flight, and must end before the
/// runtime goes.
pub async fn open_while_warming<T>(
    source: &TaosSource,
    warm_up: bool,
    open: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if warm_up {
        source.warm_up();
    }
    match open.await {
        Ok(opened) => Ok(opened),
        Err(e) => {
            close_source(source).await;
            Err(e)
        }
    }
}

/// How long a command waits for the source's background work at its end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Closes `source` before the command returns (and the runtime drops its tasks): no fetch is
/// cut off mid-flight (see `TaosSource::close`).
pub async fn close_source(source: &TaosSource) {
    if !source.close(CLOSE_WAIT).await {
        tracing::debug!("the source's background work did not end within {CLOSE_WAIT:?}");
    }
}

/// Connects to the source and reads `database`'s header: reachable, credentials accepted,
/// database present. Run before anything is created.
pub async fn check_source(source: &TaosSource, database: &str) -> anyhow::Result<()> {
    source
        .database_precision(database)
        .await
        .with_context(|| format!("cannot read the catalog of database {database}"))?;
    Ok(())
}

fn cancelled_before_start(database: &str) -> anyhow::Error {
    Advised {
        message: format!(
            "backup of {database} cancelled by a signal before it started: nothing was committed"
        ),
        hint: "run the backup again; the repository is unchanged".into(),
    }
    .into()
}

fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<EngineError>(),
            Some(EngineError::Cancelled)
        )
    })
}

/// The request for `database` with the context's engine settings.
pub fn request(
    ctx: &Context,
    database: String,
    engine: EngineKind,
    force_full: bool,
    parallel: usize,
    source: &TaosSource,
) -> BackupRequest {
    BackupRequest {
        database,
        engine,
        force_full,
        on_gap: ctx.on_gap(),
        parallel,
        bucket_width: taosbackup_core::BucketWidth::DAY,
        dictionaries: ctx.config.backup.dictionaries.unwrap_or(true),
        tables_per_query: ctx
            .config
            .backup
            .tables_per_query
            .unwrap_or(taosbackup_engine::DEFAULT_TABLES_PER_QUERY),
        source_info: SourceInfo {
            endpoint: Some(source.endpoint().to_string()),
            ..SourceInfo::default()
        },
    }
}

/// The summary printed after a backup.
pub fn summary(report: &BackupReport) -> String {
    let m = &report.snapshot;
    let s = &m.stats;
    let mut out = format!(
        "backup {} of {}: {} ({} engine){}\n",
        m.id,
        m.database,
        kind(m.kind),
        m.engine,
        m.parent
            .map(|p| format!(", parent {}", &p.to_hex()[..16]))
            .unwrap_or_default()
    );
    if let Some(r) = &report.full_reason {
        out.push_str(&format!("  full because: {r}\n"));
    }
    let dropped = report.dropped_tables;
    let tombstones = s.tombstones.saturating_sub(dropped);
    out.push_str(&format!(
        "  blocks: {} processed, {} failed, {}{}; {}\n",
        count(s.blocks),
        count(s.failed_blocks),
        plural(tombstones, "tombstone"),
        if dropped > 0 {
            format!(", {} dropped", plural(dropped, "table"))
        } else {
            String::new()
        },
        plural(s.tables, "table")
    ));
    out.push_str(&format!(
        "  rows: {}; bytes read {}, stored {}; duration {}\n",
        count(s.rows),
        bytes(s.bytes_read),
        bytes(s.bytes_stored),
        format_secs(report.duration)
    ));
    // Objects the backup does not contain (virtual tables), never left out silently.
    for o in &report.skipped {
        out.push_str(&format!(
            "  not backed up: {} ({}): {}\n",
            o.name, o.kind, o.reason
        ));
    }
    out
}

/// `1.23 s`.
pub fn format_secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs `backup`.
pub async fn run(ctx: &Context, args: &BackupArgs) -> anyhow::Result<Exit> {
    // First: a signal during the setup below must cancel, not kill the process halfway.
    let cancel = crate::signals::cancel_on_signals("backup")?;
    let mut ctx = ctx.clone();
    if args.upload_concurrency.is_some() {
        ctx.config.backup.upload_concurrency = args.upload_concurrency;
    }
    let ctx = &ctx;
    let select = &args.select;
    let url = ctx.repo_url(&select.repo.repo)?;
    let database = ctx.database(&select.database)?;
    let engine = ctx.engine(select.engine)?;
    let parallel = ctx.backup_parallel(args.parallel)?;
    let connect = ctx.source_options(&select.source, parallel)?;
    let source = Arc::new(ctx.connect(connect.clone())?);
    let mut choice = ctx.init_choice(args.no_encryption, None, None)?;
    choice.force = args.force;
    // Nothing is created before the source answered: a wrong DSN, password or database
    // must not leave an empty repository (or a change-feed topic) behind.
    check_source(&source, &database).await?;
    if cancel.is_cancelled() {
        return Err(cancelled_before_start(&database));
    }
    // No index at open: the backup's session loads it under its lock. The source's
    // connections open meanwhile, not during the catalog read that starts the backup.
    let repo =
        open_while_warming(&source, true, ctx.open_or_init_with(&url, choice, false)).await?;
    let progress = Arc::new(if args.json {
        CliProgress::hidden()
    } else {
        CliProgress::auto()
    });
    // The tmq feed's topic, when this backup is about to create it: a first backup that
    // fails drops it again, so it does not pin the WAL and block DROP DATABASE.
    let new_topic = match (engine, ctx.config.bitmap_engine.change_feed.as_deref()) {
        (EngineKind::Bitmap, None | Some("tmq")) => {
            let (topic, _) = taosbackup_source::default_names(&repo.config().id, &database);
            match source.topic_exists(&topic).await {
                Ok(false) => Some(topic),
                _ => None,
            }
        }
        _ => None,
    };
    let req = request(ctx, database, engine, select.full, parallel, &source);
    tracing::info!(
        database = %req.database,
        engine = %engine,
        full = select.full,
        repository = %url,
        "backup started"
    );
    let result = run_backup(
        ctx,
        &repo,
        &source,
        &connect,
        req,
        None,
        progress.clone(),
        &cancel,
    )
    .await;
    drop(progress);
    if let (Err(_), Some(topic)) = (&result, &new_topic) {
        drop_new_topic(&source, topic).await;
    }
    close_source(&source).await;
    let report = result?;
    let m = &report.snapshot;
    tracing::info!(
        id = %m.id,
        kind = kind(m.kind),
        blocks = m.stats.blocks,
        failed_blocks = m.stats.failed_blocks,
        rows = m.stats.rows,
        bytes_read = m.stats.bytes_read,
        bytes_stored = m.stats.bytes_stored,
        seconds = report.duration.as_secs_f64(),
        "backup summary"
    );
    if args.json {
        let mut v = backup_json(m);
        if let serde_json::Value::Object(o) = &mut v {
            o.insert("full_reason".into(), json!(report.full_reason));
            o.insert("duration_secs".into(), json!(report.duration.as_secs_f64()));
            o.insert(
                "tree_objects_written".into(),
                json!(report.tree_objects_written),
            );
            o.insert(
                "tree_bytes_written".into(),
                json!(report.tree_bytes_written),
            );
            o.insert(
                "parent_objects_read".into(),
                json!(report.parent_objects_read),
            );
            o.insert("skipped".into(), json!(report.skipped));
            o.insert("finished_at".into(), json!(rfc3339(&m.finished_at)));
            let storage = repo.backend().stats();
            o.insert("storage_retries".into(), json!(storage.retries));
            // Requests to the repository (GETs, PUTs, lists on object storage).
            o.insert("storage_operations".into(), json!(storage.operations));
        }
        print_json(&v)?;
    } else {
        print!("{}", summary(&report));
        let retries = repo.backend().stats().retries;
        if retries > 0 {
            println!("  storage: {} retried", count(retries));
        }
    }
    if m.stats.failed_blocks > 0 {
        return Err(Advised {
            message: format!(
                "backup {} is incomplete: {} blocks failed",
                m.id, m.stats.failed_blocks
            ),
            hint: "see the log for each failed block and run the backup again".into(),
        }
        .into());
    }
    Ok(Exit::Ok)
}
