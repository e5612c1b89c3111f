//! The scheduler's policies with made-up times: no test waits.

use std::time::Duration;

use chrono::{DateTime, Local, TimeZone as _, Utc};

use super::*;

pub(super) fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Local
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

fn cron(expression: &str) -> CronSchedule {
    CronSchedule::parse(expression).expect("parses")
}

fn policy(full: Option<&str>, incremental: Option<&str>) -> SchedulePolicy {
    SchedulePolicy {
        full: full.map(cron),
        incremental: incremental.map(cron),
        retry_count: 2,
        retry_interval: Duration::from_secs(60),
        feed_refresh_interval: Duration::from_secs(30),
    }
}

/// Weekly full on Sundays at 02:00, hourly incrementals, started on a Saturday at 23:30 with
/// the first feed refresh already done (so only fires and refreshes at 30 s steps remain).
fn weekly() -> (Scheduler, DateTime<Utc>) {
    let start = local(2026, 11, 28, 23, 30, 0);
    let mut s = Scheduler::new(policy(Some("0 0 2 * * Sun"), Some("0 0 * * * *")), start);
    assert_eq!(s.step(start), Step::RefreshFeed);
    s.feed_refreshed(start);
    (s, start)
}

/// A scheduler whose feed refreshes so rarely that they never get in the way.
fn no_refresh(full: Option<&str>, incremental: Option<&str>, start: DateTime<Utc>) -> Scheduler {
    let mut p = policy(full, incremental);
    p.feed_refresh_interval = Duration::from_secs(365 * 86_400);
    let mut s = Scheduler::new(p, start);
    assert_eq!(s.step(start), Step::RefreshFeed);
    s.feed_refreshed(start);
    s
}

fn backup(kind: RunKind, attempt: u32) -> Step {
    Step::Backup { kind, attempt }
}

/// Runs the backup `step` hands out at `at` to a successful end at `end`, retention included.
fn succeed(s: &mut Scheduler, at: DateTime<Utc>, kind: RunKind, end: DateTime<Utc>) -> Missed {
    assert_eq!(s.step(at), backup(kind, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, end),
        AfterBackup::ApplyRetention
    );
    s.retention_ended(end)
}

#[test]
fn nothing_is_due_before_the_first_fire_and_the_feed_is_read_in_between() {
    let (mut s, start) = weekly();
    assert_eq!(
        s.next_runs(),
        (
            Some(local(2026, 11, 29, 2, 0, 0)),
            Some(local(2026, 11, 29, 0, 0, 0))
        )
    );
    // The next refresh comes before the midnight incremental.
    let refresh = start + chrono::Duration::seconds(30);
    assert_eq!(s.step(start), Step::Wait(refresh));
    assert_eq!(s.step(refresh), Step::RefreshFeed);
    s.feed_refreshed(refresh);
    assert_eq!(
        s.step(refresh),
        Step::Wait(refresh + chrono::Duration::seconds(30))
    );
    // With no refresh in the way, the wait ends at the first fire.
    let mut s = no_refresh(Some("0 0 2 * * Sun"), Some("0 0 * * * *"), start);
    assert_eq!(s.step(start), Step::Wait(local(2026, 11, 29, 0, 0, 0)));
}

#[test]
fn a_due_run_goes_before_a_due_refresh() {
    let start = local(2026, 11, 28, 23, 59, 59);
    let mut s = Scheduler::new(policy(None, Some("0 0 * * * *")), start);
    // At start the feed is due; an hour later both are, and the backup wins.
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, midnight),
        AfterBackup::ApplyRetention
    );
    assert_eq!(s.retention_ended(midnight), Missed::default());
    assert_eq!(s.step(midnight), Step::RefreshFeed);
}

#[test]
fn full_and_incremental_due_together_make_one_full() {
    let (mut s, _) = no_refresh_weekly();
    let two = local(2026, 11, 29, 2, 0, 0);
    // Midnight and 01:00 incrementals were missed (the loop was busy): one run only.
    assert_eq!(succeed(&mut s, two, RunKind::Full, two), Missed::default());
    assert_eq!(s.step(two), Step::Wait(local(2026, 11, 29, 3, 0, 0)));
    assert_eq!(
        s.next_runs(),
        (
            Some(local(2026, 12, 6, 2, 0, 0)),
            Some(local(2026, 11, 29, 3, 0, 0))
        )
    );
}

