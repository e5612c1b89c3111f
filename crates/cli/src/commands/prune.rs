//! `taosbackup prune`: forget backups by retention rules (per database, restic's
//! vocabulary), then delete the data no remaining backup reaches.

use serde_json::json;
use taosbackup_sink::{Forget, PruneReport, Repo, RetentionPolicy};

use crate::args::{KeepArgs, PruneArgs};
use crate::config::parse_duration;
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::print_json;
use crate::progress::{bytes, count};

/// The retention policy of the flags, each rule falling back to `[retention]`; `None` when
/// no rule is set.
pub fn policy(
    ctx: &Context,
    keep: &KeepArgs,
    allow_empty: bool,
) -> anyhow::Result<Option<RetentionPolicy>> {
    let r = &ctx.config.retention;
    let keep_chains = keep.keep_chains.or(r.keep_chains);
    if keep_chains == Some(0) {
        return Err(usage(
            "--keep-chains 0 would forget every backup",
            "keep at least one chain (--keep-chains 1)",
        ));
    }
    let keep_within = match keep.keep_within.as_deref().or(r.keep_within.as_deref()) {
        Some(w) => Some(parse_duration(w).map_err(|e| usage(e, "e.g. --keep-within 30d"))?),
        None => None,
    };
    let p = RetentionPolicy {
        keep_last: keep.keep_last.or(r.keep_last),
        keep_hourly: keep.keep_hourly.or(r.keep_hourly),
        keep_daily: keep.keep_daily.or(r.keep_daily),
        keep_weekly: keep.keep_weekly.or(r.keep_weekly),
        keep_monthly: keep.keep_monthly.or(r.keep_monthly),
        keep_yearly: keep.keep_yearly.or(r.keep_yearly),
        keep_within,
        keep_chains,
        allow_empty: allow_empty || r.allow_empty.unwrap_or(false),
    };
    Ok((!p.is_empty()).then_some(p))
}

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
    let policy = policy(ctx, &args.keep, args.allow_empty)?;
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
