//! TMQ meta messages (TDengine's JSON from `client/src/clientRawBlockWrite.c`) → table-level
//! changes.
//!
//! Parsing is pure and never fails: anything it cannot understand — an unknown `type` or
//! `alterType`, a missing field, a `createList` entry without a name — becomes a
//! [`MetaChange::Reread`] of the table it names (or of the whole database when it names
//! none), so an unreadable message neither stops the feed nor loses a change. Whether a name
//! is a super table (and which children it has) is resolved by the feed against the server.

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
    /// A message (or part of one) this parser does not understand: `table` (possibly a super
    /// table) must be exported whole by the next backup, or every table with `None`.
    Reread {
        /// The table the message names, if any.
        table: Option<String>,
        /// What was not understood (names the message).
        reason: String,
    },
}

/// The meta units of one message (single or plural `{"tmq_meta_version", "metas"}` form) as
/// changes; never fails (see the module docs).
pub(crate) fn parse_meta(json: &Json) -> Vec<MetaChange> {
    let mut out = Vec::new();
    match json.get("metas") {
        Some(Json::Array(metas)) => {
            for m in metas {
                parse_unit(m, &mut out);
            }
        }
        Some(_) => out.push(reread(None, "`metas` is not a list", json)),
        None => parse_unit(json, &mut out),
    }
    out
}

fn str_field<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get(key).and_then(Json::as_str).filter(|s| !s.is_empty())
}

/// The message, shortened for logs and reasons.
fn excerpt(j: &Json) -> String {
    let mut t = j.to_string();
    if t.len() > 300 {
        let mut cut = 300;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push('…');
    }
    t
}

fn reread(table: Option<&str>, what: &str, j: &Json) -> MetaChange {
    MetaChange::Reread {
        table: table.map(str::to_string),
        reason: format!("tmq meta message not understood ({what}): {}", excerpt(j)),
    }
}

/// What an `alterType` changes (`TSDB_ALTER_TABLE_*`, `include/common/tmsg.h`); `None`
/// inside `Some`: nothing the tracker follows; outer `None`: unknown.
fn alter_event(alter_type: i64) -> Option<Option<TableEvent>> {
    Some(match alter_type {
        // add/drop/rename tag, set tag value, modify tag length, set several tags (15)
        1 | 2 | 3 | 4 | 8 | 15 => Some(TableEvent::TagsChanged),
        // add/drop/modify/rename column, column compression (13), add column with
        // compression (14), virtual-table column references (16–18)
        5 | 6 | 7 | 10 | 13 | 14 | 16 | 17 | 18 => Some(TableEvent::SchemaChanged),
        // table options (COMMENT, TTL; printed without colName) and tag indexes
        9 | 11 | 12 => None,
        _ => return None,
    })
}

