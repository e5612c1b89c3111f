//! The seam between the backup engine and the repository.

use async_trait::async_trait;

use crate::{BackupId, BlobId, Manifest, RepositoryError};

/// Where backups are stored. The engine writes a backup as: [`store_blob`] for every
/// exported block, then [`commit_manifest`] once; it restores with [`list_manifests`],
/// [`load_manifest`] and [`read_blob`].
///
/// Implementations are shared between tasks (`&self` everywhere) and may be called
/// concurrently. The trait is object safe: `Arc<dyn Repository>` works.
///
/// [`store_blob`]: Repository::store_blob
/// [`commit_manifest`]: Repository::commit_manifest
/// [`list_manifests`]: Repository::list_manifests
/// [`load_manifest`]: Repository::load_manifest
/// [`read_blob`]: Repository::read_blob
#[async_trait]
pub trait Repository: Send + Sync {
    /// Stores `data` as a blob and returns its id.
    ///
    /// Guarantees: the id depends only on `data` and the repository (equal data → equal
    /// id); storing data that is already stored writes nothing new (deduplication) and is
    /// idempotent. A stored blob is *not* durable or visible to other processes until a
    /// manifest referencing it has been committed with [`Repository::commit_manifest`]; if
    /// the process dies before, the blob is garbage for a later GC and no backup refers
    /// to it.
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError>;

    /// Reads the blob `id` and returns its exact bytes.
    ///
    /// Guarantees: the returned bytes are verified (authenticated or checksummed and
    /// rehashed to `id`); a damaged blob is an error of kind `Corrupt`, never wrong data.
    /// A blob stored earlier through this same handle is readable even before commit.
    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError>;

    /// Commits `manifest`: the last step of a backup.
    ///
    /// Guarantees: first makes every blob stored so far durable (packs, then index), then
    /// writes the manifest; the backup is visible to [`Repository::list_manifests`] exactly
    /// when this returns `Ok`. Fails with `InvalidInput` (writing no manifest) if the
    /// manifest is invalid or references a blob the repository does not hold, and with
    /// `AlreadyExists` if a backup with the same id exists. Atomic: a crash during this call
    /// leaves either no backup or the complete backup.
    async fn commit_manifest(&self, manifest: &Manifest) -> Result<(), RepositoryError>;

    /// Bytes this handle has newly written to the repository so far (after deduplication,
    /// compression and encryption): a backup's `bytes_stored` statistic.
    fn bytes_stored(&self) -> u64;

    /// Lists the ids of all committed backups, in no particular order.
    async fn list_manifests(&self) -> Result<Vec<BackupId>, RepositoryError>;

    /// Loads and verifies the manifest of backup `id` (kind `NotFound` if there is none).
    async fn load_manifest(&self, id: &BackupId) -> Result<Manifest, RepositoryError>;
}
