//! A locked writer/reader handle: what a backup or restore works through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, DamagedSnapshot, Repository, RepositoryError, ShardEncoding,
    SnapshotListing,
};
use tokio::sync::{Notify, Semaphore};

use crate::crypto::{self, MAX_BLOB_SIZE};
use crate::error::{Error, Result};
use crate::index::{self, INDEX_VERSION, IndexFile, IndexPack};
use crate::lock::{LockGuard, LockMode};
use crate::pack::{FinishedPack, PackBuilder, PackEntry, PackId, pack_path};
use crate::repo::{Repo, snapshot_path};

/// A repository handle holding a shared lock, implementing [`Repository`].
///
/// Blobs are gathered into packs in memory (one open pack, at most the target size, plus
/// packs being uploaded); [`Session::commit`] (or [`Repository::commit_snapshot`]) writes the
/// remaining pack, then an index file for this session's packs, then the snapshot.
/// Call [`Session::finish`] to release the lock.
pub struct Session {
    repo: Repo,
    lock: LockGuard,
    shared: Arc<Shared>,
}

/// Write state shared with background upload tasks.
struct Shared {
    state: Mutex<WriteState>,
    uploaded: Notify,
    uploads: Arc<Semaphore>,
}

#[derive(Default)]
struct WriteState {
    open: PackBuilder,
    pending: HashMap<BlobId, Pending>,
    inflight: HashMap<PackId, Bytes>,
    uploading: usize,
    written: Vec<(PackId, u64, Vec<PackEntry>)>,
    failure: Option<String>,
    bytes_stored: u64,
    /// Sealed (compressed, encrypted) bytes of the new blobs added so far, uploaded or not.
    blob_bytes: u64,
}

#[derive(Clone, Copy)]
enum Pending {
    Open(PackEntry),
    Packed(PackId, PackEntry),
}

impl Shared {
    fn state(&self) -> Result<MutexGuard<'_, WriteState>> {
        self.state.lock().map_err(|_| Error::SessionFailed {
            reason: "a writer task panicked".into(),
        })
    }

    fn finish_upload(&self, pack: FinishedPack, path: &str, result: Result<()>) {
        // A poisoned state mutex means a writer panicked; the session is unusable anyway.
        if let Ok(mut st) = self.state() {
            st.inflight.remove(&pack.id);
            st.uploading -= 1;
            match result {
                Ok(()) => {
                    st.bytes_stored += pack.bytes.len() as u64;
                    st.written
                        .push((pack.id, pack.bytes.len() as u64, pack.entries));
                }
                Err(e) => {
                    for entry in &pack.entries {
                        st.pending.remove(&entry.id);
                    }
                    st.failure = Some(format!("upload of {path} failed: {e}"));
                }
            }
        }
        self.uploaded.notify_waiters();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("repo", &self.repo)
            .field("lock", &self.lock.path())
            .finish()
    }
}

impl Repo {
    /// Takes a shared lock for `command` (`backup`, `restore`), reloads the index (a
    /// prune may have run since this handle was opened, and deduplicating against its
    /// old index would reference deleted blobs), and returns a session.
    pub async fn session(&self, command: &str) -> Result<Session> {
        self.session_scoped(command, None).await
    }

    /// [`Repo::session`] whose shared lock has a scope (see [`Repo::lock_scoped`]): a
    /// backup takes its session scoped to its database, so a second backup of the same
    /// database fails with [`Error::Locked`] naming the first.
    pub async fn session_scoped(&self, command: &str, scope: Option<&str>) -> Result<Session> {
        let lock = self.lock_scoped(LockMode::Shared, command, scope).await?;
        if let Err(e) = self.reload_index().await {
            lock.release().await?;
            return Err(e);
        }
        Ok(self.session_with(lock))
    }
}

impl Repo {
    /// A session holding `lock` (an exclusive one, for `migrate`): the index is the one
    /// this handle loaded under that lock.
    pub(crate) fn session_with(&self, lock: LockGuard) -> Session {
        Session {
            repo: self.clone(),
            lock,
            shared: Arc::new(Shared {
                state: Mutex::new(WriteState::default()),
                uploaded: Notify::new(),
                // At most this many packs are uploaded in the background at once; a writer
                // that fills another pack waits (bounded memory: the open pack plus these).
                uploads: Arc::new(Semaphore::new(self.inner.backend.upload_concurrency())),
            }),
        }
    }
}