fn no_refresh_weekly() -> (Scheduler, DateTime<Utc>) {
    let start = local(2026, 11, 28, 23, 30, 0);
    (
        no_refresh(Some("0 0 2 * * Sun"), Some("0 0 * * * *"), start),
        start,
    )
}

#[test]
fn incremental_due_during_a_run_is_skipped() {
    let (mut s, _) = no_refresh_weekly();
    // The midnight run took 70 minutes: the 01:00 incremental fell due during it.
    let missed = succeed(
        &mut s,
        local(2026, 11, 29, 0, 0, 0),
        RunKind::Incremental,
        local(2026, 11, 29, 1, 10, 0),
    );
    assert_eq!(
        missed,
        Missed {
            full_pending: false,
            incremental_skipped: true
        }
    );
    assert_eq!(
        s.step(local(2026, 11, 29, 1, 10, 0)),
        Step::Wait(local(2026, 11, 29, 2, 0, 0))
    );
    assert_eq!(s.next_runs().1, Some(local(2026, 11, 29, 2, 0, 0)));
}

#[test]
fn full_due_during_a_run_runs_right_after() {
    let (mut s, _) = no_refresh_weekly();
    // The 01:00 incremental ran until 02:30: the 02:00 full is pending, the 02:00
    // incremental skipped.
    let end = local(2026, 11, 29, 2, 30, 0);
    let missed = succeed(
        &mut s,
        local(2026, 11, 29, 1, 0, 0),
        RunKind::Incremental,
        end,
    );
    assert_eq!(
        missed,
        Missed {
            full_pending: true,
            incremental_skipped: true
        }
    );
    assert_eq!(s.step(end), backup(RunKind::Full, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, end),
        AfterBackup::ApplyRetention
    );
    assert_eq!(s.retention_ended(end), Missed::default());
    assert_eq!(s.step(end), Step::Wait(local(2026, 11, 29, 3, 0, 0)));
    assert_eq!(s.next_runs().0, Some(local(2026, 12, 6, 2, 0, 0)));
}

#[test]
fn fires_during_retention_count_as_missed() {
    let (mut s, _) = no_refresh_weekly();
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, local(2026, 11, 29, 0, 50, 0)),
        AfterBackup::ApplyRetention
    );
    // Nothing runs while retention does.
    assert_eq!(
        s.step(local(2026, 11, 29, 1, 0, 0)),
        Step::Wait(local(2026, 11, 29, 1, 0, 0))
    );
    let missed = s.retention_ended(local(2026, 11, 29, 1, 5, 0));
    assert!(missed.incremental_skipped);
}

#[test]
fn a_missing_schedule_never_fires() {
    let start = local(2026, 11, 28, 23, 30, 0);
    let mut s = no_refresh(None, Some("0 0 * * * *"), start);
    assert_eq!(s.next_runs().0, None);
    let missed = succeed(
        &mut s,
        local(2026, 11, 29, 0, 0, 0),
        RunKind::Incremental,
        local(2026, 11, 29, 0, 0, 5),
    );
    assert_eq!(missed, Missed::default());
}

