//! `taosbackup show`.

use taosbackup_engine::{BackupPoint, find_point};

use crate::args::ShowArgs;
use crate::commands::list::load_all;
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::{
    kind, plural, print_json, rfc3339, show_json, table, table_summaries, tombstone_split,
};
use crate::progress::{bytes, count};

/// Shows one backup.
pub async fn run(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let point: BackupPoint = args.backup.parse().map_err(|e| {
        usage(
            format!("{e}"),
            "name the backup as `taosbackup list` shows it",
        )
    })?;
    let all = load_all(ctx, &url, "show", args.lock.no_lock).await?;
    let m = find_point(&all, args.database.as_deref(), &point)?;
    if args.json {
        print_json(&show_json(m))?;
        return Ok(Exit::Ok);
    }
    let s = &m.stats;
    println!("backup     {}", m.id);
    println!("database   {}", m.database);
    println!("kind       {} (engine {})", kind(m.kind), m.engine);
    if let Some(p) = m.parent {
        println!("parent     {p}");
    }
    println!("chain      {}", m.chain);
    println!("started    {}", rfc3339(&m.started_at));
    println!("finished   {}", rfc3339(&m.finished_at));
    if let Some(e) = &m.source.endpoint {
        println!("source     {e}");
    }
    println!(
        "bucket     {}",
        humantime::format_duration(std::time::Duration::from_secs(m.bucket_width.seconds()))
    );
    // Tombstones counted from the records, so the total is the sum of the TOMBSTONES
    // column below; dropped tables are their own figure.
    let (tombstones, dropped) = tombstone_split(m);
    println!(
        "stats      {}, {} ({} failed), {}, {} dropped, {}, {} read, {} stored",
        plural(s.tables, "table"),
        plural(s.blocks, "block"),
        count(s.failed_blocks),
        plural(tombstones, "tombstone"),
        plural(dropped, "table"),
        plural(s.rows, "row"),
        bytes(s.bytes_read),
        bytes(s.bytes_stored)
    );
    let tables = table_summaries(m);
    if tables.is_empty() {
        println!("\nno table changed in this backup");
        return Ok(Exit::Ok);
    }
    println!();
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.kind.clone(),
                t.super_table.clone().unwrap_or_else(|| "-".into()),
                count(t.blocks),
                count(t.tombstones),
                count(t.rows),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "TABLE",
                "KIND",
                "SUPER TABLE",
                ">BLOCKS",
                ">TOMBSTONES",
                ">ROWS"
            ],
            &rows
        )
    );
    Ok(Exit::Ok)
}
