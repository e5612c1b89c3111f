//! The daemon's HTTP server: `GET /health`, `GET /backup/status` (JSON) and `GET /metrics`
//! (Prometheus text exposition format 0.0.4, written by hand: a dozen families do not need a
//! metrics library). Responses carry database names, backup ids and error texts with URL
//! passwords masked; never a DSN or a key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::FeedHealth;
use super::state::{
    CurrentRun, DaemonState, FeedState, Health, LastRun, Outcome, RepositoryState, RunKind,
    Snapshot,
};

/// The routes, over the shared state.
pub(crate) fn router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/backup/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// `GET /health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// `"ok"`, or `"unhealthy"` when a component's last check failed.
    pub status: &'static str,
    /// Each component's last check.
    pub components: Components,
}

/// The components `/health` reports.
#[derive(Debug, Serialize)]
pub struct Components {
    /// The repository.
    pub repository: RepositoryState,
    /// The change feed of each database.
    pub feeds: BTreeMap<String, FeedComponent>,
}

/// A change feed in `/health`.
#[derive(Debug, Serialize)]
pub struct FeedComponent {
    /// Health of the last refresh (`"none"`: the database's engine uses no feed).
    pub status: Health,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was last refreshed.
    pub checked_at: Option<DateTime<Utc>>,
    /// Seconds since the last successful refresh.
    pub lag_seconds: Option<f64>,
    /// Why the next backup must be a full one, if it must.
    pub inconsistency: Option<String>,
}

/// `/health` from a snapshot: healthy unless the repository or a feed failed its last check
/// (not yet checked counts as healthy, so a starting daemon is not reported down).
pub(crate) fn health_report(snapshot: &Snapshot) -> (bool, HealthReport) {
    let feeds: BTreeMap<String, FeedComponent> = snapshot
        .databases
        .iter()
        .map(|(name, db)| {
            let component = FeedComponent {
                status: db.feed.status,
                error: db.feed.error.clone(),
                checked_at: db.feed.checked_at,
                lag_seconds: lag_seconds(&db.feed, snapshot.now),
                inconsistency: db
                    .feed
                    .tracker
                    .as_ref()
                    .and_then(|t| t.inconsistency.clone()),
            };
            (name.clone(), component)
        })
        .collect();
    let healthy = snapshot.repository.status != Health::Failed
        && feeds.values().all(|f| f.status != Health::Failed);
    let report = HealthReport {
        status: if healthy { "ok" } else { "unhealthy" },
        components: Components {
            repository: snapshot.repository.clone(),
            feeds,
        },
    };
    (healthy, report)
}

async fn health(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    let (healthy, report) = health_report(&state.snapshot());
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// `GET /backup/status`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// When the daemon started.
    pub started_at: DateTime<Utc>,
    /// When this report was made.
    pub now: DateTime<Utc>,
    /// Per database.
    pub databases: BTreeMap<String, DatabaseStatus>,
}

/// One database in `/backup/status`.
#[derive(Debug, Serialize)]
pub struct DatabaseStatus {
    /// The run in progress, with its progress.
    pub current: Option<CurrentRun>,
    /// The last finished run (any outcome).
    pub last: Option<LastRun>,
    /// The last successful run.
    pub last_success: Option<LastRun>,
    /// The next scheduled runs.
    pub next_runs: NextRuns,
    /// The change feed.
    pub feed: FeedState,
}

/// Next fire times (null: not scheduled).
#[derive(Debug, Serialize)]
pub struct NextRuns {
    /// The next full backup.
    pub full: Option<DateTime<Utc>>,
    /// The next incremental backup.
    pub incremental: Option<DateTime<Utc>>,
}

/// `/backup/status` from a snapshot.
pub(crate) fn status_report(snapshot: Snapshot) -> StatusReport {
    let databases = snapshot
        .databases
        .into_iter()
        .map(|(name, db)| {
            let status = DatabaseStatus {
                current: db.current,
                last: db.last,
                last_success: db.last_success,
                next_runs: NextRuns {
                    full: db.next_full,
                    incremental: db.next_incremental,
                },
                feed: db.feed,
            };
            (name, status)
        })
        .collect();
    StatusReport {
        started_at: snapshot.started_at,
        now: snapshot.now,
        databases,
    }
}

async fn status(State(state): State<Arc<DaemonState>>) -> Json<StatusReport> {
    Json(status_report(state.snapshot()))
}

async fn metrics(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&state.snapshot()),
    )
}

fn lag_seconds(feed: &FeedState, now: DateTime<Utc>) -> Option<f64> {
    if feed.status == Health::None {
        return None;
    }
    feed.last_ok_at
        .map(|t| (now - t).to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0))
}

