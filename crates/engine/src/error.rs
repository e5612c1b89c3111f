//! Errors of the engine.
//!
//! Rules: every variant names what failed and where (a path, a table); variants say whether
//! retrying can help ([`TrackerError::is_retryable`]); sources are kept.

use std::path::PathBuf;

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
        /// Bucket index.
        bucket: i64,
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
    /// The caller asked for something impossible.
    #[error("{0}")]
    InvalidRequest(String),
}

impl EngineError {
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
