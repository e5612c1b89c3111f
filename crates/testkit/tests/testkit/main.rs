//! Integration tests of the emulator and the fakes, compiled into one binary.

mod faults;
mod feed_suite;
mod protocol;
mod raw_block;
mod sql;
mod sync_api;
mod tmq;
mod versions;
mod wal_files;
mod walfile;
