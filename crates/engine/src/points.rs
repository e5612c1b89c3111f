//! Backup points: listing backups and resolving `latest`, an id or a time to one backup.
//!
//! In format 2 every backup is a self-contained snapshot, so a point is one snapshot: no
//! chain is walked or folded to restore it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use taosbackup_core::{BackupId, BackupKind, BackupSnapshot, DamagedSnapshot, Repository};

use crate::EngineError;

/// Every committed backup of the repository, oldest first (by start time, then id).
pub async fn list_backups(repo: &dyn Repository) -> Result<Vec<BackupSnapshot>, EngineError> {
    let mut out = repo
        .list_snapshots()
        .await
        .map_err(|e| EngineError::repo("listing backups", e))?;
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Every backup whose snapshot object reads back intact, oldest first, and apart the
/// backups whose snapshot object is damaged (see [`Repository::list_snapshots_lenient`]).
/// For reading commands only: `list`, and resolving the point of a restore or `show`.
pub async fn list_backups_lenient(
    repo: &dyn Repository,
) -> Result<(Vec<BackupSnapshot>, Vec<DamagedSnapshot>), EngineError> {
    let mut listing = repo
        .list_snapshots_lenient()
        .await
        .map_err(|e| EngineError::repo("listing backups", e))?;
    listing
        .snapshots
        .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    listing.damaged.sort_by_key(|d| d.id);
    Ok((listing.snapshots, listing.damaged))
}

/// Lists the backups and finds the one `point` means (of `database`, when given), returning
/// it and every readable backup. A damaged snapshot object elsewhere in the repository does
/// not stand in the way of a backup named by an id it cannot be: restoring one backup must
/// not depend on another's snapshot. `latest` and times are refused while a snapshot is
/// damaged (the damaged one may be the answer), naming it, as is an id prefix it matches.
pub async fn resolve_point(
    repo: &dyn Repository,
    database: Option<&str>,
    point: &BackupPoint,
) -> Result<(BackupSnapshot, Vec<BackupSnapshot>), EngineError> {
    let (all, damaged) = list_backups_lenient(repo).await?;
    let blocking = damaged.into_iter().find(|d| match point {
        BackupPoint::Id(prefix) => d.id.to_hex().starts_with(prefix.as_str()),
        BackupPoint::Latest | BackupPoint::Time(_) => true,
    });
    if let Some(d) = blocking {
        let context = match point {
            BackupPoint::Id(_) => format!(
                "resolving {point}: the snapshot object of backup {} is damaged; run \
                 `taosbackup verify`",
                d.id
            ),
            _ => format!(
                "resolving {point}: the snapshot object of backup {} is damaged, so which \
                 backup {point} means cannot be known; restore a backup by its id \
                 (`taosbackup list` shows the readable ones) or run `taosbackup verify`",
                d.id
            ),
        };
        return Err(EngineError::repo(context, d.error));
    }
    let listed = find_point(&all, database, point)?.clone();
    Ok((listed, all))
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

/// Finds the backup `point` means among `backups` (of `database` only, when given).
pub fn find_point<'a>(
    backups: &'a [BackupSnapshot],
    database: Option<&str>,
    point: &BackupPoint,
) -> Result<&'a BackupSnapshot, EngineError> {
    let of_db = |m: &&BackupSnapshot| database.is_none_or(|d| m.database == d);
    let candidates: Vec<&BackupSnapshot> = backups.iter().filter(of_db).collect();
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
    let newest = |it: Vec<&'a BackupSnapshot>| {
        it.into_iter()
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)))
    };
    match point {
        BackupPoint::Latest => newest(candidates).ok_or_else(|| EngineError::NoBackup {
            what: format!("latest{scope}"),
            hint: "the repository holds no backup; run `taosbackup backup` first".into(),
        }),
        BackupPoint::Id(prefix) => {
            let hits: Vec<&BackupSnapshot> = candidates
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

/// The lineage of `target` among `backups`: its parents as far as they are still in the
/// repository and back to the first full backup, oldest first, ending with `target`.
/// Informational (format 2 restores `target` alone).
pub fn lineage<'a>(backups: &'a [BackupSnapshot], target: &'a BackupSnapshot) -> Vec<BackupId> {
    let by_id: std::collections::HashMap<BackupId, &BackupSnapshot> =
        backups.iter().map(|b| (b.id, b)).collect();
    let mut out = vec![target.id];
    let mut cur = target;
    while cur.kind == BackupKind::Incremental && out.len() <= backups.len() {
        match cur.parent.and_then(|p| by_id.get(&p)) {
            Some(p) => {
                out.push(p.id);
                cur = p;
            }
            None => break,
        }
    }
    out.reverse();
    out
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
