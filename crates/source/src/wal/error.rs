//! Errors of the `wal` change feed.
//!
//! Kept apart from the connector's [`crate::Error`] because nothing here talks to a server: the
//! failures are about files on the TDengine host. Same rules: variants named for the failure,
//! the file, offset, vnode and version concerned, whether a retry can help.

use std::{io, path::PathBuf};

use taosbackup_core::{SourceError, SourceErrorKind};

/// What can go wrong reading TDengine WAL files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file or directory could not be read or written.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done ("read", "list", "write the state file", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// No vnode of the database was found under the configured path.
    #[error(
        "no vnode of database {database:?} under {path} (vnodes found: {found}); set wal_path to \
         TDengine's dataDir (or its vnode/ directory) on this host"
    )]
    NoVnodes {
        /// The path searched.
        path: PathBuf,
        /// The database wanted.
        database: String,
        /// The databases of the vnodes that were found, for the message.
        found: String,
    },
    /// `vnode.json` or `meta-ver<N>` is not what TDengine writes.
    #[error(
        "unexpected content in {path}: {reason}; is wal_path TDengine 3.x's dataDir on this host?"
    )]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The feed's state file is unreadable or belongs to another database.
    #[error(
        "wal feed state file {path}: {reason}; point state_file elsewhere or delete it (the \
         feed then starts fresh and the next backup is a full one)"
    )]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The WAL bodies are encrypted and no key handling exists.
    #[error(
        "the WAL of {path} is encrypted (wal.encryptAlgorithm = {algorithm}, SM4); the wal \
         change feed cannot read encrypted WALs: use change_feed = \"tmq\" for this database"
    )]
    Encrypted {
        /// The vnode directory.
        path: PathBuf,
        /// The algorithm code from `vnode.json`.
        algorithm: i64,
    },
    /// A record failed its checks (magic, CRC, version sequence).
    #[error(
        "corrupt WAL record in {path} at offset {offset}: {reason}; the WAL file is damaged or \
         not a TDengine 3.x WAL: check the TDengine server's disk, or use change_feed = \"tmq\""
    )]
    Corrupt {
        /// The `.log` file.
        path: PathBuf,
        /// Byte offset of the record head.
        offset: u64,
        /// Which check failed.
        reason: String,
    },
    /// A WAL or message version this reader does not know.
    #[error(
        "unsupported WAL format in {path} at offset {offset}: {reason}; the format was taken \
         from TDengine 3.3.7 (commit a4874a8c), use change_feed = \"tmq\" with this server"
    )]
    Unsupported {
        /// The `.log` file.
        path: PathBuf,
        /// Byte offset of the record head.
        offset: u64,
        /// What is unknown.
        reason: String,
    },
    /// A record body could not be decoded.
    #[error(
        "cannot decode WAL record vnode:{vnode} version {version} (message type {msg_type}): \
         {reason}; the body is not in the format taken from TDengine 3.3.7 (commit a4874a8c): \
         use change_feed = \"tmq\" with this server"
    )]
    BadBody {
        /// The vgroup id.
        vnode: i32,
        /// The record's version.
        version: i64,
        /// The message type number.
        msg_type: i16,
        /// What is wrong.
        reason: String,
    },
    /// A record names a table uid that neither the WAL nor the catalog knows.
    #[error(
        "WAL record vnode:{vnode} version {version} changes table uid {uid}, which neither the \
         WAL nor the database catalog knows; the change cannot be attributed to a table, so \
         the next backup should be a full one (reset the change tracking state)"
    )]
    UnknownTable {
        /// The vgroup id.
        vnode: i32,
        /// The record's version.
        version: i64,
        /// The table uid.
        uid: i64,
    },
    /// The WAL was purged while the feed was reading it.
    #[error(
        "vnode:{vnode}: version {position} was purged from the WAL (first version on disk: \
         {first}) while the feed was reading; restart the feed: it will report a gap"
    )]
    Purged {
        /// The vgroup id.
        vnode: i32,
        /// The version the feed needed.
        position: i64,
        /// The first version still on disk.
        first: i64,
    },
    /// `next_batch`, `positions` or `commit` before `start`.
    #[error("the wal change feed was used before start()")]
    NotStarted,
    /// Committed positions that do not belong to this feed.
    #[error("invalid position {key:?} = {value}: {reason}")]
    BadPosition {
        /// The key.
        key: String,
        /// The value.
        value: i64,
        /// Why.
        reason: String,
    },
    /// The table resolver (the catalog) failed.
    #[error("looking up table names in the catalog: {0}")]
    Resolver(#[source] SourceError),
}

impl WalError {
    /// Whether retrying could succeed: I/O failures and the catalog's retryable failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            WalError::Io { .. } => true,
            WalError::Resolver(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// What kind of failure this is (the class [`SourceError`] carries).
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            WalError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                SourceErrorKind::NotFound
            }
            WalError::NoVnodes { .. } => SourceErrorKind::NotFound,
            WalError::Encrypted { .. }
            | WalError::Unsupported { .. }
            | WalError::BadPosition { .. }
            | WalError::NotStarted => SourceErrorKind::InvalidInput,
            WalError::Resolver(s) => s.kind(),
            _ => SourceErrorKind::Other,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        WalError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<WalError> for SourceError {
    fn from(e: WalError) -> Self {
        SourceError::new(e.kind(), e.is_retryable(), e)
    }
}
