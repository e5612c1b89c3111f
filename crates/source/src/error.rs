//! Errors of the TDengine source.
//!
//! Rules (as for every taosbackup library, see `taosbackup-core`'s `error.rs`): one
//! `#[non_exhaustive]` enum; variants named for the failure; context is the database, table
//! or endpoint concerned — never a password or token; every error says whether a retry can
//! help ([`Error::is_retryable`]); errors are returned, never logged and swallowed.

use std::time::Duration;

use taosbackup_core::{SourceError, SourceErrorKind};

/// The connector's error type.
pub type TaosError = taos::Error;

/// Everything that can go wrong talking to TDengine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The DSN or connection options cannot be used.
    #[error("invalid connection options for {endpoint}: {reason}")]
    InvalidDsn {
        /// The endpoint as given, without credentials.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// A native (`taos://`, `host:port`) DSN on a machine without the TDengine client library.
    #[error(
        "cannot connect to {endpoint} natively: the TDengine client library (libtaos) could not \
         be loaded ({detail}). Either install the TDengine client on this machine, or connect \
         through taosAdapter with a WebSocket DSN such as ws://{host}:6041"
    )]
    NativeClientMissing {
        /// The endpoint, without credentials.
        endpoint: String,
        /// The host, for the suggested WebSocket DSN.
        host: String,
        /// The loader's message.
        detail: String,
    },
    /// The server or the connection failed while running a statement.
    #[error(
        "{operation} on {endpoint}{}: [{code:#06X}] {message}",
        context_suffix(database, table)
    )]
    Server {
        /// What was being done ("query", "write raw block", …).
        operation: &'static str,
        /// The endpoint, without credentials.
        endpoint: String,
        /// The database concerned, when known.
        database: Option<String>,
        /// The table concerned, when known.
        table: Option<String>,
        /// TDengine or connector error code.
        code: u32,
        /// The server's message.
        message: String,
        /// Whether the code is a transient one (connection reset, timeouts).
        transient: bool,
    },
    /// A statement got no answer in time (the connection is dropped and not reused).
    #[error(
        "{operation} on {endpoint}{} timed out after {timeout:?}",
        context_suffix(database, table)
    )]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The endpoint, without credentials.
        endpoint: String,
        /// The database concerned, when known.
        database: Option<String>,
        /// The table concerned, when known.
        table: Option<String>,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Restore refused to write into an existing database.
    #[error(
        "target database {database} already exists on {endpoint}; choose another name or allow \
         restoring into an existing database"
    )]
    TargetExists {
        /// The target database.
        database: String,
        /// The endpoint, without credentials.
        endpoint: String,
    },
    /// The server answered with something this crate does not understand.
    #[error(
        "unexpected reply to {what}{}: {reason}",
        context_suffix(database, table)
    )]
    UnexpectedReply {
        /// Which statement.
        what: String,
        /// The database concerned, when known.
        database: Option<String>,
        /// The table concerned, when known.
        table: Option<String>,
        /// What was wrong.
        reason: String,
    },
    /// A raw block that cannot be parsed or rewritten.
    #[error("invalid raw block{}: {reason}", context_suffix(&None, table))]
    InvalidBlock {
        /// The table concerned, when known.
        table: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A value that has no SQL literal (for example a NaN tag).
    #[error("value of {column} in {table} cannot be written as SQL: {reason}")]
    UnrepresentableValue {
        /// The table.
        table: String,
        /// The column or tag.
        column: String,
        /// Why.
        reason: String,
    },
    /// The caller asked for something impossible (for example overlapping export ranges).
    #[error("invalid request for {database}.{table}: {reason}")]
    InvalidRequest {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A backed-up block does not fit the target table: a column the backup has is missing
    /// in the target, or has another type or a shorter length. Refused before anything is
    /// written, because TDengine's raw-block write would bind it silently wrong.
    #[error(
        "cannot restore into {database}.{table}: {reason}; restore into a new database, or \
         make the target table's columns match the backup's"
    )]
    SchemaMismatch {
        /// The target database.
        database: String,
        /// The target table.
        table: String,
        /// Which column and what differs.
        reason: String,
    },
    /// A chunk's frame could not be decoded.
    #[error(transparent)]
    ChunkFormat(#[from] taosbackup_core::ChunkFormatError),
}

