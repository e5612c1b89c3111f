//! `taosbackup`: incremental backup and restore for TDengine.
//!
//! A thin binary: it parses the command line and the config file, wires the TDengine source
//! (`taosbackup-source`), the repository (`taosbackup-sink`) and the engine
//! (`taosbackup-engine`), and presents progress and results. `main` returns the exit code of
//! `run(parse())`; errors are printed once, here (see `error.rs`):
//! 0 success, 1 the operation failed, 2 bad usage or config, 3 verify found problems.

mod args;
mod commands;
mod config;
mod context;
mod daemon;
mod error;
mod logging;
mod output;
mod progress;
mod runner;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::error::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and exit 0; usage errors exit 2.
        Err(e) => e.exit(),
    };
    let ctx = match Context::load(cli.global.clone()) {
        Ok(ctx) => ctx,
        Err(e) => return error::report(&e.into(), cli.global.debug).into(),
    };
    let debug = ctx.debug();
    if let Err(e) = logging::init(debug, ctx.log_format(), ctx.log_file().as_deref()) {
        return error::report(&e, debug).into();
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
        command = ?cli.command.as_ref().map(command_name),
        config = ?ctx.global.config,
        "taosbackup starting"
    );
    let result = runtime.block_on(run(&ctx, cli));
    // Background tasks (lock refreshers, connections) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(exit) => exit.into(),
        Err(e) => error::report(&e, debug).into(),
    }
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
    }
}
