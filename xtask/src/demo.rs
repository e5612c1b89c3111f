//! `cargo xtask demo`: the main job end to end. Builds the `taosbackup` binary and the demo
//! driver (crates/testkit/examples/demo.rs) in release mode; the driver starts the emulator on a
//! free loopback port, loads a meters-style database, and runs `taosbackup` init, a full and
//! an incremental backup (`--engine bitmap`) around late rows, overwrites, a delete, a new and a
//! dropped table, `plan`, `list`, `show`, restores of both points into new databases compared
//! value by value with the source, and `verify --read-data` — printing every command and result.

use std::process::Command;

use crate::util::{cargo, root, sh};

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("demo: unknown argument {a:?}"));
    }
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
        "demo",
    ]))?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
        .join("release");
    sh(Command::new(target.join("examples").join("demo")).arg(target.join("taosbackup")))?;
    println!("demo: done");
    Ok(())
}
