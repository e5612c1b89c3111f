//! The conformance suite: every assumption taosbackup makes about a TDengine server, stated as
//! a check that runs against any DSN.
//!
//! The tool was first proven against `taos-emu` only, an emulator written from the same
//! beliefs as the tool. This suite is how those beliefs meet a real server: each [`Check`]
//! names one assumption (a statement the tool sends, a result column it reads, a TMQ rule it
//! relies on, an error code it branches on) and the TDengine source file it was taken from.
//! Checks that exercise the tool's own code paths (catalog read, export, restore writer, the
//! `tmq` change feed) call them through this crate's public API, so a check passes exactly
//! when the tool would work on that server.
//!
//! [`run`] creates a scratch database (and, for the feed checks, a topic), runs every check,
//! and drops what it created. Nothing outside the scratch objects is written. CI runs the
//! suite against the emulator under every behaviour set; an operator runs it against a real
//! server with `cargo xtask conformance --dsn ws://host:6041` (docs/operations.md).

mod checks;

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use taos::{AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};

use crate::{ConnectOptions, Error, TaosSource};

pub use checks::CHECKS;

/// One assumption, as a check.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Check {
    /// Short stable name, `area.what` (`catalog.read`, `tmq.idle_catch_up`).
    pub name: &'static str,
    /// The assumption in one sentence, as the tool relies on it.
    pub assumption: &'static str,
    /// Where in TDengine (or taosAdapter, or the connector) the behaviour is defined.
    pub source: &'static str,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The server behaves as the tool assumes.
    Pass,
    /// It does not: what was seen instead.
    Fail(String),
    /// The check does not apply to this server version (the feature does not exist there):
    /// why. Reported, never silent.
    NotApplicable(String),
}

/// A check with its outcome and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check.
    #[serde(flatten)]
    pub check: Check,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time of the check in milliseconds.
    pub millis: u64,
}

/// The suite's result against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The endpoint, without credentials.
    pub endpoint: String,
    /// `SELECT SERVER_VERSION()`.
    pub server_version: String,
    /// The scratch database used (dropped at the end unless kept).
    pub scratch_database: String,
    /// One entry per check run, in order.
    pub results: Vec<CheckResult>,
    /// Problems dropping the scratch objects (they need a manual `DROP`).
    pub cleanup_errors: Vec<String>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Fail(_)))
    }

    /// Counts of (passed, failed, not applicable).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::NotApplicable(_) => c.2 += 1,
            }
        }
        c
    }

    /// A plain-text table: one line per check, failures with what was seen and the source to
    /// read, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "TDengine conformance: {} (server {}), scratch database {}",
            self.endpoint, self.server_version, self.scratch_database
        );
        let width = self
            .results
            .iter()
            .map(|r| r.check.name.len())
            .max()
            .unwrap_or(0);
        for r in &self.results {
            let (word, detail) = match &r.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(d) => ("FAIL", Some(d)),
                Outcome::NotApplicable(d) => ("n/a ", Some(d)),
            };
            let _ = writeln!(
                out,
                "{word}  {:width$}  {}",
                r.check.name, r.check.assumption
            );
            if let Some(d) = detail {
                let _ = writeln!(out, "      {:width$}  -> {d}", "");
                if matches!(r.outcome, Outcome::Fail(_)) {
                    let _ = writeln!(out, "      {:width$}  see {}", "", r.check.source);
                }
            }
        }
        for e in &self.cleanup_errors {
            let _ = writeln!(out, "cleanup: {e}");
        }
        let (p, f, n) = self.counts();
        let _ = writeln!(
            out,
            "{p} passed, {f} failed, {n} not applicable on this version"
        );
        out
    }
}

/// Checks that build what later checks use (the scratch schema, the restored copy): they
/// run whatever the filter.
const SETUP: [&str; 2] = ["schema.create", "export.restore_roundtrip"];

/// What to run the suite against.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server (credentials as for [`TaosSource`]: flags, DSN, `TAOS_USER`/`TAOS_PASSWORD`).
    pub connect: ConnectOptions,
    /// Run only checks whose name contains this text (and the setup checks they build on).
    pub filter: Option<String>,
    /// Keep the scratch database and topic (to inspect them).
    pub keep: bool,
}

impl Options {
    /// Every check against `connect`, scratch objects dropped at the end.
    pub fn new(connect: ConnectOptions) -> Options {
        Options {
            connect,
            filter: None,
            keep: false,
        }
    }
}

/// What a check gets: connections and the scratch database.
pub(crate) struct Env {
    /// The tool's own source, as the CLI builds it.
    pub(crate) source: TaosSource,
    /// A plain connector connection for statements the tool does not send itself.
    pub(crate) taos: Taos,
    /// Options to build more connections (the feed, wrong credentials).
    pub(crate) connect: ConnectOptions,
    /// The scratch database (created before the checks).
    pub(crate) db: String,
    /// A second scratch database name, for restores (created by the checks that need it).
    pub(crate) target: String,
    /// `SELECT SERVER_VERSION()` as four numbers.
    pub(crate) version: [u32; 4],
    /// A millisecond timestamp an hour ago, on a whole second: inside any KEEP.
    pub(crate) t0: i64,
    /// Topics the checks created, dropped at the end.
    pub(crate) topics: std::sync::Mutex<Vec<String>>,
}

impl Env {
    /// Runs a statement on the plain connection, naming it on failure.
    pub(crate) async fn exec(&self, sql: &str) -> Result<usize, String> {
        self.taos
            .exec(sql)
            .await
            .map_err(|e| format!("`{}` failed: {e}", shorten(sql)))
    }

