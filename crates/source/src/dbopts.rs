//! Database options across server versions: `SHOW CREATE DATABASE` parsed into options, and
//! re-emitted as a `CREATE DATABASE` the target server's version accepts (fidelity audit A9).
//!
//! The option names each version's grammar accepts (`db_options` of
//! `source/libs/parser/inc/sql.y`):
//! - 3.3.0–3.3.5: the 3.2 set plus `S3_CHUNKSIZE`, `S3_KEEPLOCAL`, `S3_COMPACT`,
//!   `ENCRYPT_ALGORITHM` (read in a `sql.y` of that era: `S3_CHUNKSIZE NK_INTEGER`, no
//!   `COMPACT_*`);
//! - 3.3.6–3.3.x: `S3_CHUNKSIZE` became `S3_CHUNKPAGES`; `COMPACT_INTERVAL`,
//!   `COMPACT_TIME_RANGE`, `COMPACT_TIME_OFFSET` and `DNODES` were added (the 3.3.7-era
//!   tokenizer has these keywords and no `S3_CHUNKSIZE`);
//! - 3.4: the `S3_*` options are named `SS_*` (`SS_CHUNKPAGES`, `SS_KEEPLOCAL`,
//!   `SS_COMPACT`; TDengine 3.4's `CREATE DATABASE` documentation and its `SHOW CREATE
//!   DATABASE` example).
//!
//! An option the target does not know is dropped; a renamed one is re-emitted under the
//! target's name. Both are reported ([`OptionChange`]) so the restore output can say so.

use serde::Serialize;

use crate::sql::ident;

/// The option families whose names differ between versions, as (3.3.0, 3.3.6, 3.4) names.
const RENAMED: &[[&str; 3]] = &[
    ["S3_CHUNKSIZE", "S3_CHUNKPAGES", "SS_CHUNKPAGES"],
    ["S3_KEEPLOCAL", "S3_KEEPLOCAL", "SS_KEEPLOCAL"],
    ["S3_COMPACT", "S3_COMPACT", "SS_COMPACT"],
];

/// Options every 3.x version since 3.2 accepts.
const COMMON: &[&str] = &[
    "BUFFER",
    "CACHEMODEL",
    "CACHESIZE",
    "COMP",
    "DURATION",
    "MAXROWS",
    "MINROWS",
    "KEEP",
    "PAGES",
    "PAGESIZE",
    "TSDB_PAGESIZE",
    "PRECISION",
    "REPLICA",
    "VGROUPS",
    "SINGLE_STABLE",
    "RETENTIONS",
    "SCHEMALESS",
    "WAL_LEVEL",
    "WAL_FSYNC_PERIOD",
    "WAL_RETENTION_PERIOD",
    "WAL_RETENTION_SIZE",
    "WAL_ROLL_PERIOD",
    "WAL_SEGMENT_SIZE",
    "STT_TRIGGER",
    "TABLE_PREFIX",
    "TABLE_SUFFIX",
    "KEEP_TIME_OFFSET",
    "ENCRYPT_ALGORITHM",
];

/// Options added in 3.3.6.
const SINCE_3_3_6: &[&str] = &[
    "COMPACT_INTERVAL",
    "COMPACT_TIME_RANGE",
    "COMPACT_TIME_OFFSET",
    "DNODES",
];

/// Which generation of option names a server version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Generation {
    /// 3.3.0 – 3.3.5 (and older 3.x).
    V3_3_0 = 0,
    /// 3.3.6 – 3.3.x.
    V3_3_6 = 1,
    /// 3.4 and newer.
    V3_4 = 2,
}

impl Generation {
    /// The generation of a version string such as `3.3.6.0` (unparseable parts count as 0).
    pub(crate) fn of(version: &str) -> Generation {
        let mut parts = version
            .trim()
            .split('.')
            .map(|p| p.trim().parse::<u32>().unwrap_or(0));
        let v = [
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ];
        if v >= [3, 4, 0] {
            Generation::V3_4
        } else if v >= [3, 3, 6] {
            Generation::V3_3_6
        } else {
            Generation::V3_3_0
        }
    }

    /// Whether this generation's grammar takes option `name` (upper case).
    pub(crate) fn accepts(self, name: &str) -> bool {
        COMMON.contains(&name)
            || (self >= Generation::V3_3_6 && SINCE_3_3_6.contains(&name))
            || RENAMED.iter().any(|r| r[self as usize] == name)
    }

