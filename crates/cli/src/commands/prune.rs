//! `taosbackup prune`: forget backups by retention rules (per database, restic's
//! vocabulary), then delete the data no remaining backup reaches.

use serde_json::json;
use taosbackup_sink::{Forget, PruneReport, Repo};

use crate::args::PruneArgs;
use crate::context::Context;
use crate::error::Exit;
use crate::output::print_json;
use crate::progress::{bytes, count};

/// Forgets (if asked) and garbage-collects; returns the JSON report.
pub async fn apply(
    repo: &Repo,
    forget: Option<&Forget>,
    dry_run: bool,
) -> anyhow::Result<serde_json::Value> {
    let report = repo.prune(forget, dry_run).await?;
    let mut v = report_json(&report);
    v["storage_retries"] = json!(repo.backend().stats().retries);
    Ok(v)
}

/// The JSON of a prune report (`prune --json`, `forget --json`).
pub fn report_json(r: &PruneReport) -> serde_json::Value {
    let f = r.forget.as_ref();
    json!({
        "dry_run": r.dry_run,
        "kept": f.map(|f| f.kept.keys().map(|i| i.to_hex()).collect::<Vec<_>>()),
        "kept_reasons": f.map(|f| f.kept.iter().map(|(i, why)| (i.to_hex(), why.clone())).collect::<std::collections::BTreeMap<_, _>>()),
        "forgotten": f.map(|f| f.forgotten.iter().map(|i| i.to_hex()).collect::<Vec<_>>()).unwrap_or_default(),
        "blobs_used": r.blobs_used,
        "blobs_removed": r.blobs_removed,
        "packs_deleted": r.packs_deleted.len(),
        "packs_rewritten": r.packs_rewritten.len(),
        "unindexed_packs_deleted": r.unindexed_packs_deleted.len(),
        "packs_written": r.packs_written.len(),
        "bytes_freed": r.bytes_freed,
    })
}

/// Prints a prune report as text.
pub fn print_report(report: &serde_json::Value, dry_run: bool, with_forget: bool) {
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let would = if dry_run { "would " } else { "" };
    if let (true, Some(forgotten)) = (with_forget, report["forgotten"].as_array()) {
        println!(
            "{would}forget {} backups, keep {}",
            forgotten.len(),
            report["kept"].as_array().map_or(0, |k| k.len())
        );
        for id in forgotten {
            println!("  {}", id.as_str().unwrap_or(""));
        }
    }
    println!(
        "{would}remove {} unused blobs: {} packs deleted, {} rewritten, {} unindexed deleted; {} freed",
        count(n("blobs_removed")),
        count(n("packs_deleted")),
        count(n("packs_rewritten")),
        count(n("unindexed_packs_deleted")),
        bytes(report["bytes_freed"].as_i64().unwrap_or(0).max(0) as u64)
    );
}

/// Runs `prune`.
pub async fn run(ctx: &Context, args: &PruneArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let policy = ctx.retention(&args.keep)?;
    let repo = ctx.open_repo(&url).await?;
    if policy.is_none() {
        tracing::info!("no retention rule given: only deleting data no backup uses");
    }
    let forget = policy.map(Forget::Policy);
    let report = apply(&repo, forget.as_ref(), args.dry_run).await?;
    if args.json {
        print_json(&report)?;
        return Ok(Exit::Ok);
    }
    print_report(&report, args.dry_run, forget.is_some());
    Ok(Exit::Ok)
}
