//! [`Repository`] in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, Repository, RepositoryError, RepositoryErrorKind,
    ShardEncoding,
};

use super::{FaultPoint, Faults, lock};

/// A repository in memory. Blob ids are BLAKE3 hashes of the data; blobs stored since the
/// last commit are pending (readable through this handle, lost by [`MemoryRepository::crash`])
/// until [`Repository::commit_snapshot`] makes them durable with the snapshot.
#[derive(Debug, Default)]
pub struct MemoryRepository {
    state: Mutex<State>,
    /// The fault script of this repository.
    pub faults: Faults,
}

#[derive(Debug, Default)]
struct State {
    durable: HashMap<BlobId, Vec<u8>>,
    pending: HashMap<BlobId, Vec<u8>>,
    snapshots: BTreeMap<BackupId, BackupSnapshot>,
    bytes_stored: u64,
}

fn repo_err(kind: RepositoryErrorKind, msg: String) -> RepositoryError {
    RepositoryError::new(kind, false, msg)
}

impl MemoryRepository {
    /// An empty repository.
    pub fn new() -> MemoryRepository {
        MemoryRepository::default()
    }

    /// Loses every blob not yet made durable by a commit, as a process dying mid-backup does.
    pub fn crash(&self) {
        lock(&self.state).pending.clear();
    }

    /// Removes backup `id`'s snapshot (as `forget` does; its blobs stay until a GC, which
    /// this fake does not need). Whether it existed.
    pub fn forget(&self, id: &BackupId) -> bool {
        lock(&self.state).snapshots.remove(id).is_some()
    }

    /// Flips one byte of blob `id`: a later read must fail as corrupt. Whether it existed.
    pub fn corrupt(&self, id: &BlobId) -> bool {
        let mut s = lock(&self.state);
        let s = &mut *s;
        match s.durable.get_mut(id).or_else(|| s.pending.get_mut(id)) {
            Some(b) if !b.is_empty() => {
                b[0] ^= 0xff;
                true
            }
            _ => false,
        }
    }

    /// Number of durable blobs.
    pub fn blob_count(&self) -> usize {
        lock(&self.state).durable.len()
    }
}

#[async_trait]
impl Repository for MemoryRepository {
    /// Binary, as a new repository's: the engine's tests write what production writes.
    fn shard_encoding(&self) -> ShardEncoding {
        ShardEncoding::Binary
    }

    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.faults.repository(FaultPoint::StoreBlob)?;
        let id = BlobId::from_bytes(*blake3::hash(data).as_bytes());
        let mut s = lock(&self.state);
        if !s.durable.contains_key(&id) && !s.pending.contains_key(&id) {
            s.bytes_stored += data.len() as u64;
            s.pending.insert(id, data.to_vec());
        }
        Ok(id)
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        self.faults.repository(FaultPoint::ReadBlob)?;
        let s = lock(&self.state);
        let data = s
            .durable
            .get(id)
            .or_else(|| s.pending.get(id))
            .ok_or_else(|| repo_err(RepositoryErrorKind::NotFound, format!("blob {id}")))?;
        if blake3::hash(data).as_bytes() != id.as_bytes() {
            return Err(repo_err(
                RepositoryErrorKind::Corrupt,
                format!("blob {id} does not hash to its id"),
            ));
        }
        Ok(data.clone())
    }

    fn has_blob(&self, id: &BlobId) -> bool {
        let s = lock(&self.state);
        s.durable.contains_key(id) || s.pending.contains_key(id)
    }

    async fn commit_snapshot(&self, snapshot: &BackupSnapshot) -> Result<(), RepositoryError> {
        self.faults.repository(FaultPoint::CommitSnapshot)?;
        snapshot
            .validate()
            .map_err(|e| repo_err(RepositoryErrorKind::InvalidInput, e.to_string()))?;
        let mut s = lock(&self.state);
        for root in snapshot.roots() {
            if !s.durable.contains_key(&root) && !s.pending.contains_key(&root) {
                return Err(repo_err(
                    RepositoryErrorKind::InvalidInput,
                    format!("backup {}: blob {root} is not stored", snapshot.id),
                ));
            }
        }
        if s.snapshots.contains_key(&snapshot.id) {
            return Err(repo_err(
                RepositoryErrorKind::AlreadyExists,
                format!("backup {} exists", snapshot.id),
            ));
        }
        let pending = std::mem::take(&mut s.pending);
        s.durable.extend(pending);
        s.snapshots.insert(snapshot.id, snapshot.clone());
        Ok(())
    }

    fn bytes_stored(&self) -> u64 {
        lock(&self.state).bytes_stored
    }

    async fn list_snapshots(&self) -> Result<Vec<BackupSnapshot>, RepositoryError> {
        Ok(lock(&self.state).snapshots.values().cloned().collect())
    }

    async fn load_snapshot(&self, id: &BackupId) -> Result<BackupSnapshot, RepositoryError> {
        lock(&self.state)
            .snapshots
            .get(id)
            .cloned()
            .ok_or_else(|| repo_err(RepositoryErrorKind::NotFound, format!("backup {id}")))
    }
}
