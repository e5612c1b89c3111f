//! Optional mirror of every vgroup's log into TDengine-format vnode WAL directories, for the
//! `wal` change feed: `<dir>/vnode/vnode<vgId>/{vnode.json, wal/meta-ver<N>, <ver>.log/.idx}`,
//! written with [`crate::walfile`] (the format of `docs/wal-format.md`).
//!
//! Enabled with [`crate::Store::enable_wal_files`]. Each vgroup's log entry `v` becomes WAL
//! record `v` of `vnode<vgroup>`: rows → `TDMT_VND_SUBMIT` (table uid + row timestamps; SQL
//! inserts in row format, raw-block writes in column format), deletes → `TDMT_VND_DELETE` as
//! pre-processing leaves it (uid + range), CREATE/DROP/ALTER TABLE and super-table DDL → their
//! vnode messages with the uids `information_schema.ins_tables` reports. When the log's first
//! version moves forward (`PURGE WAL`, retention), whole segments below it are deleted as
//! TDengine's `walEndSnapshot` does; a purge of everything rolls first (`walBeginSnapshot`),
//! so the first version on disk becomes the log's end. Retention applied while polling is
//! mirrored on the next write or purge, so the files may keep more than the log, never less.

use std::fs;
use std::path::PathBuf;

use crate::error::{EmuError, code};
use crate::types::Precision;
use crate::walfile::{
    CreateKind, CreateTable, Msg, RowFormat, SubmitTable, VnodeOptions, VnodeWal,
};

/// Segment size [`crate::Store::enable_wal_files`] uses: small, so that tests see rotation
/// (TDengine's default `WAL_SEGMENT_SIZE` is 1 GiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 1024;

/// Where and how the WAL files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFilesConfig {
    /// TDengine's dataDir: vnodes go to `<root>/vnode/vnode<vgId>`.
    pub root: PathBuf,
    /// Roll to a new segment once the current one exceeds this many bytes.
    pub segment_size: u64,
}

/// One vgroup's WAL directory.
#[derive(Debug)]
pub struct VnodeFiles {
    wal: VnodeWal,
    /// Set after a failed write: the files no longer match the log.
    failed: Option<String>,
}

fn wal_error(what: String) -> EmuError {
    EmuError::new(code::WAL_FILE_CORRUPTED, what)
}

impl VnodeFiles {
    /// Creates `<root>/vnode/vnode<vgroup>` for database `db`, its first record to be
    /// `first_version`. Refuses an existing vnode directory rather than appending to stale
    /// segments.
    pub fn create(
        cfg: &WalFilesConfig,
        vgroup: u32,
        db: &str,
        precision: Precision,
        first_version: i64,
    ) -> Result<VnodeFiles, EmuError> {
        let dir = cfg.root.join("vnode").join(format!("vnode{vgroup}"));
        if dir.exists() {
            return Err(wal_error(format!(
                "cannot create the WAL files of vgroup {vgroup}: {} already exists; give the \
                 emulator an empty WAL directory",
                dir.display()
            )));
        }
        let vg_id = i32::try_from(vgroup).map_err(|_| {
            wal_error(format!(
                "cannot create the WAL files of vgroup {vgroup}: the id does not fit a vgId"
            ))
        })?;
        let opts = VnodeOptions {
            seg_size: cfg.segment_size,
            first_version,
            encrypted: false,
            precision: i32::from(precision.code()),
        };
        let wal = VnodeWal::create(&cfg.root, vg_id, db, opts).map_err(|e| {
            wal_error(format!(
                "cannot create the WAL files of vgroup {vgroup} under {}: {e}",
                dir.display()
            ))
        })?;
        Ok(VnodeFiles { wal, failed: None })
    }

