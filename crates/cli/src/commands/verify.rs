//! `taosbackup verify`: the repository's structure (every snapshot's tree), optionally its
//! data, optionally every block of one backup.

use std::collections::BTreeSet;

use serde_json::json;
use taosbackup_core::{BlobId, Progress, Repository};
use taosbackup_engine::{BackupPoint, load_state, resolve_point};
use taosbackup_sink::{OpenOptions, Problem, Repo, VerifyOptions};

use crate::args::VerifyArgs;
use crate::context::Context;
use crate::error::{Advised, Exit, usage};
use crate::output::print_json;
use crate::progress::{CliProgress, bytes, count};
use crate::readonly::Reader;

/// Checks the repository; exit code 3 when it finds problems.
pub async fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    if let Some(p) = args.read_data {
        if !(1..=100).contains(&p) {
            return Err(usage(
                format!("--read-data {p}: the percentage must be within 1..=100"),
                "pass --read-data alone for 100%, or a percentage such as --read-data 10",
            ));
        }
    }
    let point = match &args.backup {
        Some(b) => Some(b.parse::<BackupPoint>().map_err(|e| {
            usage(
                format!("{e}"),
                "name the backup as `taosbackup list` shows it",
            )
        })?),
        None => None,
    };
    let backend = ctx.backend(&url)?;
    let password = ctx.password()?;
    // Damaged index files are findings here, not a reason to refuse to look.
    let options = OpenOptions {
        allow_damaged_index: true,
        ..ctx.open_options()
    };
    let repo = Repo::open_with(backend, password.as_ref(), options)
        .await
        .map_err(|e| cannot_open(ctx, e, &url))?;
    tracing::info!(
        repository = %url,
        read_data_percent = args.read_data.unwrap_or(0),
        "verifying"
    );
    let options = VerifyOptions {
        read_data_percent: args.read_data,
    };
    // One shared lock (or none: read-only repository, --no-lock) for the whole check.
    let reader = Reader::open(&repo, "verify", args.lock.no_lock, &url).await?;
    let result = async {
        let mut report = repo.verify_without_lock(options).await?;
        let mut chain_blocks = None;
        if let Some(point) = &point {
            let progress = if args.json {
                CliProgress::hidden()
            } else {
                CliProgress::auto()
            };
            let (blocks, problems) = read_chain(reader.repository(), point, &progress).await?;
            chain_blocks = Some(blocks);
            report.problems.extend(problems);
        }
        anyhow::Ok((report, chain_blocks))
    }
    .await;
    let released = reader.finish().await;
    let (report, chain_blocks) = result?;
    released?;
    let exit = if report.is_ok() {
        Exit::Ok
    } else {
        Exit::Problems
    };
    if args.json {
        print_json(&json!({
            "ok": report.is_ok(),
            "problems": report.problems.iter().map(|p| json!({"object": p.object, "message": p.message})).collect::<Vec<_>>(),
            "manifests": report.snapshots,
            "snapshots": report.snapshots,
            "tree_objects": report.tree_objects,
            "data_blobs": report.data_blobs,
            "index_files": report.index_files,
            "packs": report.packs,
            "packs_read": report.packs_read,
            "blobs_read": report.blobs_read,
            "bytes_read": report.bytes_read,
            "unindexed_packs": report.unindexed_packs,
            "backup_blocks_read": chain_blocks,
            "storage_retries": repo.backend().stats().retries,
        }))?;
        return Ok(exit);
    }
    println!(
        "checked {} backups ({} tree objects, {} data blobs), {} index files, {} packs",
        count(report.snapshots as u64),
        count(report.tree_objects as u64),
        count(report.data_blobs as u64),
        count(report.index_files as u64),
        count(report.packs as u64)
    );
    if args.read_data.is_some() {
        println!(
            "read {} packs, {} blobs, {}",
            count(report.packs_read as u64),
            count(report.blobs_read as u64),
            bytes(report.bytes_read)
        );
    }
    if let Some(n) = chain_blocks {
        println!("read every block of the backup: {} blobs", count(n));
    }
    if !report.unindexed_packs.is_empty() {
        println!(
            "{} packs are not indexed (left by interrupted backups; `taosbackup prune` removes them)",
            report.unindexed_packs.len()
        );
    }
    if report.is_ok() {
        println!("no problems found");
    } else {
        println!("{} problems found:", report.problems.len());
        for p in &report.problems {
            println!("  {}: {}", p.object, p.message);
        }
        tracing::warn!(problems = report.problems.len(), "verify found problems");
    }
    Ok(exit)
}

/// The error of a repository `verify` cannot open. Damage to the objects opening needs
/// (`config`, `config.check`, key files) gets its own advice: the usual hint for damage,
/// "run `taosbackup verify`", would send the operator in a circle.
fn cannot_open(ctx: &Context, e: taosbackup_sink::Error, url: &str) -> anyhow::Error {
    use taosbackup_sink::Error as E;
    let message = format!("cannot open the repository {url}: {e}");
    match e {
        E::Corrupt { .. } | E::UnsupportedVersion { .. } | E::MissingBlob { .. } => Advised {
            message,
            hint: "verify cannot check a repository it cannot open: the objects opening needs \
                   (config, config.check, keys/) are damaged or missing; copy them back from \
                   another copy of the repository"
                .into(),
        }
        .into(),
        e => ctx.storage_error(url, e, "cannot open the repository"),
    }
}

/// Reads (authenticates, decompresses, rehashes) every blob the backup `point` needs.
async fn read_chain(
    session: &dyn Repository,
    point: &BackupPoint,
    progress: &CliProgress,
) -> anyhow::Result<(u64, Vec<Problem>)> {
    let (listed, _) = resolve_point(session, None, point).await?;
    let snapshot = session.load_snapshot(&listed.id).await?;
    let (folded, _) = load_state(session, &snapshot, &[], &[]).await?;
    let blobs: BTreeSet<BlobId> = folded
        .tables
        .values()
        .flat_map(|t| t.values().map(|b| b.blob))
        .collect();
    let mut problems = Vec::new();
    progress.begin("verify", blobs.len() as u64, 0);
    for id in &blobs {
        match session.read_blob(id).await {
            Ok(data) => progress.advance(1, 0, data.len() as u64),
            Err(e) => {
                progress.advance(1, 0, 0);
                problems.push(Problem {
                    object: format!("blob {id}"),
                    message: format!("{e}"),
                });
            }
        }
    }
    progress.end();
    Ok((blobs.len() as u64, problems))
}
