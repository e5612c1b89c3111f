//! Replays the fuzz regression corpus (`tests/fuzz_corpus/<target>/`: seeds and every
//! input a cargo-fuzz run found) through the same harness as the fuzz targets in `fuzz/`,
//! on the stable toolchain: each input must be accepted or refused with a typed error.
//!
//! `TAOSBACKUP_WRITE_FUZZ_SEEDS=1 cargo test -p taosbackup-sink --test sink fuzz_corpus::` writes
//! missing seed files (named by their BLAKE3) into the corpus.

use std::path::PathBuf;

use crate::fuzzing::{self, Outcome, Target};

fn corpus_dir(target: Target) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target.name())
}

fn corpus(target: Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Every corpus file of every target runs without a panic; the counts are printed for
/// docs/reliability.md.
#[test]
fn corpus_replays_without_panics() {
    for target in Target::ALL {
        let files = corpus(target);
        assert!(
            files.len() >= 2,
            "corpus of {} has {} files",
            target.name(),
            files.len()
        );
        let mut counts = [0usize; 3];
        for (path, bytes) in &files {
            let outcome = std::panic::catch_unwind(|| fuzzing::run(target, bytes))
                .unwrap_or_else(|_| panic!("{} panicked on {}", target.name(), path.display()));
            counts[outcome as usize] += 1;
        }
        println!(
            "{}: {} inputs, {} accepted, {} refused, {} skipped",
            target.name(),
            files.len(),
            counts[0],
            counts[1],
            counts[2]
        );
    }
}

/// The seeds are in the corpus (so `cargo fuzz run` starts from them), and the valid ones
/// are accepted: a harness that refused everything would make the fuzzing worthless.
#[test]
fn seeds_are_in_the_corpus_and_valid_objects_are_accepted() {
    let write = std::env::var_os("TAOSBACKUP_WRITE_FUZZ_SEEDS").is_some();
    for target in Target::ALL {
        let seeds = fuzzing::seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {}", target.name());
        for seed in &seeds {
            let path = corpus_dir(target).join(blake3::hash(seed).to_hex().as_str());
            if write {
                std::fs::create_dir_all(corpus_dir(target)).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            // Key files and config hold random ids, salts and times: only the other
            // targets' seeds are reproducible byte for byte.
            let deterministic = !matches!(target, Target::Key | Target::Config);
            if deterministic {
                assert!(
                    path.exists(),
                    "seed {} of {} is missing; rerun with TAOSBACKUP_WRITE_FUZZ_SEEDS=1",
                    path.display(),
                    target.name()
                );
            }
        }
        let expect_accepted: &[usize] = match target {
            Target::Pack => &[1],
            _ => &[0],
        };
        for &i in expect_accepted {
            assert_eq!(
                fuzzing::run(target, &seeds[i]),
                Outcome::Accepted,
                "valid seed {i} of {} refused",
                target.name()
            );
        }
        for (i, seed) in seeds.iter().enumerate() {
            if !expect_accepted.contains(&i) {
                assert_eq!(
                    fuzzing::run(target, seed),
                    Outcome::Refused,
                    "hostile seed {i} of {} accepted",
                    target.name()
                );
            }
        }
    }
}
