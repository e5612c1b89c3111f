//! Errors of the engine.
//!
//! Rules (as for every taosbackup library, see `taosbackup_core::Error`): every variant
//! names what failed and where (a path, a table); every error says whether retrying can
//! help ([`EngineError::is_retryable`], [`TrackerError::is_retryable`]) and what kind of
//! failure it is ([`EngineError::kind`]); sources are kept. A bug — a worker that panicked,
//! a queue that closed under us, an invariant the engine itself broke — is
//! [`EngineError::Internal`], never [`EngineError::InvalidRequest`]: the operator cannot fix
//! it with other flags.

use std::path::PathBuf;

use taosbackup_core::{RepositoryErrorKind, SourceErrorKind};

/// What can go wrong when persisting or loading tracker state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// Reading or writing the state file failed.
    #[error("tracker state {path}: {op} failed: {source}")]
    Io {
        /// The state file (or its directory).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The state file exists but is not a valid tracker state (damaged, truncated, or from an
    /// incompatible version).
    #[error("tracker state {path} is unusable: {reason}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state was written for another bucket width or precision than the repository's.
    #[error("tracker state {path} was written for {found}, the repository uses {expected}")]
    Mismatch {
        /// The state file.
        path: PathBuf,
        /// What the file says.
        found: String,
        /// What the caller expects.
        expected: String,
    },
}

impl TrackerError {
    /// Whether retrying can help: only for I/O errors (a full disk may be freed).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TrackerError::Io { .. })
    }
}

/// What can go wrong in a backup, plan or restore run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The database (reading the catalog, exporting, writing on restore) failed.
    #[error("{context}: {source}")]
    Source {
        /// What the engine was doing.
        context: String,
        /// The source's error.
        source: taosbackup_core::SourceError,
    },
    /// The repository failed.
    #[error("{context}: {source}")]
    Repository {
        /// What the engine was doing.
        context: String,
        /// The repository's error.
        source: taosbackup_core::RepositoryError,
    },
    /// Persisting or loading the tracker failed.
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    /// A stored block could not be decoded.
    #[error("block {table} bucket {bucket} in blob {blob}: {reason}")]
    DamagedBlock {
        /// Table name.
        table: String,
        /// The block's bucket.
        bucket: taosbackup_core::Bucket,
        /// The blob id (hex).
        blob: String,
        /// What is wrong.
        reason: String,
    },
    /// No backup matches the requested point.
    #[error("no backup matches {what}: {hint}")]
    NoBackup {
        /// The point asked for.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A backup id prefix matches several backups.
    #[error("backup id prefix {prefix} matches {count} backups; give more digits")]
    AmbiguousBackupId {
        /// The prefix given.
        prefix: String,
        /// How many backups it matches.
        count: usize,
    },
    /// A snapshot's tree, shard or catalog object is damaged or inconsistent.
    #[error("backup {backup} is damaged: {reason}; run `taosbackup verify`")]
    DamagedSnapshot {
        /// The backup whose objects were read.
        backup: String,
        /// What is wrong.
        reason: String,
    },
    /// The change tracker cannot vouch for every change and `on_gap = "fail"` forbids
    /// falling back to a full backup.
    #[error(
        "incremental backup refused: {reason}; run a full backup (`--full`) or set on_gap = \"full\""
    )]
    Gap {
        /// Why the tracker is inconsistent.
        reason: String,
    },
    /// The run was cancelled (a signal); nothing was committed.
    #[error("cancelled; nothing was committed")]
    Cancelled,
    /// The caller asked for something impossible (a table that is not in the backup, an
    /// engine that needs change tracking without it): other flags or config fix it.
    #[error("{0}")]
    InvalidRequest(String),
    /// A bug in taosbackup: a worker panicked, an internal queue closed, an invariant broke.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The broad class of an [`EngineError`]: what the caller acts on (the CLI maps it to an
/// exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The database failed; its own class.
    Source(SourceErrorKind),
    /// The repository failed; its own class.
    Repository(RepositoryErrorKind),
    /// The tracker state could not be read or written.
    Tracker,
    /// Stored data (a block, a snapshot's objects) is damaged.
    Damaged,
    /// No backup matches the point asked for, or several do.
    NoBackup,
    /// An incremental backup was refused because changes may have been missed.
    Gap,
    /// The run was cancelled.
    Cancelled,
    /// The request cannot be served as given: the operator fixes the flags or config.
    InvalidRequest,
    /// A bug (see [`EngineError::Internal`]).
    Internal,
}

impl EngineError {
    /// The broad class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Source { source, .. } => ErrorKind::Source(source.kind()),
            EngineError::Repository { source, .. } => ErrorKind::Repository(source.kind()),
            EngineError::Tracker(_) => ErrorKind::Tracker,
            EngineError::DamagedBlock { .. } | EngineError::DamagedSnapshot { .. } => {
                ErrorKind::Damaged
            }
            EngineError::NoBackup { .. } | EngineError::AmbiguousBackupId { .. } => {
                ErrorKind::NoBackup
            }
            EngineError::Gap { .. } => ErrorKind::Gap,
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether running the same request again could succeed: when the database or the
    /// repository says so, or the tracker's file system failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Source { source, .. } => source.is_retryable(),
            EngineError::Repository { source, .. } => source.is_retryable(),
            EngineError::Tracker(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// A bug, with what was being done.
    pub(crate) fn internal(what: impl Into<String>) -> Self {
        EngineError::Internal(what.into())
    }

    pub(crate) fn source(context: impl Into<String>, source: taosbackup_core::SourceError) -> Self {
        EngineError::Source {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn repo(
        context: impl Into<String>,
        source: taosbackup_core::RepositoryError,
    ) -> Self {
        EngineError::Repository {
            context: context.into(),
            source,
        }
    }
}
