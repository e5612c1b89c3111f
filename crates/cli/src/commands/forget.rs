//! `taosbackup forget ID…`: forget chosen backups (any of them: every backup is
//! self-contained), then delete the data no remaining backup reaches.

use taosbackup_core::BackupId;
use taosbackup_engine::{BackupPoint, find_point};
use taosbackup_sink::{Forget, Repo};

use crate::args::ForgetArgs;
use crate::commands::prune::{print_report, report_json};
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::print_json;

/// Resolves ids or unique prefixes to backup ids.
pub async fn resolve(repo: &Repo, ids: &[String]) -> anyhow::Result<Vec<BackupId>> {
    let all = repo.snapshots().await?;
    let mut out = Vec::new();
    for text in ids {
        let point = match text.parse::<BackupPoint>() {
            Ok(p @ BackupPoint::Id(_)) => p,
            _ => {
                return Err(usage(
                    format!("{text:?} is not a backup id"),
                    "give backup ids (or unique prefixes of at least 8 hex digits) as \
                     `taosbackup list` shows them",
                ));
            }
        };
        out.push(find_point(&all, None, &point)?.id);
    }
    Ok(out)
}

/// Runs `forget`.
pub async fn run(ctx: &Context, args: &ForgetArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let repo = ctx.open_repo(&url).await?;
    let ids = resolve(&repo, &args.ids).await?;
    let forget = Forget::Ids(ids);
    let report = if args.no_prune {
        let f = repo.forget(&forget, args.dry_run).await?;
        report_json(&taosbackup_sink::PruneReport {
            dry_run: args.dry_run,
            forget: Some(f),
            ..Default::default()
        })
    } else {
        report_json(&repo.prune(Some(&forget), args.dry_run).await?)
    };
    let mut report = report;
    report["storage_retries"] = serde_json::json!(repo.backend().stats().retries);
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report, args.dry_run, true);
    }
    Ok(Exit::Ok)
}