fn context_suffix(database: &Option<String>, table: &Option<String>) -> String {
    match (database, table) {
        (Some(d), Some(t)) => format!(" (table {d}.{t})"),
        (Some(d), None) => format!(" (database {d})"),
        (None, Some(t)) => format!(" (table {t})"),
        (None, None) => String::new(),
    }
}

/// Connector codes of taos-ws 0.12 (`WS_ERROR_NO`) and TDengine codes that mean the
/// connection, not the statement, failed.
const TRANSIENT_CODES: &[u32] = &[
    0xE001, // websocket error
    0xE002, // connection closed
    0xE003, // send timeout
    0xE004, // receive timeout
    0xE005, // I/O error
    0x000B, // RPC: unable to establish connection
    0x0013, // RPC: network unavailable / broken link (TSDB_CODE_RPC_BROKEN_LINK)
    0x0015, // RPC: timeout
];

/// Connector code for "failed", used for errors without a TDengine code (I/O, handshake).
const CODE_FAILED: u32 = 0xFFFF;

/// Whether a connector error is a transient one: connection closed or reset, timeouts,
/// the connector's 0xE001–0xE005 WebSocket codes. Authentication (0x0357), missing database or
/// table, syntax errors and every other server code are permanent.
pub fn is_transient(code: u32, message: &str) -> bool {
    if TRANSIENT_CODES.contains(&code) {
        return true;
    }
    if code == CODE_FAILED || code == 0 {
        let m = message.to_ascii_lowercase();
        return [
            "connection",
            "reset",
            "broken pipe",
            "closed",
            "timed out",
            "timeout",
            "websocket",
            "io error",
        ]
        .iter()
        .any(|k| m.contains(k));
    }
    false
}

impl Error {
    /// Builds a [`Error::Server`] from a connector error, classifying it.
    pub(crate) fn server(
        operation: &'static str,
        endpoint: &str,
        database: Option<&str>,
        table: Option<&str>,
        err: TaosError,
    ) -> Error {
        let code = u32::from(err.code()) & 0xFFFF;
        let message = err.message();
        let message = if message.is_empty() {
            err.to_string()
        } else {
            message
        };
        Error::Server {
            operation,
            endpoint: endpoint.to_string(),
            database: database.map(str::to_string),
            table: table.map(str::to_string),
            transient: is_transient(code, &message),
            code,
            message,
        }
    }

    /// Whether retrying the same operation (on a fresh connection) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server { transient, .. } => *transient,
            Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The TDengine or connector error code, for server errors.
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn kind(&self) -> SourceErrorKind {
        match self {
            Error::InvalidDsn { .. }
            | Error::InvalidRequest { .. }
            | Error::UnrepresentableValue { .. } => SourceErrorKind::InvalidInput,
            Error::NativeClientMissing { .. } | Error::Timeout { .. } => {
                SourceErrorKind::Connection
            }
            Error::TargetExists { .. } => SourceErrorKind::AlreadyExists,
            Error::SchemaMismatch { .. } => SourceErrorKind::Rejected,
            Error::Server {
                code, transient, ..
            } => match code {
                _ if *transient => SourceErrorKind::Connection,
                0x0357 | 0x0351 | 0xE006 => SourceErrorKind::Authentication,
                0x0388 | 0x2603 | 0x0362 => SourceErrorKind::NotFound,
                _ => SourceErrorKind::Rejected,
            },
            Error::UnexpectedReply { .. } | Error::InvalidBlock { .. } | Error::ChunkFormat(_) => {
                SourceErrorKind::Other
            }
        }
    }
}

impl From<Error> for SourceError {
    fn from(e: Error) -> SourceError {
        SourceError::new(e.kind(), e.is_retryable(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(is_transient(0xE002, "received close message"));
        assert!(is_transient(0xE004, ""));
        assert!(is_transient(0xFFFF, "Connection reset by peer"));
        assert!(!is_transient(0x0357, "Authentication failure"));
        assert!(!is_transient(0x2603, "Table does not exist"));
        assert!(!is_transient(0x2600, "syntax error near 'connection'"));
        assert!(!is_transient(0xFFFF, "invalid dsn"));
        let e = Error::Server {
            operation: "query",
            endpoint: "ws://h:6041".into(),
            database: Some("d".into()),
            table: Some("t".into()),
            code: 0x0357,
            message: "Authentication failure".into(),
            transient: false,
        };
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), SourceErrorKind::Authentication);
        assert!(e.to_string().contains("(table d.t)"), "{e}");
        let s: SourceError = e.into();
        assert!(!s.is_retryable());
    }
}