    /// This generation's name of `name`, when it is a renamed option.
    fn rename(self, name: &str) -> Option<&'static str> {
        RENAMED
            .iter()
            .find(|r| r.contains(&name))
            .map(|r| r[self as usize])
    }
}

/// Whether `word` is a database option name of any version (for the statement tests).
#[cfg(test)]
pub(crate) fn is_option_keyword(word: &str) -> bool {
    let w = word.to_ascii_uppercase();
    COMMON.contains(&w.as_str())
        || SINCE_3_3_6.contains(&w.as_str())
        || RENAMED.iter().any(|r| r.contains(&w.as_str()))
}

/// One option of a `CREATE DATABASE`: its name (upper case) and its value as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DbOption {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// A database option the restore could not replay as the backup had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionChange {
    /// The option as the source server printed it (`S3_CHUNKPAGES 131072`).
    pub source: String,
    /// What was sent instead (`SS_CHUNKPAGES 131072`), or `None` when dropped.
    pub target: Option<String>,
    /// Why.
    pub reason: String,
}

/// Parses `CREATE DATABASE [IF NOT EXISTS] <name> OPT value …` as `SHOW CREATE DATABASE`
/// prints it (`source/libs/command/src/command.c`): a value is a quoted string, or a run of
/// numbers, durations and commas (`KEEP 3650d,3650d,3650d`, `COMPACT_TIME_RANGE 0d,0d`).
pub(crate) fn parse(ddl: &str) -> Result<Vec<DbOption>, String> {
    let b = ddl.as_bytes();
    let upper = ddl.to_ascii_uppercase();
    let start = upper
        .find("CREATE DATABASE")
        .ok_or_else(|| "the DDL is not a CREATE DATABASE statement".to_string())?;
    let mut i = start + "CREATE DATABASE".len();
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if upper[i..].starts_with("IF NOT EXISTS") {
        i += "IF NOT EXISTS".len();
        skip_ws(&mut i);
    }
    // The name: backquoted or bare.
    if b.get(i) == Some(&b'`') {
        i += 1;
        while i < b.len() && b[i] != b'`' {
            i += 1;
        }
        i += 1;
    } else {
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    let mut out: Vec<DbOption> = Vec::new();
    loop {
        skip_ws(&mut i);
        if i >= b.len() || b[i] == b';' {
            break;
        }
        let s = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if s == i {
            return Err(format!("unexpected text at byte {s}: {:?}", &ddl[s..]));
        }
        let name = upper[s..i].to_string();
        skip_ws(&mut i);
        let vs = i;
        if b.get(i) == Some(&b'\'') || b.get(i) == Some(&b'"') {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b',' | b'-' | b'.' | b':'))
            {
                i += 1;
            }
        }
        if vs == i || i > b.len() {
            return Err(format!("option {name} has no value"));
        }
        out.push(DbOption {
            name,
            value: ddl[vs..i].trim().to_string(),
        });
    }
    Ok(out)
}

