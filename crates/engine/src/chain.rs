//! Backup chains: listing backups, resolving a backup point, and folding a chain into the
//! state of the database at that point.
//!
//! A full backup starts a chain; each incremental names its parent. Folding walks the chain
//! from its full backup forward: for every table and bucket the newest record wins (a block
//! version or a tombstone), a dropped table stays dropped until a later backup records it
//! again, and the catalog is the one of the point itself.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use taosbackup_core::{
    BackupId, BackupKind, BlockRecord, BlockRef, CatalogSnapshot, Manifest, Repository, TableRecord,
};

use crate::EngineError;

/// Every committed backup of the repository, oldest first (by start time, then id).
pub async fn list_backups(repo: &dyn Repository) -> Result<Vec<Manifest>, EngineError> {
    let ids = repo
        .list_manifests()
        .await
        .map_err(|e| EngineError::repo("listing backups", e))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let m = repo
            .load_manifest(&id)
            .await
            .map_err(|e| EngineError::repo(format!("loading the manifest of backup {id}"), e))?;
        out.push(m);
    }
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Which backup a restore (or `show`) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupPoint {
    /// The newest backup.
    Latest,
    /// A backup id, or a unique prefix of at least 8 hex digits.
    Id(String),
    /// The newest backup that finished at or before this time.
    Time(DateTime<Utc>),
}

impl fmt::Display for BackupPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupPoint::Latest => f.write_str("latest"),
            BackupPoint::Id(id) => write!(f, "backup {id}"),
            BackupPoint::Time(t) => write!(f, "time {}", t.to_rfc3339()),
        }
    }
}

impl FromStr for BackupPoint {
    type Err = EngineError;

    /// `latest`; a backup id or a prefix of ≥ 8 hex digits; a time: RFC 3339
    /// (`2026-11-23T10:00:00Z`, `…+08:00`) or `YYYY-MM-DD[ HH:MM[:SS]]` / `YYYY-MM-DDTHH:MM[:SS]`
    /// taken as UTC.
    fn from_str(s: &str) -> Result<Self, EngineError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Ok(BackupPoint::Latest);
        }
        if s.len() >= 8 && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(BackupPoint::Id(s.to_ascii_lowercase()));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(BackupPoint::Time(t.with_timezone(&Utc)));
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
        ] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                return Ok(BackupPoint::Time(Utc.from_utc_datetime(&t)));
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            if let Some(t) = d.and_hms_opt(23, 59, 59) {
                return Ok(BackupPoint::Time(Utc.from_utc_datetime(&t)));
            }
        }
        Err(EngineError::InvalidRequest(format!(
            "invalid backup point {s:?}: use `latest`, a backup id (at least 8 hex digits), or a \
             time like 2026-11-23T10:00:00Z or \"2026-11-23 10:00\" (UTC)"
        )))
    }
}

/// Finds the backup `point` means among `manifests` (of `database` only, when given).
pub fn find_point<'a>(
    manifests: &'a [Manifest],
    database: Option<&str>,
    point: &BackupPoint,
) -> Result<&'a Manifest, EngineError> {
    let of_db = |m: &&Manifest| database.is_none_or(|d| m.database == d);
    let candidates: Vec<&Manifest> = manifests.iter().filter(of_db).collect();
    let scope = database
        .map(|d| format!(" of database {d}"))
        .unwrap_or_default();
    if database.is_none() && !matches!(point, BackupPoint::Id(_)) {
        let mut dbs: Vec<&str> = candidates.iter().map(|m| m.database.as_str()).collect();
        dbs.sort_unstable();
        dbs.dedup();
        if dbs.len() > 1 {
            return Err(EngineError::InvalidRequest(format!(
                "the repository holds backups of several databases ({}); name one with --database",
                dbs.join(", ")
            )));
        }
    }
    let newest = |it: Vec<&'a Manifest>| {
        it.into_iter()
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)))
    };
    match point {
        BackupPoint::Latest => newest(candidates).ok_or_else(|| EngineError::NoBackup {
            what: format!("latest{scope}"),
            hint: "the repository holds no backup; run `taosbackup backup` first".into(),
        }),
        BackupPoint::Id(prefix) => {
            let hits: Vec<&Manifest> = candidates
                .into_iter()
                .filter(|m| m.id.to_hex().starts_with(prefix.as_str()))
                .collect();
            match hits.len() {
                0 => Err(EngineError::NoBackup {
                    what: format!("id {prefix}{scope}"),
                    hint: "list the backups with `taosbackup list`".into(),
                }),
                1 => Ok(hits[0]),
                count => Err(EngineError::AmbiguousBackupId {
                    prefix: prefix.clone(),
                    count,
                }),
            }
        }
        BackupPoint::Time(t) => newest(
            candidates
                .into_iter()
                .filter(|m| m.finished_at <= *t)
                .collect(),
        )
        .ok_or_else(|| EngineError::NoBackup {
            what: format!("time {}{scope}", t.to_rfc3339()),
            hint: "no backup had finished by then; list the backups with `taosbackup list`".into(),
        }),
    }
}

