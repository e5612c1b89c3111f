//! `cargo xtask bench <what>`: benchmarks that report figures; they never fail on a slow
//! machine. Figures go into docs/performance.md by hand, with the command and the date.

use crate::util::{cargo, sh};

const KNOWN: &str = "emu [ROWS], sink, tracker";

pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
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
            cmd.args(&args[1..]);
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
            .args(&args[1..])),
        Some("tracker") => sh(cargo()
            .args([
                "bench",
                "-p",
                "taosbackup-engine",
                "--bench",
                "tracker",
                "--",
            ])
            .args(&args[1..])),
        Some(other) => Err(format!(
            "bench: unknown benchmark {other:?} (known: {KNOWN})"
        )),
        None => Err(format!("bench: name a benchmark (known: {KNOWN})")),
    }
}
