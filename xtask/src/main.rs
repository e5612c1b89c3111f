//! `cargo xtask …`: developer chores cargo alone cannot do.
//!
//! - `ci`: format check, clippy with `-D warnings`, the test-suite prerequisites (a Python
//!   virtualenv with moto's S3 server), the whole test suite, and `cargo deny`.
//! - `bench emu`: the emulator's `SELECT *` serving speed.
//! - `demo`: builds `taos-emu`, starts it on a free loopback port and runs the scripted
//!   example session against it with the real `taos` connector.

mod bench;
mod ci;
mod demo;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("moto") => ci::ensure_moto().map(|path| println!("{}", path.display())),
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
  ci     fmt check, clippy -D warnings, install test prerequisites (moto in .venv),
         cargo test --workspace, cargo deny check licenses bans sources
         (--skip-deny to leave out cargo-deny, --no-fail-fast to run every test)
  demo   start taos-emu and run the scripted session against it with the real connector
  bench  emu [ROWS]: how fast taos-emu serves SELECT * to the real connector
         sink: the repository write pipeline vs zstd alone (criterion)
         tracker: block marks/s, bitmap memory, snapshot time (criterion)
  moto   make sure .venv has moto's S3 server; print its path";
