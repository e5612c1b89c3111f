//! Errors of the shared vocabulary.
//!
//! Rules for errors in taosbackup libraries (core states them, every crate follows them):
//!
//! 1. One `#[non_exhaustive]` error enum per crate; each variant is named for the failure
//!    (what went wrong), not for the module it came from.
//! 2. A variant carries the context an operator needs to act: the object path, backup id,
//!    table or database concerned, and keeps the underlying error as `source`.
//! 3. Every error can say whether retrying the same operation may help
//!    ([`Error::is_retryable`], [`RepositoryError::is_retryable`]).
//! 4. Library code never panics on input or I/O: no `unwrap()` on data that came from outside.
//! 5. Errors are reported once, at the top (the CLI); libraries return them and never log
//!    and swallow them.
//! 6. Every error enum has `kind()`, a small `#[non_exhaustive]` class the caller can act
//!    on without knowing the variant (the CLI turns kinds into exit codes in one place):
//!    a `Config` kind means the operator's options cannot be used (fix the flags or the
//!    config file), `InvalidInput` that a program passed something the library rejects, and
//!    the engine's `Internal` kind a bug (a worker that panicked, a queue that closed).

use std::fmt;

/// Errors raised by the vocabulary types of this crate (parsing ids, validating values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A textual id (blob id, backup id) was not of the expected form.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidId {
        /// Which kind of id ("blob id", "backup id").
        what: &'static str,
        /// The text that was rejected.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A bucket width outside the allowed range (minimum one minute).
    #[error("invalid bucket width of {seconds} s: {reason}")]
    InvalidBucketWidth {
        /// The rejected width in seconds.
        seconds: u64,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A timestamp or bucket index whose arithmetic would overflow an `i64`.
    #[error("bucket arithmetic overflows for {value} ({context})")]
    Overflow {
        /// The value that overflowed.
        value: i64,
        /// What was being computed.
        context: &'static str,
    },
    /// A manifest whose fields break the manifest invariants.
    #[error("backup manifest {backup_id} is invalid: {reason}")]
    InvalidManifest {
        /// The manifest's id.
        backup_id: String,
        /// Which invariant is broken.
        reason: String,
    },
    /// A tree, shard or catalog object that does not parse or breaks its invariants.
    #[error("snapshot object {object} is invalid: {reason}")]
    InvalidTreeObject {
        /// Which object (a blob id, with its role).
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// A format-1 chain whose parent links do not lead to its full backup.
    #[error("the chain of backup {backup_id} is broken: {reason}")]
    BrokenChain {
        /// The backup whose chain was walked.
        backup_id: String,
        /// What is missing or inconsistent.
        reason: String,
    },
}

/// The broad class of a core [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value (an id, a bucket width, a timestamp) was rejected.
    InvalidValue,
    /// A stored object (manifest, tree, shard, catalog, chain) breaks its invariants.
    Corrupt,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidValue => "invalid value",
            ErrorKind::Corrupt => "corrupt",
        })
    }
}

impl Error {
    /// The broad class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidId { .. } | Error::InvalidBucketWidth { .. } | Error::Overflow { .. } => {
                ErrorKind::InvalidValue
            }
            Error::InvalidManifest { .. }
            | Error::InvalidTreeObject { .. }
            | Error::BrokenChain { .. } => ErrorKind::Corrupt,
        }
    }

    /// Whether retrying the same operation could succeed. Never for these errors: they are
    /// about the values themselves.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The broad class of a [`RepositoryError`], so callers of the [`crate::Repository`] trait
/// can react without knowing the implementation's own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RepositoryErrorKind {
    /// The requested object (blob, manifest) does not exist.
    NotFound,
    /// The object exists but failed its integrity check (authentication tag, checksum,
    /// content hash) or could not be parsed.
    Corrupt,
    /// Another process holds a conflicting lock.
    Locked,
    /// The object already exists and must not be overwritten (for example a manifest id).
    AlreadyExists,
    /// The caller passed something the repository rejects (for example a manifest that
    /// references blobs that are not stored).
    InvalidInput,
    /// The repository's URL, options, password or retention policy as the operator gave
    /// them cannot be used: fixing the flags or the config file helps, retrying does not.
    Config,
    /// The storage backend failed (network, permissions, disk).
    Backend,
    /// Anything else.
    Other,
}

impl fmt::Display for RepositoryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RepositoryErrorKind::NotFound => "not found",
            RepositoryErrorKind::Corrupt => "corrupt",
            RepositoryErrorKind::Locked => "locked",
            RepositoryErrorKind::AlreadyExists => "already exists",
            RepositoryErrorKind::InvalidInput => "invalid input",
            RepositoryErrorKind::Config => "invalid configuration",
            RepositoryErrorKind::Backend => "backend failure",
            RepositoryErrorKind::Other => "other",
        };
        f.write_str(s)
    }
}

/// The error type of the [`crate::Repository`] trait: a kind, whether a retry can help, and
/// the implementation's own error as the source (downcast it for full detail).
#[derive(Debug, thiserror::Error)]
#[error("repository error ({kind}): {source}")]
pub struct RepositoryError {
    kind: RepositoryErrorKind,
    retryable: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl RepositoryError {
    /// Wraps an implementation error.
    pub fn new(
        kind: RepositoryErrorKind,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        RepositoryError {
            kind,
            retryable,
            source: source.into(),
        }
    }

    /// The broad class of the failure.
    pub fn kind(&self) -> RepositoryErrorKind {
        self.kind
    }

    /// Whether retrying the same call could succeed (transient backend failures, locks
    /// held by others).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The implementation's error, for downcasting.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.source.as_ref()
    }
}
