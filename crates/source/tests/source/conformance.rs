//! The conformance suite against the emulator under every behaviour set: the emulator must
//! behave as TDengine's source defines it wherever the tool relies on it (a check failing
//! here means the emulator or the tool's belief is wrong, not the test).

use std::time::Duration;

use taosbackup_source::ConnectOptions;
use taosbackup_source::conformance::{self, Options, Outcome};
use taosbackup_testkit::{Emulator, EmulatorConfig, Profile};

async fn run_on(profile: Profile) -> String {
    let emu = Emulator::start(EmulatorConfig {
        server_version: profile.version().to_string(),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let mut connect = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    connect.retry_count = 1;
    connect.request_timeout = Duration::from_secs(20);
    let report = conformance::run(&Options::new(connect))
        .await
        .unwrap_or_else(|e| panic!("{profile}: the suite did not run: {e}"));
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    assert!(report.cleanup_errors.is_empty(), "{}", report.render());
    let failed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .map(|r| r.check.name)
        .collect();
    if failed.is_empty() {
        String::new()
    } else {
        format!("under {profile}: {failed:?}\n{}", report.render())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_assumption_holds_on_every_behaviour_set() {
    let outcomes = futures::future::join_all(Profile::ALL.map(run_on)).await;
    let failures: String = outcomes.concat();
    assert!(failures.is_empty(), "{failures}");
}
