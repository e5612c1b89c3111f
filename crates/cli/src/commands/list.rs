//! `taosbackup list`.

use taosbackup_core::{BackupSnapshot, DamagedSnapshot};

use crate::args::ListArgs;
use crate::context::Context;
use crate::error::Exit;
use crate::output::{backup_json, kind, print_json, short_time, table};
use crate::progress::{bytes, count};
use crate::readonly::Reader;

/// Every committed backup of the repository whose snapshot object reads back intact, oldest
/// first (the engine's order), and apart the backups whose snapshot object is damaged: the
/// snapshot objects only, downloaded concurrently or read from the local cache; without a
/// lock when `no_lock` or when the repository is not writable.
pub async fn load_all(
    ctx: &Context,
    url: &str,
    command: &str,
    no_lock: bool,
) -> anyhow::Result<(Vec<BackupSnapshot>, Vec<DamagedSnapshot>)> {
    // Snapshot objects only: no index (every blob's location) is loaded.
    let repo = ctx.open_repo_with(url, false).await?;
    let reader = Reader::open_snapshots(&repo, command, no_lock, url).await?;
    let result = taosbackup_engine::list_backups_lenient(reader.repository()).await;
    let released = reader.finish().await;
    let all = result?;
    released?;
    Ok(all)
}

/// Names each damaged snapshot on stderr (the readable backups are listed on stdout), so
/// one damaged object neither hides the other backups nor passes unnoticed: the command
/// then exits 1.
fn report_damaged(damaged: &[DamagedSnapshot]) -> Exit {
    if damaged.is_empty() {
        return Exit::Ok;
    }
    for d in damaged {
        eprintln!(
            "error: the snapshot object of backup {} is damaged: {}",
            d.id, d.error
        );
    }
    eprintln!(
        "hint: run `taosbackup verify`; the backups listed can still be restored by their id"
    );
    Exit::Failed
}

/// Lists the backups.
pub async fn run(ctx: &Context, args: &ListArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let (mut all, damaged) = load_all(ctx, &url, "list", args.lock.no_lock).await?;
    if let Some(db) = &args.database {
        all.retain(|m| &m.database == db);
    }
    if args.json {
        let v: Vec<_> = all.iter().map(backup_json).collect();
        print_json(&v)?;
        return Ok(report_damaged(&damaged));
    }
    if all.is_empty() {
        println!("no backups in {url}");
        return Ok(report_damaged(&damaged));
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.id.to_hex()[..16].to_string(),
                m.database.clone(),
                kind(m.kind).to_string(),
                m.engine.clone(),
                m.parent
                    .map(|p| p.to_hex()[..16].to_string())
                    .unwrap_or_else(|| "-".into()),
                short_time(&m.finished_at),
                count(m.stats.rows),
                count(m.stats.blocks),
                bytes(m.stats.bytes_stored),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "DATABASE",
                "KIND",
                "ENGINE",
                "PARENT",
                "FINISHED (UTC)",
                ">ROWS",
                ">BLOCKS",
                ">STORED"
            ],
            &rows
        )
    );
    Ok(report_damaged(&damaged))
}
