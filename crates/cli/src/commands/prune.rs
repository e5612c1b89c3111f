//! `taosbackup prune`: forget backups by retention rules, then delete unused data.

use serde_json::json;
use taosbackup_sink::{Repo, RetentionPolicy};

use crate::args::PruneArgs;
use crate::config::parse_duration;
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::print_json;
use crate::progress::{bytes, count};

/// The retention policy of the flags, then `[retention]`; `None` when no rule is set.
pub fn policy(
    ctx: &Context,
    keep_chains: Option<usize>,
    keep_within: Option<&str>,
) -> anyhow::Result<Option<RetentionPolicy>> {
    let keep_chains = keep_chains.or(ctx.config.retention.keep_chains);
    if keep_chains == Some(0) {
        return Err(usage(
            "--keep-chains 0 would forget every backup",
            "keep at least one chain (--keep-chains 1)",
        ));
    }
    let keep_within = match keep_within.or(ctx.config.retention.keep_within.as_deref()) {
        Some(w) => Some(parse_duration(w).map_err(|e| usage(e, "e.g. --keep-within 30d"))?),
        None => None,
    };
    if keep_chains.is_none() && keep_within.is_none() {
        return Ok(None);
    }
    Ok(Some(RetentionPolicy {
        keep_last_chains: keep_chains,
        keep_within,
        ..RetentionPolicy::default()
    }))
}

/// Applies `policy` (if any) and garbage-collects; returns the JSON report.
pub async fn apply(
    repo: &Repo,
    policy: Option<&RetentionPolicy>,
    dry_run: bool,
) -> anyhow::Result<serde_json::Value> {
    let forget = match policy {
        Some(p) => Some(repo.forget(p, dry_run).await?),
        None => None,
    };
    let prune = repo.prune(dry_run).await?;
    Ok(json!({
        "dry_run": dry_run,
        "kept": forget.as_ref().map(|f| f.kept.iter().map(|i| i.to_hex()).collect::<Vec<_>>()),
        "forgotten": forget.as_ref().map(|f| f.forgotten.iter().map(|i| i.to_hex()).collect::<Vec<_>>()).unwrap_or_default(),
        "blobs_used": prune.blobs_used,
        "blobs_removed": prune.blobs_removed,
        "packs_deleted": prune.packs_deleted.len(),
        "packs_rewritten": prune.packs_rewritten.len(),
        "unindexed_packs_deleted": prune.unindexed_packs_deleted.len(),
        "packs_written": prune.packs_written.len(),
        "bytes_freed": prune.bytes_freed,
        "storage_retries": repo.backend().stats().retries,
    }))
}

/// Runs `prune`.
pub async fn run(ctx: &Context, args: &PruneArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let policy = policy(ctx, args.keep_chains, args.keep_within.as_deref())?;
    let repo = ctx.open_repo(&url).await?;
    if policy.is_none() {
        tracing::info!("no retention rule given: only deleting data no backup uses");
    }
    let report = apply(&repo, policy.as_ref(), args.dry_run).await?;
    if args.json {
        print_json(&report)?;
        return Ok(Exit::Ok);
    }
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let would = if args.dry_run { "would " } else { "" };
    if let Some(forgotten) = report["forgotten"].as_array() {
        if policy.is_some() {
            println!(
                "{would}forget {} backups, keep {}",
                forgotten.len(),
                report["kept"].as_array().map_or(0, |k| k.len())
            );
            for id in forgotten {
                println!("  {}", id.as_str().unwrap_or(""));
            }
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
    Ok(Exit::Ok)
}
