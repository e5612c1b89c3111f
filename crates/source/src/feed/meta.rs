//! TMQ meta messages (TDengine's JSON from `clientRawBlockWrite.c`) → table-level changes.
//!
//! Parsing is pure; whether a name is a super table (and which children it has) is resolved
//! by the feed against the server.

use serde_json::Value as Json;
use taosbackup_core::TableEvent;

/// One change read from a meta message, before super tables are expanded to children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaChange {
    /// A child or normal table was created.
    Created(String),
    /// A super table was created (no rows, no event; remembered as a super table).
    SuperCreated(String),
    /// A child or normal table was dropped.
    Dropped(String),
    /// A super table was dropped (its children with it).
    SuperDropped(String),
    /// `ALTER` on `table` (child, normal or super); `event` is what it changed.
    Altered {
        /// The altered table (possibly a super table).
        table: String,
        /// Schema or tags.
        event: TableEvent,
    },
    /// `DELETE` on `table` (possibly a super table); `None`: the range could not be parsed
    /// and the whole time range must be assumed.
    Delete {
        /// The table.
        table: String,
        /// Inclusive range.
        range: Option<(i64, i64)>,
    },
    /// A delete whose table could not even be read from its SQL: every table of the
    /// database must be assumed touched.
    DeleteUnknown(String),
}

/// The meta units of one message (single or plural form) as changes. Unknown `type`s and
/// table-option alters (alterType 9) change nothing the tracker follows and are skipped;
/// anything malformed is an error (never silently dropped).
pub(crate) fn parse_meta(json: &Json) -> Result<Vec<MetaChange>, String> {
    let mut out = Vec::new();
    if let Some(metas) = json.get("metas").and_then(Json::as_array) {
        for m in metas {
            parse_unit(m, &mut out)?;
        }
    } else {
        parse_unit(json, &mut out)?;
    }
    Ok(out)
}

fn str_field<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get(key).and_then(Json::as_str)
}

