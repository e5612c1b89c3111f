//! Logging through `tracing`: to standard error (around the progress bars) or `--log-file`,
//! as text or JSON lines; `--debug` or `TAOS_BITMAP_DEBUG=1` for debug level; `RUST_LOG`
//! overrides the filter entirely.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::args::LogFormat;
use crate::error::UsageError;

/// The debug environment variable of the original plugin.
pub const DEBUG_ENV: &str = "TAOS_BITMAP_DEBUG";

/// Whether `TAOS_BITMAP_DEBUG` asks for debug output (`1`, `true`, `yes`, `on`).
pub fn debug_from_env() -> bool {
    std::env::var(DEBUG_ENV).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Writes to standard error with the progress bars hidden for the write.
#[derive(Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        crate::progress::suspend(|| std::io::stderr().write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

fn filter(debug: bool) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let ours = [
        "taosbackup",
        "taosbackup_engine",
        "taosbackup_source",
        "taosbackup_sink",
    ];
    let level = if debug { "debug" } else { "info" };
    let mut spec = String::from("warn");
    for c in ours {
        spec.push_str(&format!(",{c}={level}"));
    }
    EnvFilter::new(spec)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(debug: bool, format: LogFormat, file: Option<&Path>) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(debug))
        .with_target(debug);
    let result = match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    UsageError::new(
                        format!("cannot open the log file {}: {e}", path.display()),
                        "check --log-file (or log.file) and the directory's permissions",
                    )
                })?;
            let writer = Mutex::new(f);
            match format {
                LogFormat::Json => builder.json().with_writer(writer).try_init(),
                LogFormat::Text => builder.with_ansi(false).with_writer(writer).try_init(),
            }
        }
        None => match format {
            LogFormat::Json => builder.json().with_writer(Stderr).try_init(),
            LogFormat::Text => builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(Stderr)
                .try_init(),
        },
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
