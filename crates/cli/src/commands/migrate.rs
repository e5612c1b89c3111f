//! `taosbackup migrate`: a format-1 repository becomes format 3 (snapshot trees), re-using
//! every data pack, and a format-2 one switches to format 3 (binary shards from then on; see
//! `docs/format.md` §12). Dry-run first; safe to interrupt and rerun.

use anyhow::Context as _;
use taosbackup_sink::{OpenOptions, Repo};

use crate::args::MigrateArgs;
use crate::context::Context;
use crate::error::Exit;
use crate::output::print_json;
use crate::progress::{bytes, count};

/// Runs `migrate`.
pub async fn run(ctx: &Context, args: &MigrateArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let backend = ctx.backend(&url)?;
    let password = ctx.password()?;
    if !args.dry_run && Repo::resume_migration(&backend).await? {
        tracing::info!("finished the config switch of an interrupted migrate");
    }
    let options = OpenOptions {
        allow_format1: true,
        ..ctx.open_options()
    };
    let repo = Repo::open_with(backend, password.as_ref(), options)
        .await
        .with_context(|| format!("cannot open the repository {url}"))?;
    let report = repo.migrate(password.as_ref(), args.dry_run).await?;
    if args.json {
        print_json(&report)?;
        return Ok(Exit::Ok);
    }
    let would = if args.dry_run { "would " } else { "" };
    if report.from_version == 2 || report.already_migrated {
        if report.from_version == 2 {
            println!(
                "{would}switch {url} from format 2 to format 3: new shards are written binary, \
                 existing ones stay as they are; taosbackup builds that know only format 2 \
                 will no longer open it"
            );
        } else {
            println!("{url} is already format 3");
        }
        if report.manifests_deleted > 0 {
            println!(
                "{would}delete {} leftover manifests",
                report.manifests_deleted
            );
        }
        return Ok(Exit::Ok);
    }
    println!(
        "{would}migrate {} backups to format 3: {} snapshots to write ({} already written), {} new \
         tree objects ({}), then switch the config and delete the manifests",
        count(report.manifests as u64),
        count(report.snapshots_written as u64),
        count(report.snapshots_existing as u64),
        count(report.tree_objects_new as u64),
        bytes(report.tree_bytes)
    );
    if !args.dry_run {
        println!(
            "  wrote {}; no data pack was uploaded again. Run `taosbackup verify --repo {url}` now.",
            bytes(report.bytes_written)
        );
    }
    Ok(Exit::Ok)
}
