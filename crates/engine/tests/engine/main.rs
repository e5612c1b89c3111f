//! Integration tests of the engine, compiled into one binary. They run against the in-memory
//! fakes of `taosbackup_testkit::fake` and need no emulator; the engine's tests through the
//! emulator and the real source and sink are end-to-end tests (`tests/engine/` at the root).

mod dictionaries;
mod groups;
mod load_state;
mod model;
mod restore_blocks;
mod tracker_model;