    /// Fails when an earlier write failed (the files would have a hole).
    pub fn check(&self) -> Result<(), EmuError> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(wal_error(format!(
                "the WAL files of vgroup {} are out of step with the log since an earlier \
                 failure ({why}); restart the emulator with an empty WAL directory",
                self.wal.vg_id()
            ))),
        }
    }

    fn fail(&mut self, what: String) -> EmuError {
        self.failed = Some(what.clone());
        wal_error(what)
    }

    /// Writes `msg` as record `version`, which must be the next one.
    pub fn append(&mut self, version: i64, msg: &Msg) -> Result<(), EmuError> {
        self.check()?;
        let expected = self.wal.last_version() + 1;
        if version != expected {
            return Err(self.fail(format!(
                "log entry {version} of vgroup {} does not follow WAL record {} on disk",
                self.wal.vg_id(),
                expected - 1
            )));
        }
        match self.wal.append(msg) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(format!(
                "cannot write WAL record {version} to {}: {e}",
                self.wal.wal_dir().display()
            ))),
        }
    }

    /// Deletes the segments wholly below `begin`, the log's first version (`end` is its last
    /// version + 1). Nothing happens when nothing below `begin` is on disk.
    pub fn purge_below(&mut self, begin: i64, end: i64) -> Result<(), EmuError> {
        self.check()?;
        let first_on_disk = match self.wal.first_version() {
            f if f >= 0 => f,
            _ => self.wal.last_version() + 1,
        };
        if begin <= first_on_disk {
            return Ok(());
        }
        let last = self.wal.last_version();
        let open_has_records = self.wal.segments().last().is_some_and(|f| *f <= last);
        let r = (|| {
            if begin >= end && open_has_records {
                self.wal.roll()?;
            }
            self.wal.purge_through(begin - 1)
        })();
        r.map_err(|e| {
            self.fail(format!(
                "cannot purge the WAL of vgroup {} below version {begin} in {}: {e}",
                self.wal.vg_id(),
                self.wal.wal_dir().display()
            ))
        })
    }

    /// The vnode directory.
    #[cfg(test)]
    pub fn vnode_dir(&self) -> &std::path::Path {
        self.wal.vnode_dir()
    }

    /// Deletes the vnode directory (DROP DATABASE).
    pub fn remove(self) -> Result<(), EmuError> {
        let dir = self.wal.vnode_dir().to_path_buf();
        drop(self.wal);
        fs::remove_dir_all(&dir).map_err(|e| {
            wal_error(format!(
                "cannot remove the vnode directory {} of a dropped database: {e}",
                dir.display()
            ))
        })
    }
}

/// `TDMT_VND_CREATE_TABLE` for one table; `stable` is `(name, uid)` of a child's super table.
pub fn create_table(name: &str, uid: i64, stable: Option<(&str, i64)>) -> Msg {
    let kind = match stable {
        Some((stable, suid)) => CreateKind::Child {
            stable: stable.to_string(),
            suid,
        },
        None => CreateKind::Normal,
    };
    Msg::CreateTables(vec![CreateTable {
        name: name.to_string(),
        uid,
        kind,
    }])
}

/// `TDMT_VND_SUBMIT` of one table's rows (NULL timestamps, which no stored row has, are
/// left out).
pub fn submit(uid: i64, suid: i64, format: RowFormat, timestamps: Vec<i64>) -> Msg {
    Msg::Submit(vec![SubmitTable {
        uid,
        suid,
        format,
        timestamps,
        auto_create: None,
    }])
}

/// `TDMT_VND_DELETE` of rows `start ..= end` of one table, as pre-processing leaves it.
pub fn delete(db: &str, table: &str, uid: i64, suid: i64, start: i64, end: i64) -> Msg {
    Msg::Delete {
        suid: suid as u64,
        uids: vec![uid as u64],
        start,
        end,
        table_fname: format!("1.{db}.{table}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ts: i64) -> Msg {
        submit(9, 0, RowFormat::Rows, vec![ts])
    }

    fn seg_files(v: &VnodeFiles) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(v.vnode_dir().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        n.sort();
        n
    }

    #[test]
    fn versions_follow_the_log_and_purge_deletes_whole_segments() {
        let tmp = std::env::temp_dir().join(format!("wal-files-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let cfg = WalFilesConfig {
            root: tmp.clone(),
            segment_size: 100,
        };
        let mut v = VnodeFiles::create(&cfg, 3, "db", Precision::Millisecond, 5).unwrap();
        // A second mirror of the same vnode would append to stale segments: refused.
        assert!(VnodeFiles::create(&cfg, 3, "db", Precision::Millisecond, 5).is_err());
        // Nothing on disk below 5: no-op.
        v.purge_below(5, 5).unwrap();
        for ver in 5..11 {
            v.append(ver, &rows(ver)).unwrap();
        }
        // Records of over 100 bytes with a 100-byte segment size: one record a segment.
        let segs = seg_files(&v);
        assert_eq!(segs.len(), 6, "{segs:?}");
        // A purge below 7 deletes the segments of versions 5 and 6 only.
        v.purge_below(7, 11).unwrap();
        assert_eq!(seg_files(&v)[0], format!("{:020}.log", 7));
        assert_eq!(seg_files(&v).len(), 4);
        // Purging everything rolls, so nothing below the end is left.
        v.purge_below(11, 11).unwrap();
        assert_eq!(seg_files(&v), vec![format!("{:020}.log", 11)]);
        v.append(11, &rows(11)).unwrap();
        // Out of step: refused, and every later write too.
        let err = v.append(13, &rows(13)).unwrap_err();
        assert!(err.message.contains("does not follow"), "{err}");
        let err = v.append(12, &rows(12)).unwrap_err();
        assert!(err.message.contains("out of step"), "{err}");
        v.remove().unwrap();
        assert!(!tmp.join("vnode/vnode3").exists());
        let _ = fs::remove_dir_all(&tmp);
    }
}
