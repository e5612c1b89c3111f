//! `taosbackup`: incremental backup and restore for TDengine.
//!
//! A thin binary: it parses the command line and the config file, wires the TDengine source
//! (`taosbackup-source`), the repository (`taosbackup-sink`) and the engine
//! (`taosbackup-engine`), and presents progress and results. `main` returns the exit code of
//! `run(parse())`; errors are printed once, here (see `error.rs`):
//! 0 success, 1 the operation failed, 2 bad usage or config, 3 verify found problems,
//! 4 a bug (a panic).

mod args;
mod commands;
mod config;
mod context;
mod daemon;
mod error;
mod estimate;
mod logging;
mod output;
mod progress;
mod readonly;
mod runner;
mod signals;

use std::process::ExitCode;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::error::Exit;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        // --help and --version print to stdout and exit 0; usage errors exit 2, with the
        // `hint:` line every error has.
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            let _ = e.print();
            eprintln!(
                "  hint: `taosbackup --help` lists the commands, `taosbackup <COMMAND> --help` their options"
            );
            return Exit::Usage.into();
        }
    };
    let ctx = match Context::load(cli.global.clone()) {
        Ok(ctx) => ctx,
        Err(e) => return error::report(&e.into(), cli.global.debug).into(),
    };
    let debug = ctx.debug();
    quiet_panics(debug);
    if let Err(e) = logging::init(debug, ctx.log_format(), ctx.log_file().as_deref()) {
        return error::report(&e, debug).into();
    }
    if ctx.config.plugin.is_some() {
        tracing::info!(
            "plugin.* (the original plugin's loader settings) is ignored: taosbackup runs as a \
             program, not as a plugin TDengine loads"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::anyhow!("cannot start the async runtime: {e}");
            return error::report(&e, debug).into();
        }
    };
    tracing::debug!(
        version = env!("CARGO_PKG_VERSION"),
        command = cli.command.as_ref().map_or("backup", command_name),
        config = %ctx
            .global
            .config
            .as_deref()
            .map_or_else(|| "none".into(), |p| p.display().to_string()),
        "taosbackup starting"
    );
    // A panic of the command itself (a bug; the panic hook has printed it) exits with the
    // internal-error code like a panicked worker, not Rust's 101.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(run(&ctx, cli))
    }));
    // Background tasks (lock refreshers, connections) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(Ok(exit)) => exit.into(),
        Ok(Err(e)) => error::report(&e, debug).into(),
        Err(_) => Exit::Internal.into(),
    }
}

/// The last resort, not the fix: a panic in a background task (the connector's reader task
/// panics on protocol surprises, printing whole raw blocks) is shown as one line, whole
/// only with `--debug`. Causes found are fixed where they arise (see the source crate's
/// `conn.rs`); the line still says "panicked" so tests catch any that remain.
fn quiet_panics(debug: bool) {
    if debug {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect();
        let cut = if first.len() < text.len() { "…" } else { "" };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        progress::suspend(|| {
            eprintln!(
                "error: internal: a task panicked{at}: {first}{cut}\n  hint: this is a bug; \
                 please report it (the whole message with --debug)"
            )
        });
    }));
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Init(_) => "init",
        Command::Backup(_) => "backup",
        Command::Plan(_) => "plan",
        Command::List(_) => "list",
        Command::Show(_) => "show",
        Command::Restore(_) => "restore",
        Command::Verify(_) => "verify",
        Command::Prune(_) => "prune",
        Command::Forget(_) => "forget",
        Command::Pin(_) => "pin",
        Command::Unpin(_) => "unpin",
        Command::Migrate(_) => "migrate",
        Command::Key(_) => "key",
        Command::Daemon(_) => "daemon",
        Command::Completions(_) => "completions",
        Command::Feed(_) => "feed",
    }
}

async fn run(ctx: &Context, cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        None => commands::backup::run(ctx, &cli.backup).await,
        Some(Command::Backup(a)) => commands::backup::run(ctx, &a).await,
        Some(Command::Init(a)) => commands::init::run(ctx, &a).await,
        Some(Command::Plan(a)) => commands::plan::run(ctx, &a).await,
        Some(Command::List(a)) => commands::list::run(ctx, &a).await,
        Some(Command::Show(a)) => commands::show::run(ctx, &a).await,
        Some(Command::Restore(a)) => commands::restore::run(ctx, &a).await,
        Some(Command::Verify(a)) => commands::verify::run(ctx, &a).await,
        Some(Command::Prune(a)) => commands::prune::run(ctx, &a).await,
        Some(Command::Forget(a)) => commands::forget::run(ctx, &a).await,
        Some(Command::Pin(a)) => commands::pin::run(ctx, &a, true).await,
        Some(Command::Unpin(a)) => commands::pin::run(ctx, &a, false).await,
        Some(Command::Migrate(a)) => commands::migrate::run(ctx, &a).await,
        Some(Command::Key(a)) => commands::key::run(ctx, &a).await,
        Some(Command::Daemon(_)) => runner::run(ctx).await,
        Some(Command::Feed(a)) => commands::feed::run(ctx, &a).await,
        Some(Command::Completions(a)) => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut cmd = Cli::command();
            // Into a buffer: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut cmd, "taosbackup", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::anyhow!("cannot write the completion script: {e}"))
                }
                _ => Ok(Exit::Ok),
            }
        }
    }
}