impl Session {
    fn state(&self) -> Result<MutexGuard<'_, WriteState>> {
        self.shared.state()
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Bytes of packs this session has uploaded so far.
    pub fn bytes_stored(&self) -> u64 {
        self.state().map(|s| s.bytes_stored).unwrap_or(0)
    }

    /// Sealed bytes of the new blobs this session has stored so far (deduplicated,
    /// compressed, encrypted; pack headers not counted), whether or not their packs are
    /// uploaded yet: what a backup adds to the repository.
    pub fn blob_bytes(&self) -> u64 {
        self.state().map(|s| s.blob_bytes).unwrap_or(0)
    }

    fn known(&self, id: &BlobId, state: &WriteState) -> bool {
        state.pending.contains_key(id) || self.repo.has_blob(id)
    }

    /// Stores a blob (see [`Repository::store_blob`]).
    pub async fn put_blob(&self, data: &[u8]) -> Result<BlobId> {
        self.put(data, None, self.repo.inner.config.compression_level)
            .await
    }

    /// Stores an object of the snapshot tree (see [`Repository::store_tree_object`]): at
    /// [`crate::config::TREE_OBJECT_LEVEL`].
    pub async fn put_tree_object(&self, data: &[u8]) -> Result<BlobId> {
        self.put(data, None, crate::config::TREE_OBJECT_LEVEL).await
    }

    /// Stores a blob compressed with dictionary blob `dictionary` (see
    /// [`Repository::store_blob_with_dictionary`]): the dictionary must be stored (by this
    /// session's [`Session::train_dictionary`] or committed earlier).
    pub async fn put_blob_with_dictionary(
        &self,
        data: &[u8],
        dictionary: &BlobId,
    ) -> Result<BlobId> {
        // From this handle's cache (trained or read earlier), else read once.
        let bytes = self.repo.dictionary(dictionary).await?;
        self.put(
            data,
            Some((dictionary, &bytes)),
            self.repo.inner.config.compression_level,
        )
        .await
    }

    /// Trains a dictionary from `samples` (at most [`crate::dict::DICTIONARY_SIZE`] bytes),
    /// stores it as a blob and returns its id; `None` when zstd cannot train one from them.
    pub async fn train_dictionary(&self, samples: &[&[u8]]) -> Result<Option<BlobId>> {
        let flat = samples.concat();
        let sizes: Vec<usize> = samples.iter().map(|s| s.len()).collect();
        let level = self.repo.inner.config.compression_level;
        // Training takes tens of milliseconds of CPU: off the async workers.
        let trained = tokio::task::spawn_blocking(move || {
            crypto::train_dictionary(&flat, &sizes, crate::dict::DICTIONARY_SIZE, level)
        })
        .await
        .map_err(|_| Error::SessionFailed {
            reason: "dictionary training panicked".into(),
        })?;
        let Some(bytes) = trained else {
            return Ok(None);
        };
        let id = self.put(&bytes, None, level).await?;
        self.repo.remember_dictionary(id, bytes);
        Ok(Some(id))
    }

    async fn put(
        &self,
        data: &[u8],
        dictionary: Option<(&BlobId, &[u8])>,
        level: i32,
    ) -> Result<BlobId> {
        if data.len() > MAX_BLOB_SIZE {
            return Err(Error::BlobTooLarge {
                size: data.len(),
                max: MAX_BLOB_SIZE,
            });
        }
        self.lock.check()?;
        if let Some(f) = &self.state()?.failure {
            return Err(Error::SessionFailed { reason: f.clone() });
        }
        let inner = &self.repo.inner;
        let id = match dictionary {
            None => inner.crypto.blob_id(data),
            Some((d, _)) => inner.crypto.blob_id_with_dictionary(data, d),
        };
        if self.known(&id, &*self.state()?) {
            return Ok(id);
        }
        let compressed = match dictionary {
            None => crypto::compress(data, level)?,
            Some((d, bytes)) => crypto::compress_with_dictionary(data, level, d, bytes)?,
        };
        let sealed = inner.crypto.seal(id.as_bytes(), &compressed);
        let full = {
            let mut st = self.state()?;
            if self.known(&id, &st) {
                return Ok(id);
            }
            let entry = st.open.add(id, &sealed, data.len() as u32);
            st.blob_bytes += sealed.len() as u64;
            st.pending.insert(id, Pending::Open(entry));
            if st.open.len() >= inner.config.pack_size as usize {
                Some(self.seal_open(&mut st))
            } else {
                None
            }
        };
        if let Some(pack) = full {
            self.spawn_upload(pack).await?;
        } else if self.state()?.uploading > 0 {
            // CPU-bound writers rarely reach a pending await; yield so that background
            // uploads make progress (they hand their disk or network I/O to other threads).
            tokio::task::yield_now().await;
        }
        Ok(id)
    }

