//! `taosbackup backup` (also the command meant when none is given), and the wiring of one
//! backup run that the daemon shares: repository session, change tracking, engine, summary.

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
use crate::output::{backup_json, kind, print_json, rfc3339};
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
    source: &TaosSource,
    connect: &ConnectOptions,
    mut req: BackupRequest,
    tracking: Option<&mut ChangeTracking>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<BackupReport> {
    req.bucket_width = repo.config().bucket_width;
    // Scoped to the database: a second backup of it (another process, another daemon)
    // is refused while this one runs; it would share the tracker state and feed positions.
    let session = repo
        .session_scoped("backup", Some(&format!("database {}", req.database)))
        .await
        .context("cannot lock the repository")?;
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
        let report =
            taosbackup_engine::backup(source, &session, tracking, &req, progress, cancel).await?;
        anyhow::Ok(report)
    }
    .await;
    let written = session.bytes_stored();
    let released = session.finish().await;
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
        Ok(mut report) => {
            // Packs are uploaded by the commit, after the engine took its counters: the
            // session's figure is what this run really wrote.
            let stats = &mut report.snapshot.stats;
            stats.bytes_stored = stats.bytes_stored.max(written);
            released
                .context("the backup was committed, but releasing the repository lock failed")?;
            Ok(report)
        }
    }
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
    out.push_str(&format!(
        "  blocks: {} processed, {} failed, {} tombstones; {} tables\n",
        count(s.blocks),
        count(s.failed_blocks),
        count(s.tombstones),
        count(s.tables)
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
    let mut ctx = ctx.clone();
    if args.upload_concurrency.is_some() {
        ctx.config.backup.upload_concurrency = args.upload_concurrency;
    }
    let ctx = &ctx;
    let url = ctx.repo_url(&args.repo.repo)?;
    let database = ctx.database(&args.database)?;
    let engine = ctx.engine(&args.engine)?;
    let parallel = ctx.backup_parallel(args.parallel)?;
    let connect = ctx.source_options(&args.source, parallel)?;
    let source = ctx.connect(connect.clone())?;
    let choice = ctx.init_choice(args.no_encryption, None, None)?;
    let repo = ctx.open_or_init(&url, choice).await?;
    let cancel = crate::signals::cancel_on_signals("backup")?;
    let progress = if args.json {
        CliProgress::hidden()
    } else {
        CliProgress::auto()
    };
    let req = request(ctx, database, engine, args.full, parallel, &source);
    tracing::info!(
        database = %req.database,
        engine = %engine,
        full = args.full,
        repository = %url,
        "backup started"
    );
    let report = run_backup(ctx, &repo, &source, &connect, req, None, &progress, &cancel).await?;
    drop(progress);
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
            o.insert(
                "storage_retries".into(),
                json!(repo.backend().stats().retries),
            );
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
