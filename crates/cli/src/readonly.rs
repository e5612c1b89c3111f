//! Reading a repository without writing to it (issue 16, item 2): `list`, `show`, `verify`
//! and `restore` take a shared lock to keep a concurrent `prune` from deleting what they
//! read, but a repository on read-only media, in a WORM bucket or behind read-only
//! credentials cannot take one. There they read without a lock, saying so once; `--no-lock`
//! asks for that outright (as restic's does).

use async_trait::async_trait;
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, DamagedSnapshot, Repository, RepositoryError, SnapshotListing,
};
use taosbackup_sink::{LockGuard, LockMode, Repo, Session};

/// What a reading command reads through: a locked session, or the repository itself.
pub enum Reader {
    /// A session holding a shared lock (released by [`Reader::finish`]); boxed, it is far
    /// larger than the other variant.
    Locked(Box<Session>),
    /// A shared lock and no session: a reader of snapshot objects only (`list`), which
    /// needs no index, so none is loaded (the guard boxed as the session is).
    LockedSnapshots(Box<LockGuard>, Unlocked),
    /// No lock: `--no-lock`, or the repository is not writable.
    Unlocked(Unlocked),
}

impl Reader {
    /// Opens a reader of `repo` for `command`: a locked session unless `no_lock`, or when
    /// the lock cannot be written because the repository is not writable (logged once as a
    /// warning naming `url`).
    pub async fn open(
        repo: &Repo,
        command: &str,
        no_lock: bool,
        url: &str,
    ) -> anyhow::Result<Reader> {
        if no_lock {
            tracing::info!(repository = url, "--no-lock: reading without a lock");
            return Ok(Reader::Unlocked(Unlocked(repo.clone())));
        }
        match repo.session(command).await {
            Ok(s) => Ok(Reader::Locked(Box::new(s))),
            Err(e) => unlocked_if_not_writable(repo, command, url, e),
        }
    }

    /// [`Reader::open`] for a command that reads snapshot objects only (`list`): the shared
    /// lock without a session, so the index is not loaded (open `repo` with
    /// `load_index: false`). Reading a blob through it finds nothing.
    pub async fn open_snapshots(
        repo: &Repo,
        command: &str,
        no_lock: bool,
        url: &str,
    ) -> anyhow::Result<Reader> {
        if no_lock {
            tracing::info!(repository = url, "--no-lock: reading without a lock");
            return Ok(Reader::Unlocked(Unlocked(repo.clone())));
        }
        match repo.lock(LockMode::Shared, command).await {
            Ok(lock) => Ok(Reader::LockedSnapshots(
                Box::new(lock),
                Unlocked(repo.clone()),
            )),
            Err(e) => unlocked_if_not_writable(repo, command, url, e),
        }
    }

    /// The repository interface the engine reads through.
    pub fn repository(&self) -> &dyn Repository {
        match self {
            Reader::Locked(s) => s.as_ref(),
            Reader::LockedSnapshots(_, u) | Reader::Unlocked(u) => u,
        }
    }

    /// Releases the lock, if one was taken.
    pub async fn finish(self) -> anyhow::Result<()> {
        match self {
            Reader::Locked(s) => Ok((*s).finish().await?),
            Reader::LockedSnapshots(lock, _) => Ok((*lock).release().await?),
            Reader::Unlocked(_) => Ok(()),
        }
    }
}

/// A reader without a lock when taking the lock failed because the repository is not
/// writable (logged once as a warning naming `url`); `e` otherwise.
fn unlocked_if_not_writable(
    repo: &Repo,
    command: &str,
    url: &str,
    e: taosbackup_sink::Error,
) -> anyhow::Result<Reader> {
    match not_writable(&e) {
        Some(why) => {
            tracing::warn!(
                repository = url,
                "the repository is not writable ({why}): reading it without a lock (a prune \
                 running meanwhile could remove what this {command} reads)"
            );
            Ok(Reader::Unlocked(Unlocked(repo.clone())))
        }
        None => Err(anyhow::Error::from(e).context("cannot lock the repository")),
    }
}

/// Why writing failed because the repository cannot be written (permission denied,
/// read-only file system, 403 from object storage), or `None` for any other failure.
pub fn not_writable(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(io.kind(), K::PermissionDenied | K::ReadOnlyFilesystem) {
                return Some(io.to_string());
            }
        }
        if let Some(object_store::Error::PermissionDenied { .. }) =
            c.downcast_ref::<object_store::Error>()
        {
            return Some("the storage refused the write: permission denied".into());
        }
        cause = c.source();
    }
    None
}

/// The repository read without a lock; writing through it is refused.
pub struct Unlocked(Repo);

fn refused(what: &str) -> RepositoryError {
    RepositoryError::new(
        taosbackup_core::RepositoryErrorKind::Other,
        false,
        format!("{what}: the repository is open read-only (no lock)"),
    )
}

#[async_trait]
impl Repository for Unlocked {
    async fn store_blob(&self, _data: &[u8]) -> Result<BlobId, RepositoryError> {
        Err(refused("storing a blob"))
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        Ok(self.0.read_blob(id).await?)
    }

    async fn read_blob_ahead(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        Ok(self.0.read_blob_ahead(id).await?)
    }

    fn has_blob(&self, id: &BlobId) -> bool {
        self.0.has_blob(id)
    }

    async fn commit_snapshot(&self, _snapshot: &BackupSnapshot) -> Result<(), RepositoryError> {
        Err(refused("committing a backup"))
    }

    fn bytes_stored(&self) -> u64 {
        0
    }

    async fn list_snapshots(&self) -> Result<Vec<BackupSnapshot>, RepositoryError> {
        Ok(self.0.snapshots().await?)
    }

    async fn list_snapshots_lenient(&self) -> Result<SnapshotListing, RepositoryError> {
        let (snapshots, damaged) = self.0.snapshots_lenient().await?;
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
        Ok(self.0.load_snapshot(id).await?)
    }
}
