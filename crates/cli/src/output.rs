//! Presenting results: aligned text tables and the JSON shapes of `list`, `show`, `backup`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use taosbackup_core::{BackupKind, BackupSnapshot, DatabaseState};
use taosbackup_engine::ChangedTable;

/// RFC 3339 in UTC with milliseconds: `2026-11-23T10:00:00.123Z`.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A short, human time: `2026-11-23 10:00:00`.
pub fn short_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `full` or `incremental`.
pub fn kind(k: BackupKind) -> &'static str {
    match k {
        BackupKind::Full => "full",
        BackupKind::Incremental => "incremental",
    }
}

/// `1 tombstone`, `2 tombstones` (with thousands separators).
pub fn plural(n: u64, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {noun}{s}", crate::progress::count(n))
}

/// The JSON object of one backup in `list --json`.
pub fn backup_json(m: &BackupSnapshot) -> Value {
    json!({
        "id": m.id.to_hex(),
        "database": m.database,
        "kind": kind(m.kind),
        "engine": m.engine,
        "parent": m.parent.map(|p| p.to_hex()),
        "chain": m.chain.to_hex(),
        "started_at": rfc3339(&m.started_at),
        "finished_at": rfc3339(&m.finished_at),
        "tables": m.stats.tables,
        "rows": m.stats.rows,
        "blocks": m.stats.blocks,
        "tombstones": m.stats.tombstones,
        "bytes_read": m.stats.bytes_read,
        "bytes_stored": m.stats.bytes_stored,
        "failed_blocks": m.stats.failed_blocks,
        "bucket_width_seconds": m.bucket_width.seconds(),
        "source": m.source.endpoint,
        "precision": m.precision,
    })
}

/// The JSON of `show --json`: the `list` object plus the catalog counts and the tables the
/// backup changed (`table_records`; every table for a full backup).
pub fn show_json(
    m: &BackupSnapshot,
    state: &DatabaseState,
    tables: &[ChangedTable],
    relative_to_parent: bool,
) -> Value {
    let mut v = backup_json(m);
    if let Value::Object(o) = &mut v {
        o.insert(
            "super_tables".into(),
            json!(state.catalog.super_tables.len()),
        );
        o.insert("catalog_tables".into(), json!(state.catalog.tables.len()));
        o.insert("table_records".into(), json!(tables));
        o.insert(
            "records_relative_to_parent".into(),
            json!(relative_to_parent),
        );
        o.insert("tree".into(), json!(m.tree.to_hex()));
        o.insert("catalog".into(), json!(m.catalog.to_hex()));
        o.insert(
            "feed_positions".into(),
            json!(m.feed_positions.as_ref().map(|f| json!({
                "feed": f.feed,
                "positions": f.positions,
            }))),
        );
    }
    v
}

/// A text table: a header row, then rows, columns left-aligned and padded; columns whose
/// header starts with `>` are right-aligned (the marker is not printed).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let right: Vec<bool> = headers.iter().map(|h| h.starts_with('>')).collect();
    let headers: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// Prints JSON (pretty) to standard output.
pub fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", ">ROWS"],
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "1000".into()],
            ],
        );
        assert_eq!(t, "ID   ROWS\na       1\nbbb  1000\n");
    }
}
