//! The sink's error type.
//!
//! Rules (shared by all taosbackup libraries, see `taosbackup_core::Error`):
//!
//! 1. One `#[non_exhaustive]` enum, [`Error`]; each variant is named for what went wrong.
//! 2. Variants carry the context needed to act on them: the object path inside the
//!    repository (`data/ab/ab12…`, `manifests/…`), the backup id, the lock holder, and keep
//!    the underlying error as `source`.
//! 3. [`Error::is_retryable`] says whether the same call could succeed if repeated (a
//!    transient backend failure, a lock held by someone else); integrity failures, wrong
//!    passwords and format errors never are.
//! 4. No `unwrap()`/`expect()` on input or I/O; hostile or damaged objects yield
//!    [`Error::Corrupt`] (or [`Error::UnsupportedVersion`]), never a panic or an allocation
//!    sized by untrusted numbers.
//! 5. Errors are returned, never logged-and-dropped; background work (lock refresh) keeps
//!    its error and reports it on the next call.

use taosbackup_core::{BackupId, BlobId, RepositoryError, RepositoryErrorKind};

/// A specialised `Result` for the sink.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository URL could not be understood or its backend could not be built.
    #[error("invalid repository URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Repository creation options out of range.
    #[error("invalid repository options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// The storage backend failed on an object (after its retries, when retrying could
    /// help: [`crate::StorageRetry`]).
    #[error("storage backend failed to {op} {path}{}: {source}", attempts_text(*.attempts, *.status))]
    Backend {
        /// The operation (`read`, `write`, `list`, `delete`).
        op: &'static str,
        /// Object path inside the repository.
        path: String,
        /// Attempts made (1 when the failure was not worth retrying).
        attempts: u32,
        /// The HTTP status of the last answer, when the store answered at all.
        status: Option<u16>,
        /// The backend's error.
        #[source]
        source: object_store::Error,
    },
    /// An object the repository needs does not exist.
    #[error("object {path} does not exist")]
    NotFound {
        /// Object path inside the repository.
        path: String,
    },
    /// There is no repository (no `config` object) at the location.
    #[error("{location} is not a taosbackup repository (no config object)")]
    NotARepository {
        /// The repository location.
        location: String,
    },
    /// A format-1 repository (one manifest per backup), opened by a command that needs
    /// snapshot trees (format 2 or 3).
    #[error(
        "{location} is a format-1 repository (one manifest per backup); this build works on snapshot \
         trees (format 3): run `taosbackup migrate --repo {location} --dry-run` to see what it does, \
         then `taosbackup migrate --repo {location}` (it re-uses every data pack; nothing is uploaded again)"
    )]
    Format1Repository {
        /// The repository location.
        location: String,
    },
    /// `migrate` was interrupted while switching the config to format 3.
    #[error(
        "{location} is between two formats: a `taosbackup migrate` was interrupted while \
         switching its config; run `taosbackup migrate --repo {location}` again to finish it"
    )]
    MigrationInterrupted {
        /// The repository location.
        location: String,
    },
    /// `migrate` cannot proceed safely.
    #[error("migrate refused: {reason}")]
    MigrateRefused {
        /// Why, and what to do.
        reason: String,
    },
    /// `init` found an existing repository.
    #[error("a repository already exists at {location}")]
    AlreadyInitialized {
        /// The repository location.
        location: String,
    },
    /// An object has a format version this build does not read.
    #[error("{path} has format version {found}; this build supports version {supported}")]
    UnsupportedVersion {
        /// Object path.
        path: String,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// An object failed its integrity check or could not be parsed.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// Object path (and blob id, when a blob inside a pack is concerned).
        path: String,
        /// What check failed.
        reason: String,
    },
    /// The repository is encrypted and no password was given.
    #[error(
        "the repository is encrypted: give a password in a file or in the TAOSBACKUP_PASSWORD environment variable"
    )]
    PasswordRequired,
    /// No key file opens with the given password. Nothing was written.
    #[error(
        "wrong password: none of the {tried} key files opened with it (or the config object was modified: key files bind its hash)"
    )]
    WrongPassword {
        /// How many key files were tried.
        tried: usize,
    },
    /// The password could not be read from its source.
    #[error("cannot read the password from {source_name}: {reason}")]
    PasswordSource {
        /// Where it was read from (file path or environment variable).
        source_name: String,
        /// Why it failed.
        reason: String,
    },
    /// Key derivation parameters are invalid.
    #[error("invalid Argon2id parameters: {reason}")]
    InvalidKdfParams {
        /// Why.
        reason: String,
    },
    /// A key operation would leave the repository unusable or names a missing key.
    #[error("key {key_id}: {reason}")]
    KeyRefused {
        /// The key file id.
        key_id: String,
        /// Why the operation was refused.
        reason: &'static str,
    },
    /// A conflicting lock is held by another process.
    #[error("repository is locked by {holder} (lock object {path}){}", if *.stale { " — the lock looks stale" } else { "" })]
    Locked {
        /// The holder, as recorded in its lock: host, pid, command, time.
        holder: String,
        /// The lock object path.
        path: String,
        /// Whether the holder looks stale (never treated as stale automatically for a
        /// conflict found right after writing our own lock).
        stale: bool,
    },
    /// Our own lock could not be kept fresh, so other processes may consider it stale.
    #[error("lost our repository lock {path}: {reason}")]
    LockLost {
        /// Our lock object path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A blob the operation needs is not in the index.
    #[error("blob {blob} is not in the repository{}", .backup_id.map(|b| format!(" (needed by backup {b})")).unwrap_or_default())]
    MissingBlob {
        /// The missing blob.
        blob: BlobId,
        /// The backup that needs it, when known.
        backup_id: Option<BackupId>,
    },
    /// A blob larger than the format allows.
    #[error("blob of {size} bytes exceeds the maximum of {max} bytes")]
    BlobTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A backup with this id is already committed.
    #[error("backup {backup_id} already exists")]
    BackupExists {
        /// The id.
        backup_id: BackupId,
    },
    /// A backup id that has no manifest.
    #[error("backup {backup_id} does not exist")]
    NoSuchBackup {
        /// The id.
        backup_id: BackupId,
    },
    /// A manifest that breaks the manifest invariants.
    #[error("invalid manifest: {source}")]
    InvalidManifest {
        /// The invariant violation.
        #[from]
        source: taosbackup_core::Error,
    },
    /// A retention policy that would keep nothing or contradicts itself.
    #[error("invalid retention policy: {reason}")]
    InvalidPolicy {
        /// Why.
        reason: String,
    },
    /// A pinned backup was named to be forgotten.
    #[error("backup {backup_id} is pinned; unpin it first (`taosbackup unpin {backup_id}`)")]
    Pinned {
        /// The pinned backup.
        backup_id: BackupId,
    },
    /// Garbage collection refused to run because it could not establish which blobs are
    /// in use (a manifest or index did not load).
    #[error("prune refused: {reason}")]
    PruneRefused {
        /// Why.
        reason: String,
    },
    /// The storage refuses deletes (credentials without delete permission, or an immutable
    /// bucket), found by a probe before anything was changed.
    #[error(
        "cannot delete from {location}: the storage refuses deletes (credentials without \
         delete permission, or an immutable bucket); nothing was changed. It would have \
         deleted {would_delete}"
    )]
    DeleteDenied {
        /// The repository location.
        location: String,
        /// What the operation would have deleted.
        would_delete: String,
    },
    /// An earlier pack upload of this session failed, so the session cannot commit.
    #[error("backup session cannot commit: {reason}")]
    SessionFailed {
        /// The failure that spoiled the session.
        reason: String,
    },
    /// Compression failed (should not happen for valid input).
    #[error("zstd compression failed: {source}")]
    Compression {
        /// The zstd error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the local repository directory failed.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether repeating the same call could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            Error::Locked { .. } => true,
            _ => false,
        }
    }

    /// The broad class used when this error crosses the core `Repository` trait.
    pub fn kind(&self) -> RepositoryErrorKind {
        match self {
            Error::NotFound { .. } | Error::NoSuchBackup { .. } | Error::NotARepository { .. } => {
                RepositoryErrorKind::NotFound
            }
            Error::Corrupt { .. }
            | Error::UnsupportedVersion { .. }
            | Error::InvalidKdfParams { .. } => RepositoryErrorKind::Corrupt,
            Error::Locked { .. } | Error::LockLost { .. } => RepositoryErrorKind::Locked,
            Error::Format1Repository { .. } | Error::MigrationInterrupted { .. } => {
                RepositoryErrorKind::Other
            }
            Error::BackupExists { .. } | Error::AlreadyInitialized { .. } => {
                RepositoryErrorKind::AlreadyExists
            }
            Error::MissingBlob { .. }
            | Error::InvalidManifest { .. }
            | Error::BlobTooLarge { .. } => RepositoryErrorKind::InvalidInput,
            Error::InvalidUrl { .. }
            | Error::InvalidOptions { .. }
            | Error::InvalidPolicy { .. }
            | Error::PasswordRequired
            | Error::PasswordSource { .. } => RepositoryErrorKind::Config,
            Error::Backend { .. } | Error::CreateDir { .. } => RepositoryErrorKind::Backend,
            _ => RepositoryErrorKind::Other,
        }
    }

    /// Whether the storage refused the operation for lack of permission: HTTP 403, or S3's
    /// `AccessDenied` inside a `200 OK` answer (object_store 0.14 deletes S3 objects with
    /// the multi-object `DeleteObjects` request, which reports per key).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Error::Backend {
                source: object_store::Error::PermissionDenied { .. },
                ..
            }
            | Error::Backend {
                status: Some(403), ..
            } => true,
            Error::Backend { source, .. } => source.to_string().contains("AccessDenied"),
            _ => false,
        }
    }

    pub(crate) fn backend(op: &'static str, path: &str, source: object_store::Error) -> Self {
        Self::backend_after(op, path, source, 1, None)
    }

    /// A backend failure after `attempts` attempts, the last one answered with `status`.
    pub(crate) fn backend_after(
        op: &'static str,
        path: &str,
        source: object_store::Error,
        attempts: u32,
        status: Option<u16>,
    ) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                path: path.to_owned(),
            },
            source => Error::Backend {
                op,
                path: path.to_owned(),
                attempts,
                status,
                source,
            },
        }
    }

    pub(crate) fn corrupt(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// ` after 11 attempts (last HTTP status 503)`, or nothing for one attempt without answer.
fn attempts_text(attempts: u32, status: Option<u16>) -> String {
    let status = status.map(|s| format!("last HTTP status {s}"));
    match (attempts, status) {
        (0 | 1, None) => String::new(),
        (0 | 1, Some(s)) => format!(" ({s})"),
        (n, None) => format!(" after {n} attempts (no HTTP answer to the last)"),
        (n, Some(s)) => format!(" after {n} attempts ({s})"),
    }
}

impl From<Error> for RepositoryError {
    fn from(e: Error) -> Self {
        RepositoryError::new(e.kind(), e.is_retryable(), e)
    }
}