#[test]
fn a_failed_run_is_retried_apart_then_given_up() {
    let (mut s, _) = no_refresh_weekly();
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    let first_retry = midnight + chrono::Duration::seconds(70);
    assert_eq!(
        s.backup_ended(RunOutcome::Failed, midnight + chrono::Duration::seconds(10)),
        AfterBackup::Retry {
            at: first_retry,
            attempt: 1
        }
    );
    // Only the retry's time matters while it waits: no refresh, no fire, no early start.
    assert_eq!(s.step(midnight), Step::Wait(first_retry));
    assert_eq!(s.step(first_retry), backup(RunKind::Incremental, 2));
    let second_retry = first_retry + chrono::Duration::seconds(61);
    assert_eq!(
        s.backup_ended(
            RunOutcome::Failed,
            first_retry + chrono::Duration::seconds(1)
        ),
        AfterBackup::Retry {
            at: second_retry,
            attempt: 2
        }
    );
    assert_eq!(s.step(second_retry), backup(RunKind::Incremental, 3));
    // retry_count = 2: the third attempt is the last one.
    let end = local(2026, 11, 29, 1, 0, 30);
    assert_eq!(
        s.backup_ended(RunOutcome::Failed, end),
        AfterBackup::GaveUp {
            attempts: 3,
            missed: Missed {
                full_pending: false,
                incremental_skipped: true
            }
        }
    );
    // Back to the schedule: the next incremental is 02:00's (with the full).
    assert_eq!(s.step(end), Step::Wait(local(2026, 11, 29, 2, 0, 0)));
}

#[test]
fn a_retry_that_succeeds_applies_retention() {
    let (mut s, _) = no_refresh_weekly();
    let two = local(2026, 11, 29, 2, 0, 0);
    assert_eq!(s.step(two), backup(RunKind::Full, 1));
    let AfterBackup::Retry { at, .. } = s.backup_ended(RunOutcome::Failed, two) else {
        panic!("a first failure is retried");
    };
    assert_eq!(s.step(at), backup(RunKind::Full, 2));
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, at),
        AfterBackup::ApplyRetention
    );
    assert_eq!(s.retention_ended(at), Missed::default());
}

#[test]
fn no_retries_means_one_attempt() {
    let start = local(2026, 11, 28, 23, 30, 0);
    let mut p = policy(None, Some("0 0 * * * *"));
    p.retry_count = 0;
    let mut s = Scheduler::new(p, start);
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Failed, midnight),
        AfterBackup::GaveUp {
            attempts: 1,
            missed: Missed::default()
        }
    );
}

#[test]
fn a_cancelled_run_is_not_retried() {
    let (mut s, _) = no_refresh_weekly();
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert_eq!(
        s.backup_ended(RunOutcome::Cancelled, midnight),
        AfterBackup::Ended {
            missed: Missed::default()
        }
    );
    assert_eq!(s.step(midnight), Step::Wait(local(2026, 11, 29, 1, 0, 0)));
}

#[test]
fn stopping_abandons_a_waiting_retry_and_reports_its_missed_fires() {
    let (mut s, _) = no_refresh_weekly();
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert!(matches!(
        s.backup_ended(RunOutcome::Failed, midnight),
        AfterBackup::Retry { .. }
    ));
    let missed = s.stop(local(2026, 11, 29, 1, 0, 1));
    assert!(missed.incremental_skipped);
    // Stopping an idle scheduler misses nothing.
    assert_eq!(s.stop(local(2026, 11, 29, 1, 0, 2)), Missed::default());
}

#[test]
fn reports_out_of_turn_change_nothing() {
    let (mut s, start) = no_refresh_weekly();
    assert_eq!(
        s.backup_ended(RunOutcome::Ok, start),
        AfterBackup::Ended {
            missed: Missed::default()
        }
    );
    assert_eq!(s.retention_ended(start), Missed::default());
    // A handed-out backup is waited for, never handed out twice.
    let midnight = local(2026, 11, 29, 0, 0, 0);
    assert_eq!(s.step(midnight), backup(RunKind::Incremental, 1));
    assert_eq!(s.step(midnight), Step::Wait(midnight));
}

