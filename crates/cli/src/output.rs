//! Presenting results: aligned text tables and the JSON shapes of `list`, `show`, `backup`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use taosbackup_core::{BackupKind, BlockRecord, Manifest, TableKind, TableRecord};

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

/// A backup's tombstones: (deleted blocks, dropped tables), counted from its records. The
/// manifest's `stats.tombstones` counts both; `show` lists them apart.
pub fn tombstone_split(m: &Manifest) -> (u64, u64) {
    let (mut blocks, mut dropped) = (0u64, 0u64);
    for record in m.tables.values() {
        match record {
            TableRecord::Present { blocks: b } => {
                blocks += b
                    .values()
                    .filter(|r| matches!(r, BlockRecord::Deleted))
                    .count() as u64;
            }
            TableRecord::Dropped => dropped += 1,
        }
    }
    (blocks, dropped)
}

/// The JSON object of one backup in `list --json`.
pub fn backup_json(m: &Manifest) -> Value {
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
    })
}

/// One table of a backup, as `show` presents it.
#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    /// Table name.
    pub name: String,
    /// `normal`, `child`, or `dropped`.
    pub kind: String,
    /// The super table of a child table.
    pub super_table: Option<String>,
    /// Blocks this backup stores for it.
    pub blocks: u64,
    /// Tombstones this backup records for it.
    pub tombstones: u64,
    /// Rows in the stored blocks.
    pub rows: u64,
    /// The table was dropped since the parent.
    pub dropped: bool,
}

/// The tables a backup records, by name.
pub fn table_summaries(m: &Manifest) -> Vec<TableSummary> {
    let mut out = Vec::with_capacity(m.tables.len());
    for (name, record) in &m.tables {
        let def = m.catalog.tables.iter().find(|t| &t.name == name);
        let (kind, super_table) = match def {
            Some(d) => (
                match d.kind {
                    TableKind::Normal => "normal",
                    TableKind::Child => "child",
                },
                d.super_table.clone(),
            ),
            None => ("dropped", None),
        };
        let mut s = TableSummary {
            name: name.clone(),
            kind: kind.to_string(),
            super_table,
            blocks: 0,
            tombstones: 0,
            rows: 0,
            dropped: false,
        };
        match record {
            TableRecord::Present { blocks } => {
                for b in blocks.values() {
                    match b {
                        BlockRecord::Data(r) => {
                            s.blocks += 1;
                            s.rows += r.rows;
                        }
                        BlockRecord::Deleted => s.tombstones += 1,
                    }
                }
            }
            TableRecord::Dropped => {
                s.dropped = true;
                s.kind = "dropped".into();
            }
        }
        out.push(s);
    }
    out
}

/// The JSON of `show --json`: the `list` object plus the catalog counts and tables.
pub fn show_json(m: &Manifest) -> Value {
    let mut v = backup_json(m);
    let tables = table_summaries(m);
    if let Value::Object(o) = &mut v {
        o.insert("precision".into(), json!(m.catalog.database.precision));
        o.insert("super_tables".into(), json!(m.catalog.super_tables.len()));
        o.insert("catalog_tables".into(), json!(m.catalog.tables.len()));
        o.insert("table_records".into(), json!(tables));
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
