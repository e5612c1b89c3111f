//! Integration tests of the repository, compiled into one binary (one module per area;
//! `common` holds the shared fixtures and the storage emulators of `tests/common/storage.rs`).

mod common;
mod dictionary;
mod faults;
mod fuzz_corpus;
mod fuzzing;
mod gc;
mod immutable;
mod integrity;
mod levels;
mod locks;
mod migrate;
mod storage_faults;
mod suite;
