//! The local cache of decrypted snapshot objects, as restic caches its snapshots: listing a
//! repository of 1,000 backups reads 1,000 small local files instead of downloading and
//! decrypting 1,000 objects.
//!
//! Layout: `<dir>/<repository id>/snapshots/<backup id>`, each file the snapshot's JSON
//! (0600, directories 0700: the JSON names databases and endpoints). Snapshot objects never
//! change once written, so an entry is valid as long as the repository lists its id.
//!
//! The cache never decides correctness: listing always lists the repository's `snapshots/`
//! first and uses an entry only for an id it lists (a snapshot missing from the repository
//! is never listed, even if cached); entries of ids no longer listed are deleted; an entry
//! that does not parse or names another id is ignored and rewritten. Restore, verify and
//! prune read snapshots from the repository itself. Deleting the directory is always safe.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use taosbackup_core::{BackupId, BackupSnapshot};

/// The snapshot cache of one repository.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
}

impl SnapshotCache {
    /// The cache of repository `repo_id` under `base` (the user's cache directory, e.g.
    /// `$XDG_CACHE_HOME/taosbackup`). Nothing is created until something is stored.
    pub fn new(base: &Path, repo_id: &str) -> SnapshotCache {
        SnapshotCache {
            dir: base.join(repo_id).join("snapshots"),
        }
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached snapshot `id`, if an intact entry exists.
    pub(crate) fn get(&self, id: &BackupId) -> Option<BackupSnapshot> {
        let bytes = fs::read(self.dir.join(id.to_hex())).ok()?;
        let s: BackupSnapshot = serde_json::from_slice(&bytes).ok()?;
        (s.id == *id && s.validate().is_ok()).then_some(s)
    }

    /// Stores `snapshot`. Best effort: a cache that cannot be written only costs time (the
    /// next listing downloads the snapshot again), so the error is dropped, not reported.
    pub(crate) fn put(&self, snapshot: &BackupSnapshot) {
        let _ = self.try_put(snapshot);
    }

    fn try_put(&self, snapshot: &BackupSnapshot) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let body = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
        let name = snapshot.id.to_hex();
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(&body)?;
        drop(f);
        fs::rename(&tmp, self.dir.join(name))
    }

    /// Deletes the entries of ids not in `listed`.
    pub(crate) fn retain(&self, listed: &std::collections::HashSet<BackupId>) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = name
                .parse::<BackupId>()
                .is_ok_and(|id| listed.contains(&id));
            if !keep {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use taosbackup_core::{
        BackupKind, BackupStats, BlobId, BucketWidth, Precision, SNAPSHOT_VERSION, SourceInfo,
    };

    pub(crate) fn snap(n: u8) -> BackupSnapshot {
        let id = BackupId::from_bytes([n; 16]);
        BackupSnapshot {
            version: SNAPSHOT_VERSION,
            id,
            database: "db".into(),
            kind: BackupKind::Full,
            engine: "full".into(),
            parent: None,
            chain: id,
            started_at: DateTime::from_timestamp(1, 0).unwrap_or_default(),
            finished_at: DateTime::from_timestamp(2, 0).unwrap_or_default(),
            source: SourceInfo::default(),
            bucket_width: BucketWidth::DAY,
            precision: Precision::Ms,
            tree: BlobId::from_bytes([1; 32]),
            catalog: BlobId::from_bytes([2; 32]),
            feed_positions: None,
            stats: BackupStats::default(),
        }
    }

    #[test]
    fn entries_round_trip_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = SnapshotCache::new(dir.path(), "r");
        assert!(c.get(&snap(1).id).is_none());
        c.put(&snap(1));
        c.put(&snap(2));
        assert_eq!(c.get(&snap(1).id), Some(snap(1)));
        // An entry under another id's name is not believed.
        fs::copy(
            c.dir().join(snap(1).id.to_hex()),
            c.dir().join(snap(3).id.to_hex()),
        )
        .unwrap();
        assert!(c.get(&snap(3).id).is_none());
        fs::write(c.dir().join(snap(2).id.to_hex()), b"{").unwrap();
        assert!(c.get(&snap(2).id).is_none());
        c.retain(&[snap(1).id].into_iter().collect());
        assert_eq!(fs::read_dir(c.dir()).unwrap().count(), 1);
    }
}
