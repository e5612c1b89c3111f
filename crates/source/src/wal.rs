//! The `wal` change feed (**experimental**): reads TDengine 3.x vnode WAL files on the server
//! host, so tracking changes costs the server nothing and needs no topic.
//!
//! The format (`docs/wal-format.md`) was taken from TDengine's source at commit
//! `a4874a8c64bbcfd0ef9865bcaa4df7951a9f9557` (3.3.7 line) and has not yet been checked
//! against a real server.
//!
//! - [`WalFeed`] implements [`taosbackup_core::ChangeFeed`]: one stream per vnode of the
//!   database (`"vnode:<vgId>"` → next WAL version), tailing records as they are written,
//!   across segment rotation; purge past a committed position is a
//!   [`taosbackup_core::FeedStart::Gap`].
//! - [`TableResolver`] names uids the WAL does not name: [`CatalogResolver`] reads the
//!   catalog through the connector; [`MapResolver`] is an in-memory one.
//! - [`WalError`]: what can go wrong (corrupt records name the file and offset; encrypted or
//!   unknown formats are refused rather than guessed).

mod catalog;
mod decode;
mod error;
mod feed;
mod vnode;

pub use catalog::CatalogResolver;
pub use error::WalError;
pub use feed::{MapResolver, ResolvedTable, TableResolver, WalFeed, WalFeedOptions};