/// The `CREATE DATABASE` for `target` on a server of generation `to`, from the options of
/// `ddl` (printed by the source server), with KEEP replaced by `keep` when given. Returns the
/// statement and what had to change.
pub(crate) fn recreate(
    ddl: &str,
    target: &str,
    to: Generation,
    keep: Option<&str>,
) -> Result<(String, Vec<OptionChange>), String> {
    let options = parse(ddl)?;
    let mut sql = format!("CREATE DATABASE {}", ident(target));
    let mut changes = Vec::new();
    let mut has_keep = false;
    for o in options {
        let mut name = o.name.clone();
        let mut value = o.value.clone();
        if name == "KEEP" {
            has_keep = true;
            if let Some(k) = keep {
                value = k.to_string();
            }
        }
        if !to.accepts(&name) {
            match to.rename(&name) {
                Some(new) if to.accepts(new) => {
                    changes.push(OptionChange {
                        source: format!("{} {}", o.name, o.value),
                        target: Some(format!("{new} {value}")),
                        reason: format!("the target server calls this option {new}"),
                    });
                    name = new.to_string();
                }
                _ => {
                    changes.push(OptionChange {
                        source: format!("{} {}", o.name, o.value),
                        target: None,
                        reason: "the target server's version does not have this option".into(),
                    });
                    continue;
                }
            }
        }
        sql.push(' ');
        sql.push_str(&name);
        sql.push(' ');
        sql.push_str(&value);
    }
    if let (Some(k), false) = (keep, has_keep) {
        sql.push_str(" KEEP ");
        sql.push_str(k);
    }
    Ok((sql, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V336: &str = "CREATE DATABASE `power` BUFFER 256 CACHESIZE 1 CACHEMODEL 'none' COMP 2 \
        DURATION 10d WAL_FSYNC_PERIOD 3000 MAXROWS 4096 MINROWS 100 STT_TRIGGER 2 KEEP \
        3650d,3650d,3650d PAGES 256 PAGESIZE 4 PRECISION 'us' REPLICA 1 WAL_LEVEL 1 VGROUPS 2 \
        SINGLE_STABLE 0 TABLE_PREFIX 0 TABLE_SUFFIX 0 TSDB_PAGESIZE 4 WAL_RETENTION_PERIOD \
        3600 WAL_RETENTION_SIZE 0 KEEP_TIME_OFFSET 0 ENCRYPT_ALGORITHM 'none' S3_CHUNKPAGES \
        131072 S3_KEEPLOCAL 525600m S3_COMPACT 1 COMPACT_INTERVAL 0d COMPACT_TIME_RANGE 0d,0d \
        COMPACT_TIME_OFFSET 0h";

    #[test]
    fn parses_what_show_create_database_prints() {
        let o = parse(V336).unwrap();
        assert_eq!(o.len(), 30);
        assert_eq!(
            o[0],
            DbOption {
                name: "BUFFER".into(),
                value: "256".into()
            }
        );
        let keep = o.iter().find(|o| o.name == "KEEP").unwrap();
        assert_eq!(keep.value, "3650d,3650d,3650d");
        let p = o.iter().find(|o| o.name == "PRECISION").unwrap();
        assert_eq!(p.value, "'us'");
        assert!(parse("DROP DATABASE x").is_err());
        assert_eq!(parse("create database if not exists d").unwrap(), vec![]);
        assert_eq!(
            parse("CREATE DATABASE d WAL_RETENTION_PERIOD -1 COMMENT 'a b'").unwrap(),
            vec![
                DbOption {
                    name: "WAL_RETENTION_PERIOD".into(),
                    value: "-1".into()
                },
                DbOption {
                    name: "COMMENT".into(),
                    value: "'a b'".into()
                },
            ]
        );
    }

    #[test]
    fn same_version_replays_unchanged() {
        let (sql, changes) = recreate(V336, "p2", Generation::V3_3_6, None).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(sql, V336.replace("`power`", "`p2`"));
    }

    #[test]
    fn newer_target_renames_and_older_target_drops() {
        let (sql, changes) = recreate(V336, "p", Generation::V3_4, Some("36500d")).unwrap();
        assert!(
            sql.contains(" SS_CHUNKPAGES 131072 SS_KEEPLOCAL 525600m SS_COMPACT 1 "),
            "{sql}"
        );
        assert!(sql.contains(" KEEP 36500d "), "{sql}");
        assert!(!sql.contains("S3_"), "{sql}");
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].source, "S3_CHUNKPAGES 131072");
        assert_eq!(changes[0].target.as_deref(), Some("SS_CHUNKPAGES 131072"));

        let (sql, changes) = recreate(V336, "p", Generation::V3_3_0, None).unwrap();
        assert!(sql.contains(" S3_CHUNKSIZE 131072 "), "{sql}");
        assert!(!sql.contains("COMPACT_"), "{sql}");
        let dropped: Vec<&str> = changes
            .iter()
            .filter(|c| c.target.is_none())
            .map(|c| c.source.as_str())
            .collect();
        assert_eq!(
            dropped,
            vec![
                "COMPACT_INTERVAL 0d",
                "COMPACT_TIME_RANGE 0d,0d",
                "COMPACT_TIME_OFFSET 0h"
            ]
        );
        // An unknown option of a newer server is dropped, and said.
        let (sql, changes) = recreate(
            "CREATE DATABASE d FUTURE_OPT 3 KEEP 10d",
            "d",
            Generation::V3_4,
            None,
        )
        .unwrap();
        assert_eq!(sql, "CREATE DATABASE `d` KEEP 10d");
        assert_eq!(changes.len(), 1);
        // KEEP appended when the DDL has none.
        let (sql, _) = recreate("create database d", "x", Generation::V3_3_6, Some("10d")).unwrap();
        assert_eq!(sql, "CREATE DATABASE `x` KEEP 10d");
    }

    #[test]
    fn generations() {
        assert_eq!(Generation::of("3.3.5.2"), Generation::V3_3_0);
        assert_eq!(Generation::of("3.3.6.0"), Generation::V3_3_6);
        assert_eq!(Generation::of("3.4.0.0"), Generation::V3_4);
        assert_eq!(Generation::of("garbage"), Generation::V3_3_0);
    }
}
