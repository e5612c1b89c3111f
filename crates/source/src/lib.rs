//! Everything taosbackup reads from or writes to TDengine, through the official `taos`
//! connector (WebSocket, or native through the dynamically loaded client library).
//!
//! # Brief overview
//!
//! * [`TaosSource`]: connects ([`ConnectOptions`]: DSN forms, credentials, pool size,
//!   retries, timeouts) and implements [`taosbackup_core::Source`]:
//!   - [`TaosSource::read_catalog`]: the catalog of a database in `4 + 3 × super tables`
//!     statements, tag values typed;
//!   - [`TaosSource::export`]: a table's rows for time ranges as raw-block
//!     [`BlockChunk`]s, streamed with bounded memory, adjacent ranges in one query,
//!     resumed after transient failures; [`TaosSource::export_parallel`] runs several tables
//!     over the pool;
//!   - [`TaosSource::create_schema`] and [`TaosSource::write_chunk`]: the restore writer.
//! * [`Error`]: what went wrong, with context and [`Error::is_retryable`].
//!
//! # Example
//!
//! ```no_run
//! use taosbackup_source::{ConnectOptions, TaosSource};
//!
//! # async fn run() -> Result<(), taosbackup_source::Error> {
//! let source = TaosSource::connect(ConnectOptions::new("ws://localhost:6041"))?;
//! let catalog = source.read_catalog("power").await?;
//! println!("{} tables", catalog.tables.len());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod catalog;
pub mod conformance;
mod conn;
mod dbopts;
mod dsn;
mod error;
mod estimate;
mod export;
mod export_tables;
mod raw;
mod restore;
mod source;
mod sql;
mod tencode;
mod tmq;
mod value;
mod wal;
mod wsquery;

pub use crate::{
    dbopts::OptionChange,
    dsn::{ConnectOptions, Credentials, DEFAULT_PASSWORD, DEFAULT_USER, Endpoint, Protocol},
    error::{Error, RETRYABLE_CODES, StatementInfo, is_transient},
    estimate::Estimate,
    restore::WriteMode,
    source::TaosSource,
    tmq::admin::{FEED_TOPIC_PREFIX, FeedGroup, FeedPosition, FeedTopic},
    tmq::{FeedError, MAX_NAME_LEN, TmqFeed, TmqFeedOptions, default_names},
    wal::{
        CatalogResolver, MapResolver, ResolvedTable, TableResolver, WalError, WalFeed,
        WalFeedOptions,
    },
};
pub use taosbackup_core::{BlockChunk, ExportRequest, RestoreOptions, WriteReport};
