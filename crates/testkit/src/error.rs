//! Errors the emulator reports to clients, in TDengine's shape: a numeric code and a message.
//!
//! Codes are TDengine's (`include/util/taoserror.h`; the same table ships in the `taos-error`
//! crate). Clients see `code & 0xffff` and the message, exactly as taosAdapter forwards them.

use std::fmt;

/// An error with a TDengine error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuError {
    /// TDengine error code (the low 16 bits are what clients see).
    pub code: u32,
    /// Human-readable message.
    pub message: String,
}

impl EmuError {
    /// An error with a code and message.
    pub fn new(code: u32, message: impl Into<String>) -> EmuError {
        EmuError {
            code,
            message: message.into(),
        }
    }

    /// `0x2600` syntax error, with TDengine's "syntax error near" prefix.
    pub fn syntax(near: impl fmt::Display) -> EmuError {
        EmuError::new(code::SYNTAX_ERROR, format!("syntax error near \"{near}\""))
    }
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[0x{:04X}] {}", self.code & 0xffff, self.message)
    }
}

impl std::error::Error for EmuError {}

/// TDengine error codes used by the emulator.
pub mod code {
    /// Operation not supported.
    pub const OPS_NOT_SUPPORT: u32 = 0x0100;
    /// Invalid message (malformed request frame).
    pub const INVALID_MSG: u32 = 0x0115;
    /// Invalid parameters.
    pub const INVALID_PARA: u32 = 0x0118;
    /// SQL statement too long (over `TSDB_MAX_ALLOWED_SQL_LEN`).
    pub const EXCEED_SQL_LIMIT: u32 = 0x0219;
    /// Invalid timestamp format.
    pub const INVALID_TIMESTAMP: u32 = 0x0127;
    /// Authentication failure (wrong password).
    pub const AUTH_FAILURE: u32 = 0x0357;
    /// Invalid user.
    pub const INVALID_USER: u32 = 0x0351;
    /// Table already exists (super table).
    pub const STB_ALREADY_EXIST: u32 = 0x0360;
    /// Super table does not exist (mnode).
    pub const STB_NOT_EXIST: u32 = 0x0362;
    /// Tag does not exist.
    pub const TAG_NOT_EXIST: u32 = 0x036A;
    /// Column already exists.
    pub const COLUMN_ALREADY_EXIST: u32 = 0x036B;
    /// Column does not exist.
    pub const COLUMN_NOT_EXIST: u32 = 0x036C;
    /// Database already exists.
    pub const DB_ALREADY_EXIST: u32 = 0x0381;
    /// Invalid database options.
    pub const INVALID_DB_OPTION: u32 = 0x0382;
    /// Database not exist.
    pub const DB_NOT_EXIST: u32 = 0x0388;
    /// WAL retention period is zero (topic on a database without WAL retention).
    pub const WAL_RETENTION_ZERO: u32 = 0x038C;
    /// Table already exists (vnode).
    pub const TABLE_ALREADY_EXIST: u32 = 0x0603;
    /// Timestamp data out of range (older than KEEP).
    pub const TIMESTAMP_OUT_OF_RANGE: u32 = 0x060B;
    /// Syntax error.
    pub const SYNTAX_ERROR: u32 = 0x2600;
    /// Invalid column name.
    pub const INVALID_COLUMN: u32 = 0x2602;
    /// Table does not exist (parser).
    pub const TABLE_NOT_EXIST: u32 = 0x2603;
    /// Invalid value type.
    pub const WRONG_VALUE_TYPE: u32 = 0x2605;
    /// Tags number not matched.
    pub const TAGS_NOT_MATCHED: u32 = 0x260D;
    /// Database not specified.
    pub const DB_NOT_SPECIFIED: u32 = 0x2616;
    /// Invalid identifier name.
    pub const INVALID_IDENTIFIER: u32 = 0x2617;
    /// Incorrect TIMESTAMP value.
    pub const INCORRECT_TIMESTAMP: u32 = 0x2635;
    /// Value too long for column/tag.
    pub const VALUE_TOO_LONG: u32 = 0x2653;
    /// Invalid JSON format.
    pub const INVALID_JSON: u32 = 0x0221;
    /// Invalid tag name (parser).
    pub const INVALID_TAG_NAME: u32 = 0x260E;
    /// Table is not a super table.
    pub const NOT_STABLE: u32 = 0x022F;
    /// Duplicated column names (parser).
    pub const DUPLICATED_COLUMN: u32 = 0x263C;
    /// Invalid operation.
    pub const INVALID_OPERATION: u32 = 0x0200;
    /// Invalid function name.
    pub const INVALID_FUNCTION: u32 = 0x264D;
    /// Tag already exists.
    pub const TAG_ALREADY_EXIST: u32 = 0x0369;
    /// Only one tag if there is a json tag.
    pub const ONLY_ONE_JSON_TAG: u32 = 0x2633;
    /// Topic already exists.
    pub const TOPIC_ALREADY_EXIST: u32 = 0x03E0;
    /// Topic not exist.
    pub const TOPIC_NOT_EXIST: u32 = 0x03E1;
    /// Topic subscribed cannot be dropped.
    pub const TOPIC_SUBSCRIBED: u32 = 0x03EB;
    /// Topic must be dropped first (DROP DATABASE of a database a topic reads).
    pub const TOPIC_MUST_BE_DROPPED: u32 = 0x03ED;
    /// TMQ: no committed info (`committed` of a group that never committed; TDengine
    /// returns it as the offset value, `-2147467247`).
    pub const TMQ_NO_COMMITTED: u32 = 0x4011;
    /// TMQ: offset out of range (`TSDB_CODE_TMQ_VERSION_OUT_OF_RANGE`,
    /// `include/util/taoserror.h`).
    pub const TMQ_VERSION_OUT_OF_RANGE: u32 = 0x4007;
    /// TMQ: vgroup does not belong to this consumer (`TSDB_CODE_TMQ_INVALID_VGID`).
    pub const TMQ_INVALID_VGID: u32 = 0x4008;
    /// TMQ: topic does not belong to this consumer (`TSDB_CODE_TMQ_INVALID_TOPIC`).
    pub const TMQ_INVALID_TOPIC: u32 = 0x4009;
    /// WAL file is corrupted (the emulator's WAL files mirror could not be written, or a
    /// batch could not be read back from the WAL spill file).
    pub const WAL_FILE_CORRUPTED: u32 = 0x1001;
    /// Invalid result id (fetch of a freed or unknown result).
    pub const INVALID_RESULT_ID: u32 = 0xFFFF;
}
