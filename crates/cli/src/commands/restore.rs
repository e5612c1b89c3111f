//! `taosbackup restore`.

use taosbackup_engine::{BackupPoint, EngineError, RestoreReport, RestoreRequest};

use crate::args::RestoreArgs;
use crate::commands::backup::{format_secs, open_while_warming};
use crate::context::Context;
use crate::error::{Advised, Exit, usage};
use crate::output::{plural, print_json};
use crate::progress::{CliProgress, count};
use crate::readonly::Reader;

/// Runs `restore`.
pub async fn run(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let parallel = ctx.restore_parallel(args.parallel)?;
    let point: BackupPoint = match &args.backup {
        Some(b) => b.parse().map_err(|e| {
            usage(
                format!("{e}"),
                "name the backup as `taosbackup list` shows it",
            )
        })?,
        None => BackupPoint::Latest,
    };
    let connect = ctx.target_options(&args.target, parallel)?;
    let target = ctx.connect(connect)?;
    let opened = async {
        let repo = ctx.open_repo(&url).await?;
        let reader = Reader::open(&repo, "restore", args.lock.no_lock, &url).await?;
        let cancel = crate::signals::cancel_on_signals("restore")?;
        anyhow::Ok((repo, reader, cancel))
    };
    // The target's connections open meanwhile, as a backup's source's do; a dry run writes
    // nothing and never connects.
    let (repo, reader, cancel) = open_while_warming(&target, !args.dry_run, opened).await?;
    let progress = if args.json {
        CliProgress::hidden()
    } else {
        CliProgress::auto()
    };
    let req = RestoreRequest {
        point,
        database: args.database.clone(),
        target_database: args.target_database.clone(),
        tables: args.tables.clone(),
        stables: args.stables.clone(),
        into_existing: args.into_existing,
        keep_override_days: args.keep_override,
        dry_run: args.dry_run,
        parallel,
    };
    tracing::info!(repository = %url, point = %req.point, dry_run = req.dry_run, "restoring");
    let result =
        taosbackup_engine::restore(&target, reader.repository(), &req, &progress, &cancel).await;
    crate::commands::backup::close_source(&target).await;
    let released = reader.finish().await;
    drop(progress);
    if let Err(EngineError::Cancelled) = &result {
        let name = req
            .target_database
            .clone()
            .unwrap_or_else(|| "the target database".into());
        return Err(Advised {
            message: format!(
                "restore cancelled by a signal: {name} may be partly written; the repository is \
                 unchanged"
            ),
            hint: "drop the partly restored database and restore again (or restore again with \
                   --into-existing)"
                .into(),
        }
        .into());
    }
    let report = result?;
    released?;
    tracing::info!(
        backup = %report.backup,
        target = %report.target_database,
        blocks = report.blocks,
        rows_written = report.rows_written,
        seconds = report.duration.as_secs_f64(),
        "restore finished"
    );
    // Database options the target's server version does not take as the backup had them.
    let changes = target.database_option_changes();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "database_option_changes".into(),
                serde_json::to_value(&changes)?,
            );
            let storage = repo.backend().stats();
            o.insert("storage_retries".into(), storage.retries.into());
            // Reads of the repository (GETs on object storage): what a restore costs there.
            o.insert("storage_operations".into(), storage.operations.into());
        }
        print_json(&v)?;
    } else {
        print!("{}", describe(&report));
        print!("{}", describe_option_changes(&changes));
    }
    if !report.count_mismatches.is_empty() {
        return Err(Advised {
            message: format!(
                "restore into {} is incomplete: {} tables have other row counts than the backup",
                report.target_database,
                report.count_mismatches.len()
            ),
            hint: "check the target's log and KEEP, then restore again (--into-existing merges)"
                .into(),
        }
        .into());
    }
    Ok(Exit::Ok)
}

/// Database options that were dropped or renamed for the target server, as text.
pub fn describe_option_changes(changes: &[taosbackup_source::OptionChange]) -> String {
    let mut out = String::new();
    for c in changes {
        match &c.target {
            Some(t) => out.push_str(&format!(
                "  database option {} was sent as {} ({})\n",
                c.source, t, c.reason
            )),
            None => out.push_str(&format!(
                "  database option {} was dropped ({})\n",
                c.source, c.reason
            )),
        }
    }
    out
}

/// The report as text.
pub fn describe(r: &RestoreReport) -> String {
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    let mut out = format!(
        "{verb} backup {} (a chain of {}; read {} repository objects: its snapshot, catalog, \
         tree root, {} and {}) into database {}\n",
        r.backup,
        r.chain.len(),
        r.objects_read.metadata + r.objects_read.shards,
        plural(r.objects_read.tree_nodes, "tree node"),
        plural(r.objects_read.shards, "shard"),
        r.target_database
    );
    out.push_str(&format!(
        "  {} tables, {} blocks, {} rows{}\n",
        count(r.tables),
        count(r.blocks),
        if r.dry_run {
            count(r.rows_expected)
        } else {
            format!(
                "{} written of {} expected",
                count(r.rows_written),
                count(r.rows_expected)
            )
        },
        if r.dry_run {
            String::new()
        } else {
            format!("; duration {}", format_secs(r.duration))
        }
    ));
    if r.rows_rejected_by_keep > 0 {
        out.push_str(&format!(
            "  {} rows are older than the target's KEEP and were refused (restore with \
             --keep-override DAYS to keep them)\n",
            count(r.rows_rejected_by_keep)
        ));
    }
    for m in &r.count_mismatches {
        out.push_str(&format!(
            "  row count mismatch in {}: {} expected, {} found\n",
            m.table, m.expected, m.actual
        ));
    }
    out
}
