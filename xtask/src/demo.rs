//! `cargo xtask demo`: start `taos-emu` and run the scripted connector session against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::util::{cargo, root, sh};

/// Kills the emulator when the demo ends, however it ends.
struct Emu(Child);

impl Drop for Emu {
    fn drop(&mut self) {
        // SIGTERM first so the emulator shuts down as operators would stop it; SIGKILL when
        // there is no `kill` command to send it.
        let term = Command::new("kill").arg(self.0.id().to_string()).status();
        if !term.is_ok_and(|s| s.success()) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("demo: unknown argument {a:?}"));
    }
    sh(cargo().args([
        "build",
        "--release",
        "-p",
        "taosbackup-testkit",
        "--bin",
        "taos-emu",
        "--example",
        "emu_session",
    ]))?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
        .join("release");
    println!("$ taos-emu --listen 127.0.0.1:0");
    let child = Command::new(target.join("taos-emu"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start taos-emu: {e}"))?;
    let mut emu = Emu(child);
    let stdout = emu.0.stdout.take().ok_or("taos-emu has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read taos-emu's address: {e}"))?;
    let dsn = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line from taos-emu: {line:?}"))?
        .to_string();
    println!("{}", line.trim());
    sh(Command::new(target.join("examples").join("emu_session")).arg(&dsn))?;
    drop(emu);
    println!("demo: done (taos-emu stopped)");
    Ok(())
}