    fn seal_open(&self, st: &mut WriteState) -> FinishedPack {
        let builder = std::mem::take(&mut st.open);
        let pack = builder.finish(&self.repo.inner.crypto);
        for e in &pack.entries {
            st.pending.insert(e.id, Pending::Packed(pack.id, *e));
        }
        st.inflight.insert(pack.id, pack.bytes.clone());
        st.uploading += 1;
        pack
    }

    /// Uploads `pack` in a background task once an upload slot is free.
    async fn spawn_upload(&self, pack: FinishedPack) -> Result<()> {
        let permit = self
            .shared
            .uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::SessionFailed {
                reason: "upload slots closed".into(),
            })?;
        let backend = self.repo.inner.backend.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let path = pack_path(&pack.id);
            let result = backend.put(&path, pack.bytes.clone()).await;
            shared.finish_upload(pack, &path, result);
            drop(permit);
        });
        // Let the upload start now even on a current-thread runtime, where a CPU-bound
        // writer would otherwise not yield until its next pending await.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Seals the open pack, waits until every pack of this session is uploaded, and fails
    /// if any upload failed. The blobs are then in storage but still not referenced by an
    /// index: only [`Session::commit`] makes them part of the repository.
    pub async fn flush(&self) -> Result<()> {
        let pack = {
            let mut st = self.state()?;
            if st.open.is_empty() {
                None
            } else {
                Some(self.seal_open(&mut st))
            }
        };
        if let Some(pack) = pack {
            self.spawn_upload(pack).await?;
        }
        loop {
            let notified = self.shared.uploaded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                // Wait for every upload, failed session or not: nothing of this session may
                // still be writing once it reports (and its lock may be released).
                let st = self.state()?;
                if st.uploading == 0 {
                    return match &st.failure {
                        Some(f) => Err(Error::SessionFailed { reason: f.clone() }),
                        None => Ok(()),
                    };
                }
            }
            notified.await;
        }
    }

    /// Whether blob `id` is in the repository's index or stored by this session.
    pub fn holds(&self, id: &BlobId) -> bool {
        self.state().map(|st| self.known(id, &st)).unwrap_or(false)
    }

    /// Makes every blob stored so far part of the repository: uploads the open pack, waits
    /// for every upload, then writes one index file for this session's packs. The blobs are
    /// then durable and deduplicated against, but no snapshot references them yet.
    pub async fn flush_index(&self) -> Result<()> {
        self.lock.check()?;
        let inner = &self.repo.inner;
        // Flush until nothing is pending outside an uploaded pack (a concurrent writer may
        // have filled and started another pack after a flush).
        let written = loop {
            self.flush().await?;
            let st = self.state()?;
            let uploaded: HashSet<PackId> = st.written.iter().map(|(id, _, _)| *id).collect();
            let unflushed = st.pending.values().any(|p| match p {
                Pending::Packed(pack, _) => !uploaded.contains(pack),
                Pending::Open(_) => true,
            });
            if !unflushed {
                break st.written.clone();
            }
        };
        if written.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            version: INDEX_VERSION,
            packs: written
                .iter()
                .map(|(id, size, e)| IndexPack::new(id, *size, e))
                .collect(),
        };
        let (name, bytes) = index::encode(&file, &inner.crypto, inner.config.compression_level)?;
        inner.backend.put(&name, bytes.into()).await?;
        let mut idx = inner.index.write().map_err(|_| Error::LockLost {
            path: self.lock.path().into(),
            reason: "index lock poisoned".into(),
        })?;
        for (id, size, entries) in &written {
            idx.add_pack(*id, *size, entries.clone());
        }
        idx.files.push(name);
        drop(idx);
        let mut st = self.state()?;
        let done: HashSet<PackId> = written.iter().map(|(id, _, _)| *id).collect();
        st.written.retain(|(id, _, _)| !done.contains(id));
        st.pending
            .retain(|_, p| !matches!(p, Pending::Packed(pack, _) if done.contains(pack)));
        Ok(())
    }

    /// Commits `snapshot` (see [`Repository::commit_snapshot`]): packs, then an index file
    /// for this session's packs, then the snapshot object. Refuses (writing no snapshot) a
    /// snapshot that does not validate or whose tree or catalog blob is not stored.
    pub async fn commit(&self, snapshot: &BackupSnapshot) -> Result<()> {
        self.lock.check()?;
        snapshot.validate()?;
        // Every upload finished (and a failed one reported) before anything else is decided:
        // nothing of this session may still be writing once it reports.
        self.flush().await?;
        for root in snapshot.roots() {
            if !self.holds(&root) {
                return Err(Error::MissingBlob {
                    blob: root,
                    backup_id: Some(snapshot.id),
                });
            }
        }
        self.flush_index().await?;
        let path = snapshot_path(&snapshot.id);
        if self.repo.inner.backend.exists(&path).await? {
            return Err(Error::BackupExists {
                backup_id: snapshot.id,
            });
        }
        self.lock.check()?;
        self.repo.put_snapshot(snapshot).await
    }

    /// Reads a blob, including blobs stored by this session and not yet committed.
    pub async fn get_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let pending = self.state()?.pending.get(id).copied();
        let inner = &self.repo.inner;
        match pending {
            None => self.repo.read_blob(id).await,
            Some(Pending::Open(e)) => {
                let stored = {
                    let st = self.state()?;
                    let range = e.offset as usize..(e.offset as usize + e.length as usize);
                    st.open.buf.get(range).map(<[u8]>::to_vec)
                };
                match stored {
                    Some(s) => {
                        self.repo
                            .decode_stored("open pack", id, &s, e.raw_length)
                            .await
                    }
                    // The pack was sealed meanwhile: look again.
                    None => Box::pin(self.get_blob(id)).await,
                }
            }
            Some(Pending::Packed(pack, e)) => {
                let path = pack_path(&pack);
                let range = e.offset..e.offset + u64::from(e.length);
                let mem = self.state()?.inflight.get(&pack).cloned();
                let stored = match mem {
                    Some(bytes) => bytes.slice(range.start as usize..range.end as usize),
                    None => inner.backend.get_range(&path, range).await?,
                };
                self.repo
                    .decode_stored(&path, id, &stored, e.raw_length)
                    .await
            }
        }
    }

    /// Releases the lock. Blobs stored but not committed are discarded (their packs, if
    /// uploaded, are garbage for the next prune).
    pub async fn finish(self) -> Result<()> {
        self.lock.release().await
    }
}

