//! The seam between the backup engine and the repository.

use async_trait::async_trait;

use crate::{BackupId, BackupSnapshot, BlobId, RepositoryError, ShardEncoding};

/// Where backups are stored. The engine writes a backup as: [`store_blob`] for every
/// exported block and every new tree object (shards, tree, catalog parts), then
/// [`commit_snapshot`] once; it restores with [`list_snapshots`], [`load_snapshot`] and
/// [`read_blob`].
///
/// Implementations are shared between tasks (`&self` everywhere) and may be called
/// concurrently. The trait is object safe: `Arc<dyn Repository>` works.
///
/// [`store_blob`]: Repository::store_blob
/// [`commit_snapshot`]: Repository::commit_snapshot
/// [`list_snapshots`]: Repository::list_snapshots
/// [`load_snapshot`]: Repository::load_snapshot
/// [`read_blob`]: Repository::read_blob
#[async_trait]
pub trait Repository: Send + Sync {
    /// Stores `data` as a blob and returns its id.
    ///
    /// Guarantees: the id depends only on `data` and the repository (equal data → equal
    /// id); storing data that is already stored writes nothing new (deduplication) and is
    /// idempotent. A stored blob is *not* durable or visible to other processes until a
    /// snapshot has been committed with [`Repository::commit_snapshot`]; if the process dies
    /// before, the blob is garbage for a later prune and no backup refers to it.
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError>;

    /// Stores `data`, an object of the snapshot tree (compact JSON, or a binary shard),
    /// as [`Repository::store_blob`] does (the same id for the same bytes), compressed as
    /// suits that text.
    async fn store_tree_object(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.store_blob(data).await
    }

    /// How this repository's shard objects are written ([`crate::TreeObject::encode_as`]):
    /// binary in repositories of format 3, JSON in those of format 2 (which older builds
    /// must still read). Readers accept both whatever this says.
    fn shard_encoding(&self) -> ShardEncoding {
        ShardEncoding::Json
    }

    /// Stores `data` as a blob compressed with the shared zstd dictionary blob `dictionary`
    /// (one [`Repository::train_dictionary`] returned, in this handle or a committed
    /// snapshot) and returns its id. The blob stays decodable on its own (it names its
    /// dictionary); its id depends on `data` and `dictionary`, so deduplication only meets
    /// blobs compressed with the same dictionary. The caller keeps `dictionary` reachable
    /// (a snapshot's catalog lists it) as long as a snapshot references the blob.
    /// Implementations without dictionaries store `data` as [`Repository::store_blob`] does.
    async fn store_blob_with_dictionary(
        &self,
        data: &[u8],
        dictionary: &BlobId,
    ) -> Result<BlobId, RepositoryError> {
        let _ = dictionary;
        self.store_blob(data).await
    }

    /// Trains a zstd dictionary from `samples` (blob contents alike to the ones it will
    /// compress), stores it as a blob and returns its id; `None` when no dictionary can be
    /// trained from them (too few or too small samples) or the implementation has none.
    async fn train_dictionary(&self, samples: &[&[u8]]) -> Result<Option<BlobId>, RepositoryError> {
        let _ = samples;
        Ok(None)
    }

    /// Reads the blob `id` and returns its exact bytes.
    ///
    /// Guarantees: the returned bytes are verified (authenticated or checksummed and
    /// rehashed to `id`); a damaged blob is an error of kind `Corrupt`, never wrong data.
    /// A blob stored earlier through this same handle is readable even before commit.
    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError>;

    /// [`Repository::read_blob`] for a reader that goes on to read the blobs stored after
    /// `id` (a restore reads blocks in about the order a backup wrote them): the
    /// implementation may read ahead in its storage and serve those later reads from memory.
    /// Same guarantees as `read_blob`; a check of what storage holds now (`verify`) must not
    /// use it.
    async fn read_blob_ahead(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        self.read_blob(id).await
    }

    /// Whether the repository (or this handle, before commit) holds blob `id`: a parent's
    /// objects are referenced again only when this holds.
    fn has_blob(&self, id: &BlobId) -> bool;

    /// Commits `snapshot`: the last step of a backup.
    ///
    /// Guarantees: first makes every blob stored so far durable (packs, then index), then
    /// writes the snapshot object; the backup is visible to [`Repository::list_snapshots`]
    /// exactly when this returns `Ok`. Fails with `InvalidInput` (writing no snapshot) if the
    /// snapshot is invalid or its tree or catalog blob is not stored, and with
    /// `AlreadyExists` if a backup with the same id exists. Atomic: a crash during this call
    /// leaves either no backup or the complete backup.
    async fn commit_snapshot(&self, snapshot: &BackupSnapshot) -> Result<(), RepositoryError>;

    /// Bytes this handle has newly written to the repository so far (after deduplication,
    /// compression and encryption): a backup's `bytes_stored` statistic.
    fn bytes_stored(&self) -> u64;

    /// Every committed backup's snapshot object, in no particular order. Implementations
    /// may serve them from a local cache, but list exactly the snapshots the repository
    /// holds.
    async fn list_snapshots(&self) -> Result<Vec<BackupSnapshot>, RepositoryError>;

    /// Like [`Repository::list_snapshots`], but a snapshot object that fails its integrity
    /// check is reported apart instead of failing the whole listing, so that one damaged
    /// snapshot does not hide every other backup from `list` and from a restore by id.
    /// Anything else (a backend failure) still fails. Commands that delete (forget, prune)
    /// must keep using the strict listing: a damaged snapshot's objects are not known to be
    /// unreachable.
    async fn list_snapshots_lenient(&self) -> Result<SnapshotListing, RepositoryError> {
        Ok(SnapshotListing {
            snapshots: self.list_snapshots().await?,
            damaged: Vec::new(),
        })
    }

    /// Loads and verifies the snapshot of backup `id` from the repository itself (kind
    /// `NotFound` if there is none).
    async fn load_snapshot(&self, id: &BackupId) -> Result<BackupSnapshot, RepositoryError>;
}

/// What [`Repository::list_snapshots_lenient`] found.
#[derive(Debug, Default)]
pub struct SnapshotListing {
    /// The snapshots that loaded and verified, in no particular order.
    pub snapshots: Vec<BackupSnapshot>,
    /// The backups whose snapshot object exists but is damaged, with why.
    pub damaged: Vec<DamagedSnapshot>,
}

/// A snapshot object that exists in the repository but failed its integrity check.
#[derive(Debug)]
pub struct DamagedSnapshot {
    /// The backup the object's name says it holds.
    pub id: BackupId,
    /// Why it could not be read (names the object).
    pub error: RepositoryError,
}