/// A simulated month of hourly incrementals and weekly fulls, with runs of random length
/// (up to 100 minutes) that fail at random: whatever happens, time only moves forward, runs
/// never overlap, attempts stay within `retry_count`, retries come `retry_interval` apart,
/// every full fire gets its full run right away or right after the run it fell into, no
/// hour gets two incrementals, and every incremental fire either runs or falls into a run.
#[test]
fn a_simulated_month_keeps_every_policy() {
    use rand::{Rng as _, SeedableRng as _};
    for seed in 0..20 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let start = local(2026, 11, 1, 0, 30, 0);
        let end = local(2026, 12, 1, 0, 0, 0);
        let p = policy(Some("0 0 2 * * Sun"), Some("0 0 * * * *"));
        let (retry_count, retry_interval) = (p.retry_count, p.retry_interval);
        let full_cron = p.full.clone().expect("set");
        let incremental_cron = p.incremental.clone().expect("set");
        // Each run from its first attempt's start to its end (retries and retention included).
        let mut runs: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        let mut run_start = None;
        let mut s = Scheduler::new(p, start);
        let mut now = start;
        let mut full_starts = Vec::new();
        let mut incremental_hours = std::collections::BTreeSet::new();
        let mut expected_attempt = None;
        let mut steps = 0;
        while now < end {
            steps += 1;
            assert!(
                steps < 100_000,
                "seed {seed}: the scheduler does not move on"
            );
            match s.step(now) {
                Step::Wait(until) => {
                    assert!(
                        until > now,
                        "seed {seed}: a wait that does not advance at {now}"
                    );
                    now = until;
                }
                Step::RefreshFeed => s.feed_refreshed(now),
                Step::Backup { kind, attempt } => {
                    assert_eq!(attempt, expected_attempt.take().unwrap_or(1), "seed {seed}");
                    assert!(attempt <= retry_count + 1, "seed {seed}");
                    if attempt == 1 {
                        run_start = Some(now);
                        match kind {
                            RunKind::Full => full_starts.push(now),
                            RunKind::Incremental => {
                                let hour = now.timestamp() / 3600;
                                assert!(incremental_hours.insert(hour), "seed {seed}: {now}");
                            }
                        }
                    }
                    // Nothing else is handed out while it runs.
                    assert_eq!(s.step(now), Step::Wait(now));
                    now += chrono::Duration::minutes(rng.random_range(1..=100));
                    let failed = rng.random_bool(0.3);
                    let outcome = if failed {
                        RunOutcome::Failed
                    } else {
                        RunOutcome::Ok
                    };
                    match s.backup_ended(outcome, now) {
                        AfterBackup::ApplyRetention => {
                            assert!(!failed);
                            now += chrono::Duration::seconds(rng.random_range(0..=300));
                            s.retention_ended(now);
                            runs.push((run_start.take().expect("started"), now));
                        }
                        AfterBackup::Retry {
                            at,
                            attempt: failed_attempt,
                        } => {
                            assert!(failed && failed_attempt == attempt);
                            assert_eq!(
                                at - now,
                                chrono::Duration::from_std(retry_interval).expect("small")
                            );
                            expected_attempt = Some(attempt + 1);
                        }
                        AfterBackup::GaveUp { attempts, .. } => {
                            assert!(failed && attempts == retry_count + 1, "seed {seed}");
                            runs.push((run_start.take().expect("started"), now));
                        }
                        AfterBackup::Ended { .. } => panic!("seed {seed}: only cancels end a run"),
                    }
                }
            }
        }
        // Every Sunday-02:00 fire has its full, started no later than one whole run sequence
        // (3 attempts of at most 100 minutes, 2 retry waits, retention) after it.
        let longest = chrono::Duration::minutes(3 * 100 + 2 + 5);
        let mut fire = full_cron.next_after(start).expect("fires");
        let mut fires = 0;
        while fire + longest < end {
            assert!(
                full_starts
                    .iter()
                    .any(|&t| t >= fire && t <= fire + longest),
                "seed {seed}: no full after the fire at {fire}: {full_starts:?}"
            );
            fires += 1;
            fire = full_cron.next_after(fire).expect("fires");
        }
        // November 2026 has five Sundays, the 1st to the 29th.
        assert_eq!(fires, 5, "seed {seed}");
        assert!(full_starts.len() >= fires);
        // No fire is lost: each hourly fire started a run, or fell into one (and was skipped
        // or merged into a full).
        let mut fire = incremental_cron.next_after(start).expect("fires");
        while fire + longest < end {
            assert!(
                runs.iter().any(|&(from, to)| from <= fire && fire <= to),
                "seed {seed}: the fire at {fire} neither ran nor fell into a run"
            );
            fire = incremental_cron.next_after(fire).expect("fires");
        }
        assert!(!incremental_hours.is_empty(), "seed {seed}");
    }
}
