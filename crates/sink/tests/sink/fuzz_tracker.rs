//! Fuzz harness for the change tracker's state file (`taosbackup_engine::Tracker::load`),
//! shared by the cargo-fuzz target `tracker_state` and the corpus replay in
//! `tests/engine/reliability.rs`. It lives beside the repository harness
//! (`fuzzing.rs`) so that the whole regression corpus is in one place
//! (`crates/sink/tests/fuzz_corpus/`); only crates depending on the engine include it.
//!
//! Mode byte 0: the rest is the whole file. Mode 1: the rest is the body, and the harness
//! wraps it in a valid envelope (magic, version, length, BLAKE3), so the fuzzer reaches the
//! body decoder behind the checksum.

use std::path::Path;

use taosbackup_core::{BucketWidth, Precision};
use taosbackup_engine::Tracker;

/// The tracker file envelope (see `crates/engine/src/tracker/persist.rs`).
pub fn envelope(body: &[u8]) -> Vec<u8> {
    let mut out = b"TBTRACK\0".to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(blake3::hash(body).as_bytes());
    out
}

/// Loads `data` as a tracker file in `dir`; `Ok` when it loaded. A file that loads must
/// save and load again.
pub fn run(dir: &Path, data: &[u8]) -> bool {
    let bytes = match data.split_first() {
        Some((1, body)) => envelope(body),
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    let path = dir.join("tracker.state");
    std::fs::write(&path, &bytes).expect("write tracker file");
    let width = BucketWidth::from_seconds(3600).expect("width");
    match Tracker::load(&path, width) {
        Ok(t) => {
            t.save(&path).expect("a loaded tracker saves");
            Tracker::load(&path, width).expect("a saved tracker loads");
            true
        }
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "empty error: {e:?}");
            false
        }
    }
}

/// Seeds: a valid state with tables, positions and bitmaps, and a few hostile files.
pub fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let width = BucketWidth::from_seconds(3600).expect("width");
    let mut t = Tracker::new(width, Precision::Us);
    t.mark_rows("a", &[0, 3_600_000_000, -5]);
    t.mark_rows("b", &[7]);
    t.set_position("topic/vg2", 42);
    let path = dir.join("seed.state");
    t.save(&path).expect("save");
    let file = std::fs::read(&path).expect("read");
    // The body of the valid file, for the enveloped mode.
    let body = file[20..file.len() - 32].to_vec();
    let mut enveloped = vec![1];
    enveloped.extend_from_slice(&body);
    let mut raw = vec![0];
    raw.extend_from_slice(&file);
    // A table whose dirty bitmap claims 2^64-1 bytes.
    let mut huge = vec![1];
    huge.extend_from_slice(&3600u64.to_le_bytes());
    // precision us, consistent, no positions, no last backup, one table
    huge.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]);
    huge.extend_from_slice(&1u32.to_le_bytes());
    huge.extend_from_slice(&1u32.to_le_bytes());
    huge.extend_from_slice(b"t");
    huge.push(0);
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    vec![enveloped, raw, huge, vec![0, b'T', b'B']]
}
