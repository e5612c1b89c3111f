//! The engine with the real source (`taos` connector) and sink (repository) against the
//! emulator: randomised scenarios with every feed, runs, source faults, reliability.

mod common;
mod reliability;
mod runs;
mod scenarios;
mod source_faults;
mod wal_scenarios;
