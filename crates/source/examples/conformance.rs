//! `conformance`: runs taosbackup's TDengine conformance suite against a server.
//!
//! ```text
//! cargo xtask conformance --dsn ws://host:6041 [--user U] [--filter TEXT] [--keep] [--json]
//! ```
//!
//! The password comes from the DSN or `TAOS_PASSWORD` (never a flag, so it stays out of
//! `ps`). Exit code 0 when every check passed, 1 when one failed, 2 when the suite could not
//! run (bad arguments, server unreachable, scratch database refused).

use std::process::ExitCode;

use taosbackup_source::ConnectOptions;
use taosbackup_source::conformance::{self, Options};

const USAGE: &str = "usage: conformance --dsn DSN [--user USER] [--filter TEXT] [--keep] [--json]
  --dsn DSN      the server: ws://host:6041 (taosAdapter) or host:6030 (native, needs libtaos)
  --user USER    user (default: the DSN's, then TAOS_USER, then root); the password comes
                 from the DSN or TAOS_PASSWORD (default taosdata)
  --filter TEXT  run only checks whose name contains TEXT
  --keep         keep the scratch database and topics (default: dropped)
  --json         print the report as JSON";

fn main() -> ExitCode {
    let mut dsn = None;
    let mut user = None;
    let mut filter = None;
    let (mut keep, mut json) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match a.as_str() {
            "--dsn" => value("--dsn").map(|v| dsn = Some(v)),
            "--user" => value("--user").map(|v| user = Some(v)),
            "--filter" => value("--filter").map(|v| filter = Some(v)),
            "--keep" => {
                keep = true;
                Ok(())
            }
            "--json" => {
                json = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(msg) = parsed {
            eprintln!("conformance: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(dsn) = dsn else {
        eprintln!("conformance: --dsn is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let mut connect = ConnectOptions::new(dsn);
    connect.user = user;
    connect.retry_count = 1;
    let mut options = Options::new(connect);
    options.filter = filter;
    options.keep = keep;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conformance: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(conformance::run(&options)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conformance: the suite could not run: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("conformance: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.render());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
