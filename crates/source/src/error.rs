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
        "{} failed on {endpoint}{}{}: [{code:#06X}] {message}",
        statement.purpose.unwrap_or(statement.operation),
        version_suffix(&statement.server_version),
        context_suffix(database, table)
    )]
    Server {
        /// What was being done, why, and to which server version (boxed: the enum stays
        /// small).
        statement: Box<StatementInfo>,
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

/// Why a statement was sent, and the version of the server that refused it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementInfo {
    /// What was being done ("query", "write raw block", …).
    pub operation: &'static str,
    /// Why the statement was sent ("reading the catalog (ins_tables)"), when known.
    pub purpose: Option<&'static str>,
    /// The server's version (`SELECT SERVER_VERSION()`), when it could be read.
    pub server_version: Option<String>,
}

fn version_suffix(version: &Option<String>) -> String {
    match version {
        Some(v) => format!(" (TDengine {v})"),
        None => String::new(),
    }
}

fn context_suffix(database: &Option<String>, table: &Option<String>) -> String {
    match (database, table) {
        (Some(d), Some(t)) => format!(" (table {d}.{t})"),
        (Some(d), None) => format!(" (database {d})"),
        (None, Some(t)) => format!(" (table {t})"),
        (None, None) => String::new(),
    }
}

/// Codes that mean the connection or the cluster's leadership failed, not the statement: a
/// retry on a fresh connection can succeed.
///
/// TDengine's (`include/util/taoserror.h`; the set the client itself redirects or retries on,
/// `NEED_REDIRECT_ERROR` in `include/common/tmsg.h`, and the RPC transport errors):
/// 0x0013 is TIME_UNSYNCED and 0x0015 RPC_FQDN_ERROR — neither is transient.
/// The connector's (taos-ws 0.12, `WS_ERROR_NO`): 0xE001–0xE005.
pub const RETRYABLE_CODES: &[(u32, &str)] = &[
    (
        0x000B,
        "TSDB_CODE_RPC_NETWORK_UNAVAIL: unable to establish connection",
    ),
    (0x0018, "TSDB_CODE_RPC_BROKEN_LINK: connection is broken"),
    (0x0019, "TSDB_CODE_RPC_TIMEOUT: connection read timeout"),
    (
        0x0020,
        "TSDB_CODE_RPC_SOMENODE_NOT_CONNECTED: a vgroup could not be connected",
    ),
    (
        0x0021,
        "TSDB_CODE_RPC_SOMENODE_BROKEN_LINK: a node's connection is broken",
    ),
    (0x0023, "TSDB_CODE_RPC_NETWORK_ERROR: network error"),
    (0x0024, "TSDB_CODE_RPC_NETWORK_BUSY: network busy"),
    (0x0130, "TSDB_CODE_APP_IS_STARTING: the node is starting"),
    (0x0131, "TSDB_CODE_APP_IS_STOPPING: the node is stopping"),
    (
        0x090C,
        "TSDB_CODE_SYN_NOT_LEADER: sync leader is unreachable",
    ),
    (0x0914, "TSDB_CODE_SYN_RESTORING: sync leader is restoring"),
    (0xE001, "taos-ws: WebSocket error"),
    (0xE002, "taos-ws: connection closed"),
    (0xE003, "taos-ws: send timeout"),
    (0xE004, "taos-ws: receive timeout"),
    (0xE005, "taos-ws: I/O error"),
];

/// Connector code for "failed", used for errors without a TDengine code (I/O, handshake).
const CODE_FAILED: u32 = 0xFFFF;

/// Whether an error code (with its message) is a transient one: a code of
/// [`RETRYABLE_CODES`], or a connector failure without a code whose message says the
/// connection broke. Authentication (0x0357), missing database or table, syntax errors and
/// every other server code are permanent.
pub fn is_transient(code: u32, message: &str) -> bool {
    if RETRYABLE_CODES.iter().any(|(c, _)| *c == code) {
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
            statement: Box::new(StatementInfo {
                operation,
                ..StatementInfo::default()
            }),
            endpoint: endpoint.to_string(),
            database: database.map(str::to_string),
            table: table.map(str::to_string),
            transient: is_transient(code, &message),
            code,
            message,
        }
    }

    /// Adds the server's version to a server error (for the message).
    pub(crate) fn with_server_version(mut self, version: Option<String>) -> Error {
        if let Error::Server { statement, .. } = &mut self {
            if statement.server_version.is_none() {
                statement.server_version = version;
            }
        }
        self
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

    /// What kind of failure this is (the class [`SourceError`] carries): a code of
    /// [`RETRYABLE_CODES`] is a connection failure; authentication, missing objects and
    /// refusals are told apart by TDengine's code.
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            Error::InvalidDsn { .. } => SourceErrorKind::Config,
            Error::InvalidRequest { .. } | Error::UnrepresentableValue { .. } => {
                SourceErrorKind::InvalidInput
            }
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
        for code in [
            0x000B, 0x0018, 0x0019, 0x0020, 0x0021, 0x0023, 0x090C, 0x0914,
        ] {
            assert!(is_transient(code, ""), "{code:#06X}");
        }
        // taoserror.h: 0x0013 is TIME_UNSYNCED, 0x0015 RPC_FQDN_ERROR (the old table had
        // them as broken link and timeout).
        assert!(!is_transient(
            0x0013,
            "Client and server's time is not synchronized"
        ));
        assert!(!is_transient(0x0015, "Unable to resolve FQDN"));
        let e = Error::Server {
            statement: Box::new(StatementInfo {
                operation: "query",
                purpose: Some("reading the catalog (ins_tables)"),
                server_version: Some("3.3.6.0".into()),
            }),
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
        assert!(
            e.to_string().starts_with(
                "reading the catalog (ins_tables) failed on ws://h:6041 (TDengine 3.3.6.0)"
            ),
            "{e}"
        );
        let s: SourceError = e.into();
        assert!(!s.is_retryable());
    }
}
