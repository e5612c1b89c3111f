//! `cargo xtask bench <what>`: benchmarks that report figures; they never fail on a slow
//! machine. Figures go into docs/performance.md by hand, with the command and the date.

use std::process::Command;

use crate::util::{cargo, root, sh};

const KNOWN: &str = "backups [--tables N] [--backups M] [--repeat R] [--hold], e2e [--scale small|medium|large|xlarge|all|LIST] [--tables N] [--rows-per-table M] \
                     [--parallel P] [--fixed-blocks K] [--incr-rounds K] [--perf DIR [--perf-steps LIST] [--perf-hz N]] \
                     [--compare OTHER-taosbackup [--rounds R] [--compare-step full|pct|restore|dictionaries]], emu [ROWS], sink, tracker";

/// The arguments after the benchmark's name, less one leading `--`. `cargo xtask bench
/// tracker -- --warm-up-time 1` is how cargo users write it, but this task adds its own `--`
/// before criterion's arguments, and criterion takes everything after a second `--` as
/// filters (it failed with "unexpected argument '1'").
fn passed(args: &[String]) -> &[String] {
    let rest = args.get(1..).unwrap_or_default();
    match rest.split_first() {
        Some((first, tail)) if first == "--" => tail,
        _ => rest,
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        // End to end (issue 8): the release `taosbackup` binary against the emulator, driven
        // by crates/testkit/examples/bench_e2e.rs, which prints a markdown table per scale
        // (`--scale small|medium|large|xlarge|all|LIST`; `all` is the first three) and, for several,
        // one side by side.
        Some("e2e") => {
            sh(cargo().args([
                "build",
                "--release",
                "-p",
                "taosbackup-cli",
                "--bin",
                "taosbackup",
                "-p",
                "taosbackup-testkit",
                "--example",
                "bench_e2e",
            ]))?;
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| root().join("target"))
                .join("release");
            sh(Command::new(target.join("examples").join("bench_e2e"))
                .arg(target.join("taosbackup"))
                .args(passed(args)))
        }
        // Issue 15: what the number of backups costs (crates/cli/examples/bench_backups.rs):
        // one-block and nothing-changed incrementals, list warm and cold, the objects a
        // restore reads, with 10 backups and with --backups (default 1,000), each --repeat
        // times (default 3).
        Some("backups") => {
            sh(cargo().args([
                "build",
                "--release",
                "-p",
                "taosbackup-cli",
                "--bin",
                "taosbackup",
                "--example",
                "bench_backups",
            ]))?;
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| root().join("target"))
                .join("release");
            sh(Command::new(target.join("examples").join("bench_backups"))
                .arg(target.join("taosbackup"))
                .args(passed(args)))
        }
        Some("emu") => {
            let mut cmd = cargo();
            cmd.args([
                "run",
                "--release",
                "-p",
                "taosbackup-testkit",
                "--example",
                "emu_bench",
                "--",
            ]);
            cmd.args(passed(args));
            sh(&mut cmd)
        }
        Some("sink") => sh(cargo()
            .args([
                "bench",
                "-p",
                "taosbackup-sink",
                "--bench",
                "pipeline",
                "--",
            ])
            .args(passed(args))),
        Some("tracker") => sh(cargo()
            .args([
                "bench",
                "-p",
                "taosbackup-engine",
                "--bench",
                "tracker",
                "--",
            ])
            .args(passed(args))),
        Some(other) => Err(format!(
            "bench: unknown benchmark {other:?} (known: {KNOWN})"
        )),
        None => Err(format!("bench: name a benchmark (known: {KNOWN})")),
    }
}

#[cfg(test)]
mod tests {
    use super::passed;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_leading_double_dash_is_dropped() {
        let with = strings(&["tracker", "--", "--warm-up-time", "1"]);
        let without = strings(&["tracker", "--warm-up-time", "1"]);
        assert_eq!(passed(&with), &without[1..]);
        assert_eq!(passed(&without), &without[1..]);
        // A second `--` is the caller's own and stays.
        let twice = strings(&["sink", "--", "--", "x"]);
        assert_eq!(passed(&twice), &strings(&["--", "x"])[..]);
        assert!(passed(&strings(&["emu"])).is_empty());
        assert!(passed(&[]).is_empty());
    }
}