/// The chain of the backup `point` means: from its full backup to it, oldest first.
pub fn resolve_point<'a>(
    manifests: &'a [Manifest],
    database: Option<&str>,
    point: &BackupPoint,
) -> Result<Vec<&'a Manifest>, EngineError> {
    let target = find_point(manifests, database, point)?;
    chain_of(manifests, target)
}

/// The chain ending at `target`, oldest first.
pub fn chain_of<'a>(
    manifests: &'a [Manifest],
    target: &'a Manifest,
) -> Result<Vec<&'a Manifest>, EngineError> {
    let by_id: HashMap<BackupId, &Manifest> = manifests.iter().map(|m| (m.id, m)).collect();
    let broken = |reason: String| EngineError::BrokenChain {
        backup: target.id.to_hex(),
        reason,
    };
    let mut chain = vec![target];
    let mut cur = target;
    while cur.kind == BackupKind::Incremental {
        let Some(parent_id) = cur.parent else {
            return Err(broken(format!("incremental {} has no parent", cur.id)));
        };
        let Some(parent) = by_id.get(&parent_id) else {
            return Err(broken(format!(
                "parent {parent_id} of {} is missing from the repository",
                cur.id
            )));
        };
        if parent.chain != cur.chain || parent.database != cur.database {
            return Err(broken(format!(
                "parent {parent_id} of {} belongs to another chain or database",
                cur.id
            )));
        }
        if chain.len() > manifests.len() {
            return Err(broken("the parent links form a cycle".into()));
        }
        chain.push(parent);
        cur = parent;
    }
    if cur.id != target.chain {
        return Err(broken(format!(
            "the chain starts at {} but the backups name {} as its full backup",
            cur.id, target.chain
        )));
    }
    chain.reverse();
    Ok(chain)
}

/// The database as of one backup point: the point's catalog and, per table, the newest
/// stored version of every bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The catalog at the point.
    pub catalog: CatalogSnapshot,
    /// Table → bucket → the block holding its rows. Tables without blocks are present with an
    /// empty map if they exist in the catalog.
    pub tables: BTreeMap<String, BTreeMap<i64, BlockRef>>,
}

impl Folded {
    /// Rows recorded for `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .get(table)
            .map(|b| b.values().map(|r| r.rows).sum())
            .unwrap_or(0)
    }
}

/// Folds a chain (oldest first, as [`resolve_point`] returns it).
pub fn fold(chain: &[&Manifest]) -> Result<Folded, EngineError> {
    let Some(last) = chain.last() else {
        return Err(EngineError::InvalidRequest("empty backup chain".into()));
    };
    let mut tables: BTreeMap<String, BTreeMap<i64, BlockRef>> = BTreeMap::new();
    for m in chain {
        if m.kind == BackupKind::Full {
            tables.clear();
        }
        for (name, rec) in &m.tables {
            match rec {
                TableRecord::Dropped => {
                    tables.remove(name);
                }
                TableRecord::Present { blocks } => {
                    let t = tables.entry(name.clone()).or_default();
                    for (bucket, b) in blocks {
                        match b {
                            BlockRecord::Data(r) => {
                                t.insert(*bucket, *r);
                            }
                            BlockRecord::Deleted => {
                                t.remove(bucket);
                            }
                        }
                    }
                }
            }
        }
    }
    // The point's catalog is authoritative for which tables exist.
    let catalog = last.catalog.clone();
    let mut out = BTreeMap::new();
    for t in &catalog.tables {
        out.insert(t.name.clone(), tables.remove(&t.name).unwrap_or_default());
    }
    Ok(Folded {
        catalog,
        tables: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse() {
        assert_eq!(
            "latest".parse::<BackupPoint>().unwrap(),
            BackupPoint::Latest
        );
        assert_eq!(
            "ABCDEF01".parse::<BackupPoint>().unwrap(),
            BackupPoint::Id("abcdef01".into())
        );
        let t = "2026-11-23T10:00:00Z".parse::<BackupPoint>().unwrap();
        assert_eq!(
            t,
            BackupPoint::Time(Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap())
        );
        assert_eq!("2026-11-23 10:00".parse::<BackupPoint>().unwrap(), t);
        assert_eq!(
            "2026-11-23T12:00:00+02:00".parse::<BackupPoint>().unwrap(),
            t
        );
        for bad in [
            "",
            "yesterday",
            "abc",
            "2026-13-01",
            "0123456789abcdef0123456789abcdef00",
        ] {
            assert!(bad.parse::<BackupPoint>().is_err(), "{bad}");
        }
    }
}
