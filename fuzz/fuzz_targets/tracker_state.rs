//! Fuzz target `tracker_state`: see crates/sink/tests/sink/fuzz_tracker.rs.
#![no_main]

use std::sync::OnceLock;

#[allow(dead_code)]
#[path = "../../crates/sink/tests/sink/fuzz_tracker.rs"]
mod fuzz_tracker;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_tracker::run(dir().path(), data);
});
