//! `taosbackup show`.

use taosbackup_engine::{BackupPoint, changes, load_state, resolve_point};

use crate::args::ShowArgs;
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::{kind, plural, print_json, rfc3339, show_json, table};
use crate::progress::{bytes, count};
use crate::readonly::Reader;

/// Shows one backup.
pub async fn run(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let point: BackupPoint = args.backup.parse().map_err(|e| {
        usage(
            format!("{e}"),
            "name the backup as `taosbackup list` shows it",
        )
    })?;
    let repo = ctx.open_repo(&url).await?;
    let reader = Reader::open(&repo, "show", args.lock.no_lock, &url).await?;
    let result = async {
        let session = reader.repository();
        let (listed, _) = resolve_point(session, args.database.as_deref(), &point).await?;
        let m = repo.load_snapshot(&listed.id).await?;
        let (state, _) = load_state(session, &m, &[], &[]).await?;
        let (tables, relative) = changes(session, &m).await?;
        anyhow::Ok((m, state, tables, relative))
    }
    .await;
    let released = reader.finish().await;
    let (m, state, tables, relative) = result?;
    released?;
    if args.json {
        print_json(&show_json(&m, &state, &tables, relative))?;
        return Ok(Exit::Ok);
    }
    let s = &m.stats;
    println!("backup     {}", m.id);
    println!("database   {}", m.database);
    println!("kind       {} (engine {})", kind(m.kind), m.engine);
    if let Some(p) = m.parent {
        println!(
            "parent     {p}{}",
            if relative { "" } else { " (forgotten)" }
        );
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
    println!(
        "contents   {} super tables, {} tables, {} blocks, {} rows",
        count(state.catalog.super_tables.len() as u64),
        count(state.catalog.tables.len() as u64),
        count(state.tables.values().map(|b| b.len() as u64).sum()),
        count(
            state
                .tables
                .values()
                .flat_map(|b| b.values())
                .map(|b| b.rows)
                .sum()
        )
    );
    // Tombstones counted from the table list below, so the total is the sum of its
    // TOMBSTONES column; dropped tables are their own figure.
    let tombstones: u64 = tables.iter().map(|t| t.tombstones).sum();
    let dropped = tables.iter().filter(|t| t.dropped).count() as u64;
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
