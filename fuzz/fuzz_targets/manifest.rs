//! Fuzz target `manifest`: see crates/sink/tests/sink/fuzzing.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/sink/tests/sink/fuzzing.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzzing::run(fuzzing::Target::Manifest, data);
});
