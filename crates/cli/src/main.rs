//! `taosbackup`: incremental backup and restore for TDengine.
//!
//! A thin binary: it parses the command line and the config file, wires the TDengine source
//! (`taosbackup-source`), the repository (`taosbackup-sink`) and the engine
//! (`taosbackup-engine`), and presents progress and results.

mod daemon;

use clap::Parser;

/// Incremental backup and restore for TDengine.
#[derive(Debug, Parser)]
#[command(name = "taosbackup", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