    /// Runs a query on the plain connection and returns its column names and rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
    ) -> Result<(Vec<String>, Vec<Vec<taos::Value>>), String> {
        use taos::AsyncFetchable;
        let mut rs = self
            .taos
            .query(sql)
            .await
            .map_err(|e| format!("`{}` failed: {e}", shorten(sql)))?;
        let names = rs.fields().iter().map(|f| f.name().to_string()).collect();
        let rows = rs
            .to_records()
            .await
            .map_err(|e| format!("fetching `{}` failed: {e}", shorten(sql)))?;
        Ok((names, rows))
    }

    /// Whether the server is at least `v` (three numbers).
    pub(crate) fn at_least(&self, v: [u32; 3]) -> bool {
        [self.version[0], self.version[1], self.version[2]] >= v
    }
}

/// A statement cut to a readable length for messages.
pub(crate) fn shorten(sql: &str) -> String {
    const MAX: usize = 160;
    if sql.len() <= MAX {
        return sql.to_string();
    }
    let mut end = MAX;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &sql[..end])
}

/// Runs the suite (see the module docs). Fails only when the server cannot be reached or
/// the scratch database cannot be created; every check's own failure is in the report.
pub async fn run(options: &Options) -> Result<Report, Error> {
    let (endpoint, creds) = options.connect.resolve()?;
    let source = TaosSource::connect(options.connect.clone())?;
    let taos = TaosBuilder::from_dsn(endpoint.connector_dsn(&creds, None).as_str())
        .map_err(|e| Error::InvalidDsn {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?
        .build()
        .await
        .map_err(|e| Error::server("connect", &endpoint.to_string(), None, None, e))?;
    // The connection's socket opens at this first request (taos-ws connects lazily).
    let version_text =
        crate::conn::nagle_off_if(true, first_text(&taos, "SELECT SERVER_VERSION()"))
            .await
            .map_err(|e| {
                Error::server(
                    "read the server version",
                    &endpoint.to_string(),
                    None,
                    None,
                    e,
                )
            })?;
    let version =
        crate::wsquery::parse_version(&version_text).ok_or_else(|| Error::UnexpectedReply {
            what: "SELECT SERVER_VERSION()".into(),
            database: None,
            table: None,
            reason: format!("not a four-part version: {version_text:?}"),
        })?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let suffix = format!("{:x}{:04x}", now_ms, std::process::id() & 0xffff);
    let db = format!("tbconf_{suffix}");
    let target = format!("tbconf_{suffix}_r");
    let create =
        format!("CREATE DATABASE `{db}` PRECISION 'ms' VGROUPS 2 WAL_RETENTION_PERIOD 3600");
    taos.exec(&create).await.map_err(|e| {
        Error::server(
            "create the scratch database",
            &endpoint.to_string(),
            Some(&db),
            None,
            e,
        )
    })?;
    let env = Env {
        source,
        taos,
        connect: options.connect.clone(),
        db,
        target,
        version,
        t0: (now_ms - 3_600_000) / 1000 * 1000,
        topics: std::sync::Mutex::new(Vec::new()),
    };
    let mut results = Vec::new();
    for check in CHECKS {
        if let Some(f) = &options.filter {
            if !check.check.name.contains(f.as_str()) && !SETUP.contains(&check.check.name) {
                continue;
            }
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(Duration::from_secs(120), (check.run)(&env)).await
        {
            Ok(Ok(Verdict::Holds)) => Outcome::Pass,
            Ok(Ok(Verdict::NotApplicable(why))) => Outcome::NotApplicable(why),
            Ok(Err(seen)) => Outcome::Fail(seen),
            Err(_) => Outcome::Fail("no answer within 120 s".into()),
        };
        results.push(CheckResult {
            check: check.check,
            outcome,
            millis: started.elapsed().as_millis() as u64,
        });
    }
    let cleanup_errors = if options.keep {
        Vec::new()
    } else {
        cleanup(&env).await
    };
    Ok(Report {
        endpoint: endpoint.to_string(),
        server_version: version_text,
        scratch_database: env.db.clone(),
        results,
        cleanup_errors,
    })
}

/// Drops the topics, then both scratch databases. A topic whose consumer has just gone may
/// still count as subscribed for a moment, so dropping it is retried for a while.
async fn cleanup(env: &Env) -> Vec<String> {
    let mut errors = Vec::new();
    let topics = env.topics.lock().map(|t| t.clone()).unwrap_or_default();
    for topic in topics {
        let sql = format!("DROP TOPIC IF EXISTS `{topic}`");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match env.taos.exec(&sql).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(%topic, error = %e, "topic not droppable yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    errors.push(format!("{sql}: {e}"));
                    break;
                }
            }
        }
    }
    for db in [&env.target, &env.db] {
        let sql = format!("DROP DATABASE IF EXISTS `{db}`");
        if let Err(e) = env.taos.exec(&sql).await {
            errors.push(format!("{sql}: {e}"));
        }
    }
    errors
}

async fn first_text(taos: &Taos, sql: &str) -> Result<String, taos::Error> {
    use taos::AsyncFetchable;
    let mut rs = taos.query(sql).await?;
    let rows = rs.to_records().await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .map(|v| v.to_string().unwrap_or_default())
        .unwrap_or_default())
}

/// What a check found when it did not fail.
pub(crate) enum Verdict {
    /// The assumption holds.
    Holds,
    /// The feature is not in this server version.
    NotApplicable(String),
}

/// A check and the code that runs it.
pub struct Entry {
    /// The check.
    pub check: Check,
    pub(crate) run: for<'e> fn(&'e Env) -> futures::future::BoxFuture<'e, Result<Verdict, String>>,
}
