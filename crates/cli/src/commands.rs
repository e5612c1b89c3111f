//! One module per command; each returns the exit code of a run that did not fail (a failure
//! is an error, reported once in `main`).

pub mod backup;
pub mod feed;
pub mod forget;
pub mod init;
pub mod key;
pub mod list;
pub mod migrate;
pub mod pin;
pub mod plan;
pub mod prune;
pub mod restore;
pub mod show;
pub mod verify;
