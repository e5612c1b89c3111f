//! `cargo xtask dist`: the release tarball a user can ship.
//!
//! Builds `taosbackup` in release mode (line tables only, `[profile.release]`), splits its
//! debug info into `taosbackup.debug` (objcopy `--only-keep-debug`, then `--strip-all
//! --add-gnu-debuglink`, so gdb and perf find it when it sits next to the binary or in
//! `/usr/lib/debug`), and packs
//!
//! ```text
//! taosbackup-<version>-<target>/
//!   bin/taosbackup                      stripped
//!   share/doc/taosbackup/               README.md, LICENSE, operations.md,
//!                                       reference.txt (every command's --help)
//!   share/taosbackup/examples/          taosbackup.toml, backup_config.json, taosbackup.service
//!   share/bash-completion/completions/taosbackup
//!   share/zsh/site-functions/_taosbackup
//!   share/fish/vendor_completions.d/taosbackup.fish
//! ```
//!
//! into `target/dist/taosbackup-<version>-<target>.tar.gz`, the debug info into
//! `…-debug.tar.gz` beside it, and their SHA-256 sums into `target/dist/SHA256SUMS`. Needs
//! `objcopy` (binutils), `tar` and `sha256sum` (coreutils).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{cargo, root, sh};

/// The commands whose `--help` goes into the reference (the binary's own list is checked
/// against it, so a new command cannot be left out).
const COMMANDS: &[&str] = &[
    "init",
    "backup",
    "plan",
    "list",
    "show",
    "restore",
    "verify",
    "prune",
    "key",
    "daemon",
    "completions",
    "feed",
];

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("dist takes no arguments, got {a:?}"));
    }
    for tool in ["objcopy", "tar", "sha256sum"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "dist needs `{tool}` (objcopy: apt-get install binutils; tar, sha256sum: \
                 coreutils/tar)"
            ));
        }
    }
    sh(cargo().args(["build", "--release", "-p", "taosbackup-cli"]))?;
    let root = root();
    let built = root.join("target/release/taosbackup");
    let version = output(Command::new(&built).arg("--version"))?
        .trim()
        .trim_start_matches("taosbackup ")
        .to_string();
    let target = output(Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or("rustc -vV printed no host line")?
        .trim()
        .to_string();
    let name = format!("taosbackup-{version}-{target}");
    let dist = root.join("target/dist");
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| format!("cannot clear {stage:?}: {e}"))?;
    }
    let bin = stage.join("bin/taosbackup");
    mkdirs(&stage.join("bin"))?;
    copy(&built, &bin)?;
    let debug = dist.join(format!("{name}.debug"));
    sh(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&bin)
        .arg(&debug))?;
    sh(Command::new("objcopy")
        .arg("--strip-all")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&bin))?;
    // The stripped binary still runs.
    output(Command::new(&bin).arg("--version"))?;

    let doc = stage.join("share/doc/taosbackup");
    mkdirs(&doc)?;
    for f in ["README.md", "LICENSE", "docs/operations.md"] {
        let from = root.join(f);
        copy(&from, &doc.join(from.file_name().unwrap_or_default()))?;
    }
    std::fs::write(doc.join("reference.txt"), reference(&bin)?)
        .map_err(|e| format!("cannot write reference.txt: {e}"))?;
    let examples = stage.join("share/taosbackup/examples");
    mkdirs(&examples)?;
    for f in [
        "taosbackup.toml",
        "backup_config.json",
        "taosbackup.service",
    ] {
        copy(&root.join("examples").join(f), &examples.join(f))?;
    }
    for (shell, dir, file) in [
        ("bash", "share/bash-completion/completions", "taosbackup"),
        ("zsh", "share/zsh/site-functions", "_taosbackup"),
        ("fish", "share/fish/vendor_completions.d", "taosbackup.fish"),
    ] {
        let script = output(Command::new(&bin).args(["completions", shell]))?;
        mkdirs(&stage.join(dir))?;
        std::fs::write(stage.join(dir).join(file), script)
            .map_err(|e| format!("cannot write the {shell} completions: {e}"))?;
    }

    let tarball = format!("{name}.tar.gz");
    let debug_tarball = format!("{name}-debug.tar.gz");
    sh(Command::new("tar").current_dir(&dist).args([
        "--owner=0",
        "--group=0",
        "-czf",
        &tarball,
        &name,
    ]))?;
    sh(Command::new("tar").current_dir(&dist).args([
        "--owner=0",
        "--group=0",
        "-czf",
        &debug_tarball,
        &format!("{name}.debug"),
    ]))?;
    let sums = output(
        Command::new("sha256sum")
            .current_dir(&dist)
            .args([&tarball, &debug_tarball]),
    )?;
    std::fs::write(dist.join("SHA256SUMS"), &sums)
        .map_err(|e| format!("cannot write SHA256SUMS: {e}"))?;

    println!("\nsizes:");
    for (what, path) in [
        ("release build (line tables)", built),
        ("stripped binary", bin),
        ("split debug info", debug),
        ("tarball", dist.join(&tarball)),
        ("debug tarball", dist.join(&debug_tarball)),
    ] {
        println!(
            "  {what:<28} {:>12} bytes  {}",
            size(&path)?,
            path.display()
        );
    }
    print!("\n{}", sums);
    Ok(())
}

/// `taosbackup --help` and every command's (with `key`'s actions).
fn reference(bin: &Path) -> Result<String, String> {
    let top = output(Command::new(bin).arg("--help"))?;
    for c in COMMANDS {
        if !top.contains(&format!("  {c} ")) {
            return Err(format!("`taosbackup --help` no longer lists {c}"));
        }
    }
    let mut out = format!("taosbackup command reference (taosbackup --help)\n\n{top}");
    let mut each: Vec<Vec<&str>> = COMMANDS.iter().map(|c| vec![*c]).collect();
    for action in ["add", "remove", "passwd", "list"] {
        each.push(vec!["key", action]);
    }
    for action in ["list", "drop"] {
        each.push(vec!["feed", action]);
    }
    for args in each {
        let text = output(Command::new(bin).args(&args).arg("--help"))?;
        out.push_str(&format!(
            "\n{}\ntaosbackup {} --help\n\n{text}",
            "=".repeat(78),
            args.join(" ")
        ));
    }
    Ok(out)
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{shown} printed non-UTF-8: {e}"))
}

fn mkdirs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir:?}: {e}"))
}

fn copy(from: &Path, to: &PathBuf) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {from:?} to {to:?}: {e}"))
}

fn size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {path:?}: {e}"))
}
