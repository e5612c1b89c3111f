//! The local cache of decrypted snapshot objects, as restic caches its snapshots: listing a
//! repository of 1,000 backups reads one local file instead of downloading and decrypting
//! 1,000 objects.
//!
//! Layout under `<dir>/<repository id>/`: `snapshots.json`, every snapshot listed at the last
//! listing in one file (`{"version":1,"snapshots":[…]}`), and `snapshots/<backup id>`, one
//! file per snapshot stored since (a backup's commit adds its own there; the next listing
//! folds them into `snapshots.json` and deletes them). Files 0600, directories 0700: the
//! JSON names databases and endpoints. Snapshot objects never change once written, so an
//! entry is valid as long as the repository lists its id.
//!
//! The cache never decides correctness: listing always lists the repository's `snapshots/`
//! first and uses an entry only for an id it lists (a snapshot missing from the repository
//! is never listed, even if cached); a listing that finds entries of ids no longer listed
//! rewrites the file without them; an entry that does not parse, does not validate or names
//! another id is ignored (a `snapshots.json` that does not parse is ignored whole). Restore,
//! verify and prune read snapshots from the repository itself. Writes are atomic (a
//! temporary file renamed), and two processes writing at once lose at most entries, which
//! the next listing downloads again. Deleting the directory is always safe.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use taosbackup_core::{BackupId, BackupSnapshot};

/// The version of `snapshots.json`; another version is ignored (and rewritten).
const CACHE_VERSION: u32 = 1;

/// The snapshot cache of one repository.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    /// `<base>/<repository id>`.
    root: PathBuf,
    /// `<root>/snapshots`: the entries stored one by one since the last listing.
    dir: PathBuf,
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    snapshots: &'a [BackupSnapshot],
}

#[derive(Deserialize)]
struct FileIn {
    version: u32,
    snapshots: Vec<serde_json::Value>,
}

impl SnapshotCache {
    /// The cache of repository `repo_id` under `base` (the user's cache directory, e.g.
    /// `$XDG_CACHE_HOME/taosbackup`). Nothing is created until something is stored.
    pub fn new(base: &Path, repo_id: &str) -> SnapshotCache {
        let root = base.join(repo_id);
        SnapshotCache {
            dir: root.join("snapshots"),
            root,
        }
    }

    /// The directory of the entries stored one by one.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the snapshots of the last listing.
    pub fn file(&self) -> PathBuf {
        self.root.join("snapshots.json")
    }

    /// The entries of `snapshots.json` that parse and validate, by id; empty when the file
    /// is missing, of another version or does not parse.
    pub(crate) fn load(&self) -> HashMap<BackupId, BackupSnapshot> {
        let Ok(bytes) = fs::read(self.file()) else {
            return HashMap::new();
        };
        let Ok(file) = serde_json::from_slice::<FileIn>(&bytes) else {
            return HashMap::new();
        };
        if file.version != CACHE_VERSION {
            return HashMap::new();
        }
        file.snapshots
            .into_iter()
            .filter_map(|v| serde_json::from_value::<BackupSnapshot>(v).ok())
            .filter(|s| s.validate().is_ok())
            .map(|s| (s.id, s))
            .collect()
    }

    /// The snapshot `id` stored one by one, if an intact entry exists.
    pub(crate) fn get(&self, id: &BackupId) -> Option<BackupSnapshot> {
        let bytes = fs::read(self.dir.join(id.to_hex())).ok()?;
        let s: BackupSnapshot = serde_json::from_slice(&bytes).ok()?;
        (s.id == *id && s.validate().is_ok()).then_some(s)
    }

    /// Stores `snapshot` on its own (a backup's commit: one small file, whatever the
    /// number of backups). Best effort: a cache that cannot be written only costs time
    /// (the next listing downloads the snapshot again), so the error is dropped.
    pub(crate) fn put(&self, snapshot: &BackupSnapshot) {
        let _ = serde_json::to_vec(snapshot)
            .map_err(std::io::Error::other)
            .and_then(|body| write_private(&self.dir, &snapshot.id.to_hex(), &body));
    }

    /// Replaces `snapshots.json` by `snapshots` (what a listing found) and deletes the
    /// entries stored one by one. Best effort, as [`SnapshotCache::put`].
    pub(crate) fn store_all(&self, snapshots: &[BackupSnapshot]) {
        let written = serde_json::to_vec(&FileOut {
            version: CACHE_VERSION,
            snapshots,
        })
        .map_err(std::io::Error::other)
        .and_then(|body| write_private(&self.root, "snapshots.json", &body));
        if written.is_err() {
            return;
        }
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            // Every entry: of a snapshot now in the file, of one no longer listed, or of
            // one committed since this listing (the next listing downloads it again); not
            // another writer's temporary file.
            if !e.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// A unique temporary name in this process (two listings of one process may write at once).
fn tmp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `dir/name` atomically (a temporary file renamed), 0600 in a 0700 directory.
fn write_private(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let tmp = dir.join(tmp_name(name));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let result = opts
        .open(&tmp)
        .and_then(|mut f| f.write_all(body))
        .and_then(|()| fs::rename(&tmp, dir.join(name)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
pub(crate) mod tests {
    use super::*;
    use chrono::DateTime;
    use taosbackup_core::{
        BackupKind, BackupStats, BlobId, BucketWidth, Precision, SNAPSHOT_VERSION, SourceInfo,
    };

    /// A valid snapshot fixture of backup `[n; 16]`, finished at second `n + 1` (also the
    /// repository's tests' fixture).
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
            started_at: DateTime::from_timestamp(i64::from(n), 0).unwrap_or_default(),
            finished_at: DateTime::from_timestamp(i64::from(n) + 1, 0).unwrap_or_default(),
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
        assert!(c.load().is_empty());
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
    }

    #[test]
    fn one_file_holds_a_listing_and_replaces_the_single_entries() {
        let dir = tempfile::tempdir().unwrap();
        let c = SnapshotCache::new(dir.path(), "r");
        c.put(&snap(1));
        c.put(&snap(9));
        c.store_all(&[snap(1), snap(2)]);
        let loaded = c.load();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get(&snap(2).id), Some(&snap(2)));
        // The entries stored one by one are gone, the file's are kept.
        assert_eq!(fs::read_dir(c.dir()).unwrap().count(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(c.file()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A later listing without backup 1 rewrites the file without it.
        c.store_all(&[snap(2)]);
        assert_eq!(
            c.load().keys().copied().collect::<Vec<_>>(),
            vec![snap(2).id]
        );
    }

    #[test]
    fn a_damaged_file_or_entry_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let c = SnapshotCache::new(dir.path(), "r");
        c.store_all(&[snap(1), snap(2)]);
        let mut v: serde_json::Value =
            serde_json::from_slice(&fs::read(c.file()).unwrap()).unwrap();
        // An entry that does not validate (a full backup naming a parent) is dropped alone.
        v["snapshots"][1]["parent"] = serde_json::json!(snap(1).id.to_hex());
        fs::write(c.file(), serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            c.load().keys().copied().collect::<Vec<_>>(),
            vec![snap(1).id]
        );
        v["version"] = serde_json::json!(2);
        fs::write(c.file(), serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(c.load().is_empty());
        fs::write(c.file(), b"{\"version\":1,\"snapshots\":[").unwrap();
        assert!(c.load().is_empty());
    }
}