#[async_trait]
impl Repository for Session {
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        Ok(self.put_blob(data).await?)
    }

    async fn store_blob_with_dictionary(
        &self,
        data: &[u8],
        dictionary: &BlobId,
    ) -> Result<BlobId, RepositoryError> {
        Ok(self.put_blob_with_dictionary(data, dictionary).await?)
    }

    async fn store_tree_object(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        Ok(self.put_tree_object(data).await?)
    }

    fn shard_encoding(&self) -> ShardEncoding {
        self.repo.shard_encoding()
    }

    async fn train_dictionary(&self, samples: &[&[u8]]) -> Result<Option<BlobId>, RepositoryError> {
        Ok(Session::train_dictionary(self, samples).await?)
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        Ok(self.get_blob(id).await?)
    }

    async fn read_blob_ahead(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        // Committed blobs only: the session's own are in memory or in packs being written.
        if self.state()?.pending.contains_key(id) {
            return Ok(self.get_blob(id).await?);
        }
        Ok(self.repo.read_blob_ahead(id).await?)
    }

    fn has_blob(&self, id: &BlobId) -> bool {
        self.holds(id)
    }

    async fn commit_snapshot(&self, snapshot: &BackupSnapshot) -> Result<(), RepositoryError> {
        Ok(self.commit(snapshot).await?)
    }

    fn bytes_stored(&self) -> u64 {
        self.blob_bytes()
    }

    async fn list_snapshots(&self) -> Result<Vec<BackupSnapshot>, RepositoryError> {
        Ok(self.repo.snapshots().await?)
    }

    async fn list_snapshots_lenient(&self) -> Result<SnapshotListing, RepositoryError> {
        let (snapshots, damaged) = self.repo.snapshots_lenient().await?;
        Ok(SnapshotListing {
            snapshots,
            damaged: damaged
                .into_iter()
                .map(|(id, e)| DamagedSnapshot {
                    id,
                    error: e.into(),
                })
                .collect(),
        })
    }

    async fn load_snapshot(&self, id: &BackupId) -> Result<BackupSnapshot, RepositoryError> {
        Ok(self.repo.load_snapshot(id).await?)
    }
}