fn parse_unit(j: &Json, out: &mut Vec<MetaChange>) {
    let name = str_field(j, "tableName");
    let Some(kind) = str_field(j, "type") else {
        out.push(reread(name, "no type", j));
        return;
    };
    match kind {
        "create" => {
            if str_field(j, "tableType") == Some("super") {
                match name {
                    Some(n) => out.push(MetaChange::SuperCreated(n.to_string())),
                    None => out.push(reread(None, "create without tableName", j)),
                }
                return;
            }
            // A batch of child tables: `createList` holds every table of the batch (the
            // first one included) when it has more than one (buildCreateCTableJson).
            let list = match j.get("createList") {
                None | Some(Json::Null) => &[][..],
                Some(Json::Array(l)) => l.as_slice(),
                Some(_) => {
                    out.push(reread(name, "createList is not a list", j));
                    &[][..]
                }
            };
            match name {
                Some(n) => out.push(MetaChange::Created(n.to_string())),
                None if list.is_empty() => out.push(reread(None, "create without tableName", j)),
                None => {}
            }
            for c in list {
                match str_field(c, "tableName") {
                    Some(n) if Some(n) != name => out.push(MetaChange::Created(n.to_string())),
                    Some(_) => {}
                    None => out.push(reread(None, "createList entry without tableName", j)),
                }
            }
        }
        "drop" => match (j.get("tableNameList"), name) {
            (Some(Json::Array(list)), _) => {
                for n in list {
                    match n.as_str().filter(|n| !n.is_empty()) {
                        Some(n) => out.push(MetaChange::Dropped(n.to_string())),
                        None => out.push(reread(None, "drop of a table without a name", j)),
                    }
                }
            }
            // `tableName` alone: a super table (processDropSTable).
            (None, Some(n)) => out.push(MetaChange::SuperDropped(n.to_string())),
            _ => out.push(reread(None, "drop without table names", j)),
        },
        "alter" => {
            let Some(table) = name else {
                out.push(reread(None, "alter without tableName", j));
                return;
            };
            let alter_type = j.get("alterType").and_then(Json::as_i64);
            match alter_type.and_then(alter_event) {
                Some(Some(event)) => out.push(MetaChange::Altered {
                    table: table.to_string(),
                    event,
                }),
                Some(None) => {}
                None => out.push(reread(Some(table), "unknown alterType", j)),
            }
        }
        "delete" => match str_field(j, "sql") {
            Some(sql) => match parse_delete(sql) {
                Some((table, range)) => out.push(MetaChange::Delete { table, range }),
                None => out.push(MetaChange::DeleteUnknown(sql.to_string())),
            },
            None => out.push(reread(None, "delete without sql", j)),
        },
        _ => out.push(reread(name, "unknown type", j)),
    }
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
        let p = |j: Json| parse_meta(&j);
        assert_eq!(
            p(json!({"type":"create","tableType":"super","tableName":"st"})),
            vec![MetaChange::SuperCreated("st".into())]
        );
        // buildCreateCTableJson: createList repeats the first table.
        assert_eq!(
            p(
                json!({"type":"create","tableType":"child","tableName":"c","using":"st",
                "createList":[{"tableName":"c","using":"st"},{"tableName":"c2","using":"st"}]})
            ),
            vec![
                MetaChange::Created("c".into()),
                MetaChange::Created("c2".into())
            ]
        );
        assert_eq!(
            p(json!({"type":"create","tableType":"child","tableName":"c","createList":[]})),
            vec![MetaChange::Created("c".into())]
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
            (15, TableEvent::TagsChanged),
            (5, TableEvent::SchemaChanged),
            (10, TableEvent::SchemaChanged),
            (13, TableEvent::SchemaChanged),
            (14, TableEvent::SchemaChanged),
        ] {
            assert_eq!(
                p(json!({"type":"alter","tableName":"x","alterType":t})),
                vec![MetaChange::Altered {
                    table: "x".into(),
                    event: e
                }]
            );
        }
        // Table options: printed without colName, change nothing the tracker follows.
        assert!(
            p(json!({"type":"alter","tableType":"normal","tableName":"x","alterType":9}))
                .is_empty()
        );
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
    }

    fn is_reread(c: &MetaChange, want: Option<&str>) -> bool {
        matches!(c, MetaChange::Reread { table, reason }
            if table.as_deref() == want && reason.contains("not understood"))
    }

    #[test]
    fn what_is_not_understood_is_reread_never_dropped() {
        let p = |j: Json| parse_meta(&j);
        // Unknown alter types and alters without alterType: the table is read again.
        for j in [
            json!({"type":"alter","tableName":"x","alterType":99}),
            json!({"type":"alter","tableName":"x"}),
            json!({"type":"rename","tableName":"x"}),
        ] {
            let c = p(j.clone());
            assert!(c.len() == 1 && is_reread(&c[0], Some("x")), "{j}: {c:?}");
        }
        // Nothing names a table: the whole database.
        for j in [
            json!({"tableName":"x"})
                .as_object()
                .map(|_| json!({}))
                .unwrap(),
            json!({"type":"alter","alterType":5}),
            json!({"type":"drop"}),
            json!({"type":"delete"}),
            json!({"type":"create","tableType":"child","createList":[{"using":"st"}]}),
            json!({"metas": 3}),
            json!("text"),
        ] {
            let c = p(j.clone());
            assert!(c.iter().any(|c| is_reread(c, None)), "{j}: {c:?}");
        }
        // A createList entry without a name keeps the named ones and rereads everything.
        let c = p(json!({"type":"create","tableType":"child","tableName":"a",
            "createList":[{"tableName":"a"},{"tableName":"b"},{"x":1}]}));
        assert_eq!(c[0], MetaChange::Created("a".into()));
        assert_eq!(c[1], MetaChange::Created("b".into()));
        assert!(is_reread(&c[2], None), "{c:?}");
        // A very long message is cut in the reason.
        let long = "y".repeat(5000);
        let c = p(json!({"type":"alter","tableName":long.clone(),"alterType":77}));
        match &c[0] {
            MetaChange::Reread { reason, .. } => assert!(reason.len() < 500, "{}", reason.len()),
            other => panic!("{other:?}"),
        }
    }
}
