//! `cargo xtask conformance`: the TDengine conformance suite (crates/source/src/conformance.rs).
//!
//! With `--dsn`, against that server: the one command an operator runs to learn whether
//! taosbackup's assumptions hold on their TDengine. Without, against `taos-emu` under every
//! behaviour set (or the `--server-version`s given), each on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::util::{cargo, root, sh};

/// The emulator's behaviour sets (crates/testkit/src/profile.rs).
const EMULATOR_VERSIONS: [&str; 3] = ["3.3.0.0", "3.3.6.0", "3.4.0.0"];

pub fn run(args: &[String]) -> Result<(), String> {
    let mut dsn = None;
    let mut versions = Vec::new();
    let mut pass = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dsn" => dsn = Some(it.next().ok_or("conformance: --dsn needs a value")?.clone()),
            "--server-version" => versions.push(
                it.next()
                    .ok_or("conformance: --server-version needs a value")?
                    .clone(),
            ),
            "--user" | "--filter" => {
                pass.push(a.clone());
                pass.push(
                    it.next()
                        .ok_or_else(|| format!("conformance: {a} needs a value"))?
                        .clone(),
                );
            }
            "--keep" | "--json" => pass.push(a.clone()),
            other => return Err(format!("conformance: unknown argument {other:?}")),
        }
    }
    if dsn.is_some() && !versions.is_empty() {
        return Err(
            "conformance: --server-version selects emulator versions; it does not go with --dsn"
                .into(),
        );
    }
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "taosbackup-source",
        "--example",
        "conformance",
    ]);
    if dsn.is_none() {
        build.args(["-p", "taosbackup-testkit", "--bin", "taos-emu"]);
    }
    sh(&mut build)?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
        .join("debug");
    let suite = target.join("examples").join("conformance");
    if let Some(dsn) = dsn {
        return sh(Command::new(&suite).arg("--dsn").arg(dsn).args(&pass));
    }
    if versions.is_empty() {
        versions = EMULATOR_VERSIONS.iter().map(|v| v.to_string()).collect();
    }
    let mut failed = Vec::new();
    for v in &versions {
        println!("conformance: taos-emu --server-version {v}");
        let mut emu = Emulator::start(&target.join("taos-emu"), v)?;
        if let Err(e) = sh(Command::new(&suite).arg("--dsn").arg(&emu.dsn).args(&pass)) {
            eprintln!("conformance: {e}");
            failed.push(v.clone());
        }
        emu.stop();
    }
    if failed.is_empty() {
        println!(
            "conformance: every check passed on taos-emu {}",
            versions.join(", ")
        );
        Ok(())
    } else {
        Err(format!(
            "conformance: checks failed on taos-emu {}",
            failed.join(", ")
        ))
    }
}

/// A `taos-emu` child process on a free loopback port.
struct Emulator {
    child: Child,
    dsn: String,
}

impl Emulator {
    fn start(bin: &std::path::Path, version: &str) -> Result<Emulator, String> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--server-version", version])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        match (read, line.trim().strip_prefix("listening on ")) {
            (Some(Ok(_)), Some(dsn)) => {
                let dsn = dsn.to_string();
                Ok(Emulator { child, dsn })
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("taos-emu did not start: {line:?}"))
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
