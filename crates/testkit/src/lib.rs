//! Test harness for taosbackup: `taos-emu`, a TDengine wire emulator, and data generators.
//!
//! The emulator speaks taosAdapter's WebSocket protocol as the published `taos` 0.12.3 crate
//! speaks it, over a real TCP socket, backed by an in-memory store with TDengine 3.x semantics.
//!
//! - [`Emulator`] starts a server in-process; [`EmulatorHandle::dsn`] is the DSN to connect to.
//! - [`Store`] is the in-memory database behind it; [`raw_block`] is TDengine's raw block codec.
//! - [`fake`]: in-memory implementations of `taosbackup-core`'s seams (`Source`,
//!   `ChangeFeed`, `Repository`) with a scriptable workload, for tests without the emulator;
//!   [`feed_suite`]: the conformance suite every `ChangeFeed` runs.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cells;
mod error;
pub mod fake;
pub mod feed_suite;
mod le;
mod profile;
pub mod raw_block;
mod server;
mod sql;
mod store;
mod types;
pub mod walfile;

pub use error::{EmuError, code};
pub use profile::Profile;
pub use server::{
    Emulator, EmulatorConfig, EmulatorHandle, Fault, FaultAction, FaultPoint, FaultStats,
    SERVER_VERSION_ENV, Trigger,
};
pub use sql::keywords;
pub use store::{
    DEFAULT_WAL_SEGMENT_SIZE, Outcome, ResultSet, Session, Store, StoreConfig, tmq_meta,
};
pub use types::{ColumnData, Field, Precision, Ty, Value};