/// Escapes a label value (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The Prometheus text exposition of a snapshot.
pub(crate) fn render_metrics(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let dbs = &snapshot.databases;

    let mut f = Family::new(
        &mut out,
        "taosbackup_backups_total",
        "counter",
        "Scheduled backup runs by database, scheduled kind and result (ok, failed, cancelled, skipped); every retry counts.",
    );
    for (name, db) in dbs {
        let mut counts = db.counters.backups.clone();
        // Show the usual series from zero, so rate() and absence alerts work from the start.
        for kind in &snapshot.scheduled_kinds {
            for outcome in [Outcome::Ok, Outcome::Failed] {
                counts.entry((*kind, outcome)).or_default();
            }
        }
        for ((kind, outcome), n) in counts {
            f.sample(
                &[
                    ("database", name),
                    ("kind", kind.as_str()),
                    ("result", outcome.as_str()),
                ],
                n as f64,
            );
        }
    }

    let last_ok = |out: &mut String,
                   name: &'static str,
                   help: &str,
                   value: &dyn Fn(&super::state::LastOk) -> f64| {
        let mut f = Family::new(out, name, "gauge", help);
        for (db_name, db) in dbs {
            for (kind, last) in &db.counters.last_ok {
                f.sample(
                    &[("database", db_name), ("kind", kind.as_str())],
                    value(last),
                );
            }
        }
    };
    last_ok(
        &mut out,
        "taosbackup_backup_last_duration_seconds",
        "Wall time of the last successful backup by database and scheduled kind.",
        &|l| l.duration_seconds,
    );
    last_ok(
        &mut out,
        "taosbackup_backup_last_rows",
        "Rows recorded by the last successful backup by database and scheduled kind.",
        &|l| l.rows as f64,
    );
    last_ok(
        &mut out,
        "taosbackup_backup_last_bytes_stored",
        "Bytes newly stored by the last successful backup by database and scheduled kind.",
        &|l| l.bytes_stored as f64,
    );
    last_ok(
        &mut out,
        "taosbackup_backup_last_success_timestamp_seconds",
        "Unix time the last successful backup by database and scheduled kind finished.",
        &|l| l.finished_at as f64,
    );

    let mut f = Family::new(
        &mut out,
        "taosbackup_backup_rows_total",
        "counter",
        "Rows recorded by all successful backups since the daemon started.",
    );
    for (name, db) in dbs {
        f.sample(&[("database", name)], db.counters.rows_total as f64);
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_backup_bytes_stored_total",
        "counter",
        "Bytes newly stored by all successful backups since the daemon started.",
    );
    for (name, db) in dbs {
        f.sample(&[("database", name)], db.counters.bytes_stored_total as f64);
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_backup_running",
        "gauge",
        "1 while a backup of the database runs.",
    );
    for (name, db) in dbs {
        f.sample(
            &[("database", name)],
            f64::from(u8::from(db.current.is_some())),
        );
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_backup_next_run_timestamp_seconds",
        "gauge",
        "Unix time of the next scheduled backup by database and kind.",
    );
    for (name, db) in dbs {
        for (kind, next) in [
            (RunKind::Full, db.next_full),
            (RunKind::Incremental, db.next_incremental),
        ] {
            if let Some(next) = next {
                f.sample(
                    &[("database", name), ("kind", kind.as_str())],
                    next.timestamp() as f64,
                );
            }
        }
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_retention_runs_total",
        "counter",
        "Retention runs after backups by database and result.",
    );
    for (name, db) in dbs {
        let (ok, failed) = db.counters.retention;
        f.sample(&[("database", name), ("result", "ok")], ok as f64);
        f.sample(&[("database", name), ("result", "failed")], failed as f64);
    }

    let tracker = |out: &mut String,
                   name: &'static str,
                   help: &str,
                   value: &dyn Fn(&FeedHealth) -> Option<f64>| {
        let mut f = Family::new(out, name, "gauge", help);
        for (db_name, db) in dbs {
            if let Some(v) = db.feed.tracker.as_ref().and_then(value) {
                f.sample(&[("database", db_name)], v);
            }
        }
    };
    tracker(
        &mut out,
        "taosbackup_tracker_dirty_blocks",
        "Dirty or new blocks the next incremental backup will export.",
        &|t| Some(t.dirty_blocks as f64),
    );
    tracker(
        &mut out,
        "taosbackup_tracker_deleted_blocks",
        "Blocks with deletes the next incremental backup will record.",
        &|t| Some(t.deleted_blocks as f64),
    );
    tracker(
        &mut out,
        "taosbackup_tracker_inconsistent",
        "1 when the tracker cannot prove it saw every change: the next backup is a full one.",
        &|t| Some(f64::from(u8::from(t.inconsistency.is_some()))),
    );
    tracker(
        &mut out,
        "taosbackup_feed_lag_events",
        "Changes the feed still has to deliver (TMQ: WAL versions), when the feed knows.",
        &|t| t.lag_events.map(|v| v as f64),
    );
    let mut f = Family::new(
        &mut out,
        "taosbackup_feed_lag_seconds",
        "gauge",
        "Seconds since the change feed was last read to its end into the tracker.",
    );
    for (name, db) in dbs {
        if let Some(lag) = lag_seconds(&db.feed, snapshot.now) {
            f.sample(&[("database", name)], lag);
        }
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_feed_healthy",
        "gauge",
        "1 unless the last change feed refresh failed.",
    );
    for (name, db) in dbs {
        f.sample(
            &[("database", name)],
            f64::from(u8::from(db.feed.status != Health::Failed)),
        );
    }
    let mut f = Family::new(
        &mut out,
        "taosbackup_repository_healthy",
        "gauge",
        "1 unless the last repository check failed.",
    );
    f.sample(
        &[],
        f64::from(u8::from(snapshot.repository.status != Health::Failed)),
    );
    let mut f = Family::new(
        &mut out,
        "taosbackup_storage_retries_total",
        "counter",
        "Repository storage requests retried after a transient failure (5xx, throttling, \
         dropped or timed-out connections).",
    );
    f.sample(&[], snapshot.storage_retries as f64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        let mut out = String::new();
        let mut f = Family::new(&mut out, "m", "gauge", "help");
        f.sample(&[("database", "we\"ird")], 2.0);
        f.sample(&[], 0.5);
        assert_eq!(
            out,
            "# HELP m help\n# TYPE m gauge\nm{database=\"we\\\"ird\"} 2\nm 0.5\n"
        );
    }
}