fn parse_unit(j: &Json, out: &mut Vec<MetaChange>) -> Result<(), String> {
    let kind = str_field(j, "type").ok_or_else(|| format!("meta without a type: {j}"))?;
    let name = || {
        str_field(j, "tableName")
            .map(str::to_string)
            .ok_or_else(|| format!("{kind} meta without tableName: {j}"))
    };
    match kind {
        "create" => {
            let table_type = str_field(j, "tableType").unwrap_or("");
            if table_type == "super" {
                out.push(MetaChange::SuperCreated(name()?));
            } else {
                out.push(MetaChange::Created(name()?));
                // TDengine batches auto-created children in `createList`.
                if let Some(list) = j.get("createList").and_then(Json::as_array) {
                    for c in list {
                        if let Some(n) = str_field(c, "tableName") {
                            out.push(MetaChange::Created(n.to_string()));
                        }
                    }
                }
            }
        }
        "drop" => {
            if let Some(list) = j.get("tableNameList").and_then(Json::as_array) {
                for n in list {
                    let n = n
                        .as_str()
                        .ok_or_else(|| format!("drop meta with a non-text name: {j}"))?;
                    out.push(MetaChange::Dropped(n.to_string()));
                }
            } else {
                // `tableName` alone: a super table (TDengine's MetaDrop::Super).
                out.push(MetaChange::SuperDropped(name()?));
            }
        }
        "alter" => {
            let alter_type = j
                .get("alterType")
                .and_then(Json::as_i64)
                .ok_or_else(|| format!("alter meta without alterType: {j}"))?;
            let event = match alter_type {
                // add/drop/rename tag, set tag value, modify tag length
                1 | 2 | 3 | 4 | 8 => Some(TableEvent::TagsChanged),
                // add/drop/modify/rename column (and later column options)
                5 | 6 | 7 | 10..=13 => Some(TableEvent::SchemaChanged),
                // table options (comment, TTL): no data or schema change
                9 => None,
                // Unknown future kinds: assume the schema changed rather than drop them.
                _ => Some(TableEvent::SchemaChanged),
            };
            if let Some(event) = event {
                out.push(MetaChange::Altered {
                    table: name()?,
                    event,
                });
            }
        }
        "delete" => {
            let sql = str_field(j, "sql").ok_or_else(|| format!("delete meta without sql: {j}"))?;
            match parse_delete(sql) {
                Some((table, range)) => out.push(MetaChange::Delete { table, range }),
                None => out.push(MetaChange::DeleteUnknown(sql.to_string())),
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads an identifier: `` `quoted` `` (doubled backquotes inside) or bare up to whitespace,
/// `.` or an operator. Returns it and the rest.
fn ident(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if matches!(chars.peek(), Some((_, '`'))) {
                    chars.next();
                    name.push('`');
                } else {
                    return Some((name, &rest[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| c.is_whitespace() || "=<>.".contains(c))
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let s = s.trim_start();
    (s.len() >= kw.len() && s[..kw.len()].eq_ignore_ascii_case(kw)).then(|| &s[kw.len()..])
}

/// Parses `delete from `t` where `ts` >= a and `ts` <= b` (also `db`.`t`, `>`/`<`, one
/// bound only). Returns the table and the inclusive range, or the table and `None` when
/// only the table could be read, or `None` when not even that.
pub(crate) fn parse_delete(sql: &str) -> Option<(String, Option<(i64, i64)>)> {
    let rest = strip_keyword(sql, "delete")?;
    let rest = strip_keyword(rest, "from")?;
    let (mut table, mut rest) = ident(rest)?;
    if let Some(r) = rest.strip_prefix('.') {
        let (t, r) = ident(r)?;
        table = t;
        rest = r;
    }
    Some((table, parse_where(rest)))
}

fn parse_where(rest: &str) -> Option<(i64, i64)> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Some((i64::MIN, i64::MAX));
    }
    let mut rest = strip_keyword(rest, "where")?;
    let (mut start, mut end) = (i64::MIN, i64::MAX);
    loop {
        let (_col, r) = ident(rest)?;
        let r = r.trim_start();
        let (op, r) = [">=", "<=", ">", "<", "="]
            .iter()
            .find_map(|op| r.strip_prefix(op).map(|r| (*op, r)))?;
        let r = r.trim_start();
        let len = r
            .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+'))
            .unwrap_or(r.len());
        let v: i64 = r[..len].parse().ok()?;
        match op {
            ">=" => start = start.max(v),
            ">" => start = start.max(v.checked_add(1)?),
            "<=" => end = end.min(v),
            "<" => end = end.min(v.checked_sub(1)?),
            _ => {
                start = start.max(v);
                end = end.min(v);
            }
        }
        let r = r[len..].trim();
        if r.is_empty() {
            return Some((start, end));
        }
        rest = strip_keyword(r, "and")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn delete_sql_forms() {
        assert_eq!(
            parse_delete("delete from `c1` where `ts` >= 1700000000000 and `ts` <= 1700000000001"),
            Some(("c1".into(), Some((1_700_000_000_000, 1_700_000_000_001))))
        );
        assert_eq!(
            parse_delete("DELETE FROM `d`.`a``b` WHERE `t` > -5 AND `t` < 10"),
            Some(("a`b".into(), Some((-4, 9))))
        );
        assert_eq!(
            parse_delete("delete from t where ts <= 3"),
            Some(("t".into(), Some((i64::MIN, 3))))
        );
        assert_eq!(
            parse_delete("delete from `t`"),
            Some(("t".into(), Some((i64::MIN, i64::MAX))))
        );
        // The table is known but the condition is not understood: the range is unknown.
        assert_eq!(
            parse_delete("delete from `t` where ts in (1, 2)"),
            Some(("t".into(), None))
        );
        assert_eq!(
            parse_delete("delete from `t` where `ts` >= 99999999999999999999"),
            Some(("t".into(), None))
        );
        assert_eq!(parse_delete("truncate table t"), None);
        assert_eq!(parse_delete("delete from `unclosed"), None);
    }

    #[test]
    fn meta_kinds() {
        let p = |j: Json| parse_meta(&j).unwrap();
        assert_eq!(
            p(json!({"type":"create","tableType":"super","tableName":"st"})),
            vec![MetaChange::SuperCreated("st".into())]
        );
        assert_eq!(
            p(
                json!({"type":"create","tableType":"child","tableName":"c","using":"st",
                "createList":[{"tableName":"c2"}]})
            ),
            vec![
                MetaChange::Created("c".into()),
                MetaChange::Created("c2".into())
            ]
        );
        assert_eq!(
            p(json!({"type":"drop","tableNameList":["a","b"]})),
            vec![
                MetaChange::Dropped("a".into()),
                MetaChange::Dropped("b".into())
            ]
        );
        assert_eq!(
            p(json!({"type":"drop","tableType":"super","tableName":"st"})),
            vec![MetaChange::SuperDropped("st".into())]
        );
        for (t, e) in [
            (1, TableEvent::TagsChanged),
            (4, TableEvent::TagsChanged),
            (5, TableEvent::SchemaChanged),
            (10, TableEvent::SchemaChanged),
        ] {
            assert_eq!(
                p(json!({"type":"alter","tableName":"x","alterType":t,"colName":"c"})),
                vec![MetaChange::Altered {
                    table: "x".into(),
                    event: e
                }]
            );
        }
        assert!(p(json!({"type":"alter","tableName":"x","alterType":9})).is_empty());
        assert_eq!(
            p(json!({"type":"delete","sql":"nonsense"})),
            vec![MetaChange::DeleteUnknown("nonsense".into())]
        );
        assert_eq!(
            p(json!({"tmq_meta_version":"1.0","metas":[
                {"type":"create","tableType":"normal","tableName":"n"},
                {"type":"delete","sql":"delete from `n` where `ts` >= 1 and `ts` <= 2"}]})),
            vec![
                MetaChange::Created("n".into()),
                MetaChange::Delete {
                    table: "n".into(),
                    range: Some((1, 2))
                }
            ]
        );
        assert!(parse_meta(&json!({"tableName":"x"})).is_err());
        assert!(parse_meta(&json!({"type":"alter","tableName":"x"})).is_err());
    }
}
