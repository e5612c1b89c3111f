//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{cargo, root, sh};

/// The moto release the S3 tests run against.
const MOTO_SPEC: &str = "moto[server]>=5,<6";

pub fn run_steps(skip_deny: bool, no_fail_fast: bool) -> Result<(), String> {
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    // cargo-deny first: installing it builds in a temporary directory, and doing that before
    // the test build keeps the two from needing disk space at the same time.
    if !skip_deny {
        ensure_cargo_deny()?;
        sh(cargo().args(["deny", "check", "licenses", "bans", "sources"]))?;
    }
    // A one-shot CI build gains nothing from incremental caches, which only add to the size
    // of `target/` (an earlier CI run ran out of disk).
    let one_shot = std::env::var_os("CI").is_some();
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    if one_shot {
        clippy.env("CARGO_INCREMENTAL", "0");
    }
    sh(&mut clippy)?;
    let moto = ensure_moto()?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    if no_fail_fast {
        test.arg("--no-fail-fast");
    }
    if one_shot {
        test.env("CARGO_INCREMENTAL", "0");
    }
    test.env("TAOSBACKUP_MOTO_SERVER", &moto);
    sh(&mut test)?;
    // The end-to-end tests again against the 3.4 behaviour set (system tables, printed DDL,
    // database options); the run above used the emulator's default, 3.3.6.
    let mut e2e = cargo();
    e2e.args(["test", "-p", "taosbackup-cli", "--test", "cli"]);
    if one_shot {
        e2e.env("CARGO_INCREMENTAL", "0");
    }
    e2e.env("TAOS_EMU_SERVER_VERSION", "3.4.0.0");
    e2e.env("TAOSBACKUP_MOTO_SERVER", &moto);
    sh(&mut e2e)?;
    println!("xtask ci: all checks passed");
    Ok(())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut skip_deny = false;
    let mut no_fail_fast = false;
    for a in args {
        match a.as_str() {
            "--skip-deny" => skip_deny = true,
            "--no-fail-fast" => no_fail_fast = true,
            other => return Err(format!("ci: unknown flag {other:?}")),
        }
    }
    run_steps(skip_deny, no_fail_fast)
}

/// Makes sure `<root>/.venv` holds moto's server and returns the `moto_server` path.
pub fn ensure_moto() -> Result<PathBuf, String> {
    let venv = root().join(".venv");
    let server = venv.join("bin").join("moto_server");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import moto.server, flask, flask_cors"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if ready && server.exists() {
        return Ok(server);
    }
    if !python.exists() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        sh(Command::new(&py).args(["-m", "venv"]).arg(&venv)).map_err(|e| {
            format!("{e}\n(the S3 tests need Python 3 with the venv module to install moto)")
        })?;
    }
    sh(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO_SPEC,
    ]))?;
    if !server.exists() {
        return Err(format!(
            "moto installed but {} is missing",
            server.display()
        ));
    }
    Ok(server)
}

fn ensure_cargo_deny() -> Result<(), String> {
    let have = cargo()
        .args(["deny", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    sh(cargo().args(["install", "--locked", "cargo-deny"]))
}
