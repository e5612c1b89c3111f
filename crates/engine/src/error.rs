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
