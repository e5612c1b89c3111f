//! Integration tests of the source against the emulator (`taos-emu` over a socket), compiled
//! into one binary.

mod conformance;
mod emulator;
mod feed_suite;
mod tmq_feed;
mod wal_feed;
