//! Integration tests of the repository, compiled into one binary.

#[path = "sink/common.rs"]
mod common;
#[path = "sink/dictionary.rs"]
mod dictionary;
#[path = "sink/faults.rs"]
mod faults;
#[path = "sink/gc.rs"]
mod gc;
#[path = "sink/immutable.rs"]
mod immutable;
#[path = "sink/integrity.rs"]
mod integrity;
#[path = "sink/locks.rs"]
mod locks;
#[path = "sink/migrate.rs"]
mod migrate;
#[path = "sink/suite.rs"]
mod suite;
