//! `taos-emu`: a TDengine wire emulator for tests and demos.
//!
//! Prints one line `listening on ws://ADDR` on stdout once the socket is bound, then serves
//! until SIGTERM or SIGINT.
//!
//! Serves `/ws` and `/rest/ws` (queries) and `/rest/tmq` (data subscription). Emulator-only
//! SQL for tests: `PURGE WAL db [VGROUP n] TO v` drops a vgroup's WAL entries below version
//! `v`, as TDengine's WAL cleaning would (see `docs/emulator-tmq.md`). With `--wal-dir DIR`
//! every vgroup's log is also written as TDengine-format vnode WAL files under
//! `DIR/vnode/vnode<vgId>/` (a TDengine `dataDir` for the `wal` change feed).

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use taosbackup_testkit::{Emulator, EmulatorConfig};

/// A TDengine wire emulator (taosAdapter WebSocket protocol, in-memory store).
#[derive(Debug, Parser)]
#[command(
    name = "taos-emu",
    version,
    after_help = "Emulator-only SQL: PURGE WAL db [VGROUP n] TO v (drops WAL entries below v)."
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6041")]
    listen: SocketAddr,
    /// Server version to report; 3.3.0.8 and newer use the binary query protocol.
    #[arg(long, default_value = "3.3.6.0")]
    server_version: String,
    /// User accepted at login.
    #[arg(long, default_value = "root")]
    user: String,
    /// Password accepted at login (default TDengine's).
    #[arg(
        long,
        env = "TAOS_EMU_PASSWORD",
        default_value = "taosdata",
        hide_env_values = true
    )]
    password: String,
    /// Serve only the legacy `/rest/ws` path (answer `/ws` with 404).
    #[arg(long)]
    legacy_paths_only: bool,
    /// Acknowledge every read at once (TCP_QUICKACK), which taosAdapter does not: hides the
    /// ~40 ms a request waits for a delayed ACK when its client leaves Nagle's algorithm on.
    #[arg(long)]
    quick_ack: bool,
    /// Also write every vgroup's log as TDengine-format WAL files under DIR (used as
    /// TDengine's dataDir: DIR/vnode/vnode<vgId>/wal); DIR must hold no vnode directories.
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<std::path::PathBuf>,
    /// With --wal-dir: roll to a new WAL segment once one exceeds this many bytes (0 never).
    #[arg(long, value_name = "BYTES", default_value_t = taosbackup_testkit::DEFAULT_WAL_SEGMENT_SIZE)]
    wal_segment_size: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !valid_version(&args.server_version) {
        eprintln!(
            "taos-emu: --server-version must be four dot-separated numbers, like 3.3.6.0 (got {:?})",
            args.server_version
        );
        return std::process::ExitCode::from(2);
    }
    let config = EmulatorConfig {
        listen: args.listen,
        server_version: args.server_version,
        user: args.user,
        password: args.password,
        legacy_paths_only: args.legacy_paths_only,
        quick_ack: args.quick_ack,
        ..EmulatorConfig::default()
    };
    let handle = match Emulator::start(config) {
        Ok(h) => h,
        Err(err) => {
            eprintln!("taos-emu: cannot listen on {}: {err}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    if let Some(dir) = &args.wal_dir {
        if let Err(err) = handle
            .store()
            .enable_wal_files_with(dir, args.wal_segment_size)
        {
            eprintln!(
                "taos-emu: cannot write WAL files under {}: {err}",
                dir.display()
            );
            handle.shutdown();
            return std::process::ExitCode::from(1);
        }
    }
    println!("listening on {}", handle.dsn());
    let _ = std::io::stdout().flush();
    if let Err(err) = wait_for_signal() {
        eprintln!("taos-emu: cannot wait for signals: {err}");
        return std::process::ExitCode::from(1);
    }
    handle.shutdown();
    std::process::ExitCode::SUCCESS
}

/// The client parses the version as four integers and panics otherwise, so refuse others.
fn valid_version(v: &str) -> bool {
    let parts: Vec<_> = v.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u32>().is_ok())
}

fn wait_for_signal() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
