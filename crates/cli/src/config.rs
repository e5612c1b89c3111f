//! The config file: TOML (`taosbackup.toml`) or JSON (`.json`, the original plugin's
//! `backup_config.json` keys). Both deserialize into [`Config`]; unknown keys are errors that
//! name the key and the file. Flags override the file; the file overrides the defaults.
//!
//! Values with a fixed form are typed here once and parsed by serde (the file) and clap (the
//! flags) alike: engines, on-gap actions, [`HumanDuration`], [`Width`]; the retention rules
//! are one struct, [`RetentionOptions`], that is both the `[retention]` section and the
//! `prune` flags.
//!
//! Every key is documented in `examples/taosbackup.toml` and `docs/operations.md` (the
//! tests `every_key_is_documented` and `no_documented_key_is_invented` keep both true).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use taosbackup_core::BucketWidth;
use taosbackup_engine::{EngineKind, OnGap};
use taosbackup_sink::{DEFAULT_COMPRESSION_LEVEL, RetentionPolicy};

use crate::args::LogFormat;
use crate::error::UsageError;

/// The whole config file. Every section and key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[source]`: the TDengine to back up.
    pub source: SourceSection,
    /// `[repository]`: where backups go.
    pub repository: RepositorySection,
    /// `[backup]`: what and how to back up (also the original plugin's `backup` keys).
    pub backup: BackupSection,
    /// `[restore]`: restore defaults.
    pub restore: RestoreSection,
    /// `[bitmap_engine]`: the change tracker (original plugin keys).
    pub bitmap_engine: BitmapEngineSection,
    /// `[event_interceptor]`: the event pipeline (original plugin keys).
    pub event_interceptor: EventInterceptorSection,
    /// `[retention]`: what `prune` (and the daemon after each backup) keeps.
    pub retention: RetentionOptions,
    /// `[log]`: logging.
    pub log: LogSection,
    /// `[daemon]`: the daemon's HTTP server and feed refresh (see `daemon`).
    pub daemon: Option<crate::daemon::DaemonSection>,
    /// `[schedule]`: the daemon's cron schedules and retries (see `daemon`).
    pub schedule: Option<crate::daemon::ScheduleSection>,
    /// `plugin`: the original plugin's loader settings, accepted and ignored (taosbackup is
    /// a program, not a plugin loaded by TDengine).
    pub plugin: Option<PluginSection>,
}

/// `plugin` of the original plugin's `backup_config.json`: accepted so that file is read
/// as written; nothing here has a meaning for taosbackup.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSection {
    /// The plugin's name.
    pub name: Option<String>,
    /// The plugin's version.
    pub version: Option<String>,
    /// Where TDengine would load the plugin from.
    pub library_path: Option<String>,
}

/// `[source]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSection {
    /// DSN (`--source`).
    pub dsn: Option<String>,
    /// TDengine user (else the DSN's, `TAOS_USER`, or `root`).
    pub user: Option<String>,
    /// TDengine password (else the DSN's, `TAOS_PASSWORD`, or TDengine's default).
    pub password: Option<String>,
    /// Connections open at once (default: the parallelism, at least 4).
    pub pool_size: Option<usize>,
    /// Longest wait for one reply, e.g. `"60s"`.
    pub request_timeout: Option<HumanDuration>,
}

/// `[repository]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositorySection {
    /// Repository URL (`--repo`).
    pub url: Option<String>,
    /// Password file (`--password-file`).
    pub password_file: Option<PathBuf>,
    /// Bucket width at creation, e.g. `"1d"`.
    pub bucket_width: Option<Width>,
    /// zstd level at creation, 1..=22.
    pub compression_level: Option<i32>,
    /// Object-store options (`aws_endpoint`, `aws_allow_http`, `google_service_account`, …).
    pub options: BTreeMap<String, String>,
}

/// `backup.compression` of the original plugin: `true`/`false` or a zstd level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Compression {
    /// `true`: zstd at the default level; `false`: the fastest level (blocks are always
    /// compressed).
    Enabled(bool),
    /// A zstd level, 1..=22.
    Level(i32),
}

impl Compression {
    /// The zstd level this means.
    pub fn level(self) -> i32 {
        match self {
            Compression::Enabled(true) => DEFAULT_COMPRESSION_LEVEL,
            Compression::Enabled(false) => 1,
            Compression::Level(l) => l,
        }
    }
}

/// `[backup]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSection {
    /// The database (`--database`).
    pub database: Option<String>,
    /// Several databases (the daemon backs up each; `backup` needs `--database` then).
    pub databases: Vec<String>,
    /// Engine: `full`, `time` or `bitmap` (`--engine`, default `bitmap`).
    #[serde(deserialize_with = "from_str_opt")]
    pub engine: Option<EngineKind>,
    /// What the bitmap engine does when it cannot prove it saw every change: `full`
    /// (default: take a full backup) or `fail`.
    #[serde(deserialize_with = "from_str_opt")]
    pub on_gap: Option<OnGap>,
    /// Tables exported at once (`--parallel`; default: one per core, 4 to 8).
    pub parallel: Option<usize>,
    /// Original plugin key: taken as the number of tables exported at once when
    /// `parallel` is not set.
    pub batch_size: Option<usize>,
    /// Original plugin key: compression at repository creation (`true`, `false`, or a
    /// level); `repository.compression_level` wins.
    pub compression: Option<Compression>,
    /// Original plugin key: encrypt a repository this backup creates (default true).
    pub encryption: Option<bool>,
    /// Retries of a transient database failure (default 3).
    pub retry_count: Option<u32>,
    /// Pause between retries, milliseconds (default 1000).
    pub retry_interval_ms: Option<u64>,
    /// Pack uploads in flight at once (`--upload-concurrency`; default one per core, 2..=8).
    pub upload_concurrency: Option<usize>,
    /// Compress child tables' new blocks with a zstd dictionary shared per super table
    /// (default true): a smaller repository for more CPU per backup.
    pub dictionaries: Option<bool>,
    /// Child tables of one super table read with one query at most (default 100; 1 reads
    /// each table with its own).
    pub tables_per_query: Option<usize>,
}

/// `[restore]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreSection {
    /// Target DSN (`--target`).
    pub target: Option<String>,
    /// Target user.
    pub user: Option<String>,
    /// Target password.
    pub password: Option<String>,
    /// Tables written at once (`--parallel`; default: one per core, 4 to 8).
    pub parallel: Option<usize>,
}

/// `[bitmap_engine]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BitmapEngineSection {
    /// Memory budget of the bitmaps, MiB (default 256).
    pub memory_limit_mb: Option<u64>,
    /// Directory of the tracker state files: `<dir>/<repository id>/<database>.bitmap`
    /// (default `$XDG_STATE_HOME/taosbackup` or `~/.local/state/taosbackup`).
    pub persistence_path: Option<PathBuf>,
    /// The change feed of the bitmap engine: `tmq` (default; TDengine data subscription) or
    /// `wal` (experimental: reads the vnode WAL files on the TDengine host; needs `wal_path`).
    pub change_feed: Option<String>,
    /// For `change_feed = "wal"`: TDengine's dataDir (or its `vnode/` directory) on this host.
    pub wal_path: Option<PathBuf>,
    /// Original plugin key: the bitmap implementation. Only `roaring` exists.
    #[serde(rename = "type")]
    pub bitmap_type: Option<String>,
}

/// `[event_interceptor]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventInterceptorSection {
    /// Events queued between the feed and the tracker at most (default 10000).
    pub buffer_size: Option<usize>,
    /// Workers applying events (default 4).
    pub callback_threads: Option<usize>,
    /// Original plugin key: whether change events are intercepted at all. `false` means no
    /// change feed, so the bitmap engine cannot run (engines `full` and `time` can).
    pub enable: Option<bool>,
}

/// `[retention]` and the flags of `prune` (one definition): the keep rules (restic's
/// vocabulary), applied per database by `prune` and by the daemon after each backup.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionOptions {
    /// Keep the newest N backups of each database.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N hours (UTC) that have backups.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<usize>,
    /// Keep the newest backup of each of the last N days (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep the newest backup of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<usize>,
    /// Keep every backup finished within this duration of the database's newest one (30d).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<HumanDuration>,
    /// Keep every backup of the newest N chains (a full backup and the incrementals built on
    /// its line) of each database.
    #[arg(long, value_name = "N")]
    pub keep_chains: Option<usize>,
    /// Allow a policy that forgets every backup of a database.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub allow_empty: Option<bool>,
}

impl RetentionOptions {
    /// These rules (the flags), each falling back to `file`'s (the `[retention]` section).
    pub fn or(&self, file: &RetentionOptions) -> RetentionOptions {
        RetentionOptions {
            keep_last: self.keep_last.or(file.keep_last),
            keep_hourly: self.keep_hourly.or(file.keep_hourly),
            keep_daily: self.keep_daily.or(file.keep_daily),
            keep_weekly: self.keep_weekly.or(file.keep_weekly),
            keep_monthly: self.keep_monthly.or(file.keep_monthly),
            keep_yearly: self.keep_yearly.or(file.keep_yearly),
            keep_within: self.keep_within.or(file.keep_within),
            keep_chains: self.keep_chains.or(file.keep_chains),
            allow_empty: self.allow_empty.or(file.allow_empty),
        }
    }

    /// The policy these rules make; `None` when no rule is set.
    pub fn policy(&self) -> Result<Option<RetentionPolicy>, UsageError> {
        if self.keep_chains == Some(0) {
            return Err(UsageError::new(
                "--keep-chains 0 would forget every backup",
                "keep at least one chain (--keep-chains 1)",
            ));
        }
        let p = RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within.map(|d| d.0),
            keep_chains: self.keep_chains,
            allow_empty: self.allow_empty.unwrap_or(false),
        };
        Ok((!p.is_empty()).then_some(p))
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Log file (`--log-file`).
    pub file: Option<PathBuf>,
    /// `text` or `json` (`--log-format`).
    pub format: Option<LogFormat>,
    /// Debug logging (`--debug`).
    pub debug: Option<bool>,
}

/// Parses a duration like `30d`, `12h`, `90s`, `1d 12h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. 30d, 12h, 15m, 90s)"))
}

/// A duration as flags and config keys write it: `30d`, `12h`, `90s`, `1d 12h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(HumanDuration)
    }
}

/// A bucket width as flags and config keys write it (`1d`, `1h`, …, at least one minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Width(pub BucketWidth);

impl FromStr for Width {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let d = parse_duration(text)?;
        if d.subsec_nanos() != 0 {
            return Err(format!(
                "invalid bucket width {text:?}: use whole seconds (e.g. 1d, 6h, 30m)"
            ));
        }
        BucketWidth::from_seconds(d.as_secs())
            .map(Width)
            .map_err(|e| format!("invalid bucket width {text:?}: {e}"))
    }
}

/// Deserializes a string through `T`'s `FromStr`, so a key and its flag accept the same
/// text (engines case-insensitively, durations in humantime's form).
fn from_str_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `Deserialize` through `FromStr` for the option types.
macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(HumanDuration, Width);

impl Config {
    /// Reads and validates `path`: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Config, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(
                format!("cannot read the config file {}: {e}", path.display()),
                "check the --config path and its permissions",
            )
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let config = if is_json {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        }
        .map_err(|reason| {
            UsageError::new(
                format!("invalid config file {}: {reason}", path.display()),
                "fix the key; every key is listed in examples/taosbackup.toml and docs/operations.md",
            )
        })?;
        config.validate().map_err(|reason| {
            UsageError::new(
                format!("invalid config file {}: {reason}", path.display()),
                "fix the value; every key is described in docs/operations.md",
            )
        })?;
        Ok(config)
    }

    /// Parses TOML text (no validation).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let what = describe(e.path(), e.inner().message());
            match e.inner().span() {
                Some(span) => format!("{}: {what}", line_column(text, span.start)),
                None => what,
            }
        })
    }

    /// Parses JSON text (no validation).
    pub fn from_json(text: &str) -> Result<Config, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            let msg = inner.to_string();
            // serde_json appends " at line L column C"; keep it, it locates the key.
            describe(e.path(), &msg)
        })?;
        de.end()
            .map_err(|e| format!("trailing characters after the JSON object: {e}"))?;
        Ok(config)
    }

    /// Checks values that have a fixed form (engines, durations, ranges).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.bitmap_engine.bitmap_type {
            if t != "roaring" {
                return Err(format!(
                    "bitmap_engine.type: {t:?} is not a bitmap taosbackup has; the only one is \
                     \"roaring\""
                ));
            }
        }
        if let Some(l) = self.repository.compression_level {
            check_level(l).map_err(|err| format!("repository.compression_level: {err}"))?;
        }
        if let Some(c) = self.backup.compression {
            check_level(c.level()).map_err(|err| format!("backup.compression: {err}"))?;
        }
        for (key, value) in [
            ("backup.parallel", self.backup.parallel),
            ("backup.batch_size", self.backup.batch_size),
            ("backup.tables_per_query", self.backup.tables_per_query),
            ("restore.parallel", self.restore.parallel),
            ("source.pool_size", self.source.pool_size),
            (
                "event_interceptor.buffer_size",
                self.event_interceptor.buffer_size,
            ),
            (
                "event_interceptor.callback_threads",
                self.event_interceptor.callback_threads,
            ),
            ("retention.keep_chains", self.retention.keep_chains),
        ] {
            if value == Some(0) {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.bitmap_engine.memory_limit_mb == Some(0) {
            return Err("bitmap_engine.memory_limit_mb must be at least 1".into());
        }
        if self.backup.database.is_some() && !self.backup.databases.is_empty() {
            return Err("set backup.database or backup.databases, not both".into());
        }
        Ok(())
    }

    /// The databases the config names (`backup.database` or `backup.databases`).
    pub fn databases(&self) -> Vec<String> {
        match &self.backup.database {
            Some(d) => vec![d.clone()],
            None => self.backup.databases.clone(),
        }
    }
}

/// `line L, column C` of byte `offset` in `text` (both from 1).
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn check_level(level: i32) -> Result<(), String> {
    if (1..=22).contains(&level) {
        Ok(())
    } else {
        Err(format!("zstd level {level} is outside 1..=22"))
    }
}

/// Turns a serde error at `path` into "unknown key `a.b`" or "`a.b`: message".
fn describe(path: &serde_path_to_error::Path, message: &str) -> String {
    let prefix = path.to_string();
    let prefix = if prefix == "." { String::new() } else { prefix };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            // The path usually ends with the unknown field already.
            let key = if prefix.is_empty() || prefix == field {
                field.to_string()
            } else if prefix.ends_with(&format!(".{field}")) {
                prefix.clone()
            } else {
                format!("{prefix}.{field}")
            };
            return format!("unknown key `{key}`{tail}");
        }
    }
    if prefix.is_empty() {
        message.to_string()
    } else {
        format!("`{prefix}`: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_plugin_json_keys() {
        let c = Config::from_json(
            r#"{
              "bitmap_engine": {"memory_limit_mb": 1024, "persistence_path": "/var/lib/taosbackup"},
              "event_interceptor": {"buffer_size": 5000, "callback_threads": 2},
              "backup": {"batch_size": 8, "compression": true, "encryption": false,
                         "retry_count": 5, "retry_interval_ms": 200}
            }"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.bitmap_engine.memory_limit_mb, Some(1024));
        assert_eq!(c.event_interceptor.callback_threads, Some(2));
        assert_eq!(c.backup.compression, Some(Compression::Enabled(true)));
        assert_eq!(c.backup.encryption, Some(false));
        assert_eq!(c.backup.retry_interval_ms, Some(200));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = Config::from_toml("[backup]\nengine = \"full\"\nparallel = = 3\n").unwrap_err();
        assert!(e.starts_with("line 3, column "), "{e}");
        let e = Config::from_toml("[backup]\nretry_count = \"many\"\n").unwrap_err();
        assert!(
            e.starts_with("line 2, column 15: `backup.retry_count`"),
            "{e}"
        );
        let e = Config::from_json("{\"backup\": {\n  \"parallel\": ,\n}}").unwrap_err();
        assert!(e.contains("line 2 column"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_section() {
        let e = Config::from_toml("[backup]\nenginee = \"full\"\n").unwrap_err();
        assert!(e.contains("unknown key `backup.enginee`"), "{e}");
        let e = Config::from_json(r#"{"bitmap_engine": {"memory_limit": 1}}"#).unwrap_err();
        assert!(
            e.contains("unknown key `bitmap_engine.memory_limit`"),
            "{e}"
        );
        let e = Config::from_toml("verbose = true\n").unwrap_err();
        assert!(e.contains("unknown key `verbose`"), "{e}");
    }

    #[test]
    fn values_are_validated() {
        // Typed values are refused while parsing, naming the key.
        let unparsable = |toml: &str| Config::from_toml(toml).unwrap_err();
        let e = unparsable("[backup]\nengine = \"fast\"");
        assert!(
            e.contains("backup.engine") && e.contains("unknown engine"),
            "{e}"
        );
        assert!(
            unparsable("[retention]\nkeep_within = \"soon\"").contains("retention.keep_within")
        );
        assert!(unparsable("[repository]\nbucket_width = \"30s\"").contains("bucket_width"));
        assert!(unparsable("[backup]\non_gap = \"maybe\"").contains("backup.on_gap"));
        assert!(
            unparsable("[source]\nrequest_timeout = \"1x\"").contains("source.request_timeout")
        );
        // The file accepts what the flag accepts.
        let c = Config::from_toml("[backup]\nengine = \"TIME\"\non_gap = \"fail\"").unwrap();
        assert_eq!(c.backup.engine, Some(EngineKind::Time));
        assert_eq!(c.backup.on_gap, Some(OnGap::Fail));
        let bad = |toml: &str| Config::from_toml(toml).unwrap().validate().unwrap_err();
        assert!(bad("[backup]\ncompression = 40").contains("backup.compression"));
        assert!(bad("[backup]\nparallel = 0").contains("backup.parallel"));
    }

    #[test]
    fn shipped_examples_parse() {
        let toml = Config::from_toml(include_str!("../../../examples/taosbackup.toml")).unwrap();
        toml.validate().unwrap();
        assert!(toml.schedule.unwrap().full.is_some());
        assert_eq!(toml.daemon.unwrap().listen.port(), 8080);
        let json = Config::from_json(include_str!("../../../examples/backup_config.json")).unwrap();
        json.validate().unwrap();
        assert_eq!(json.event_interceptor.buffer_size, Some(10000));
        assert_eq!(json.bitmap_engine.bitmap_type.as_deref(), Some("roaring"));
        assert!(json.plugin.is_some());
    }

    #[test]
    fn original_plugin_file_verbatim() {
        let c = Config::from_json(
            r#"{
              "plugin": {"name": "incremental_bitmap_backup", "version": "1.0.0",
                         "library_path": "/usr/local/taos/plugins/backup/libincremental_bitmap_backup.so"},
              "bitmap_engine": {"type": "roaring", "memory_limit_mb": 1024,
                                "persistence_path": "/var/lib/taos/bitmap_engine"},
              "event_interceptor": {"enable": true, "buffer_size": 10000, "callback_threads": 4},
              "backup": {"batch_size": 4, "compression": true, "encryption": true,
                         "retry_count": 3, "retry_interval_ms": 1000}
            }"#,
        )
        .unwrap();
        c.validate().unwrap();
        let bad = |json: &str| Config::from_json(json).unwrap().validate().unwrap_err();
        assert!(bad(r#"{"bitmap_engine": {"type": "ewah"}}"#).contains("roaring"));
        let e = Config::from_json(r#"{"plugin": {"path": "x"}}"#).unwrap_err();
        assert!(e.contains("unknown key `plugin.path`"), "{e}");
    }

    /// The keys serde accepts at `section` (top level when empty), from the "expected …"
    /// list of an unknown-key error.
    fn accepted_keys(section: &str) -> Vec<String> {
        let probe = if section.is_empty() {
            "__probe = 1".to_string()
        } else {
            format!("[{section}]\n__probe = 1")
        };
        let e = Config::from_toml(&probe).unwrap_err();
        let list = e
            .split(", expected ")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        list.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, k)| k.to_string())
            .collect()
    }

    /// Every key the types accept (`section.key`), derived from the types themselves.
    fn type_keys() -> std::collections::BTreeSet<String> {
        let sections = accepted_keys("");
        assert!(
            sections.contains(&"bitmap_engine".to_string()),
            "{sections:?}"
        );
        sections
            .iter()
            .flat_map(|s| {
                accepted_keys(s)
                    .into_iter()
                    .map(move |k| format!("{s}.{k}"))
            })
            .collect()
    }

    /// The keys of docs/operations.md's key reference: every `section.key` (or
    /// `section.*`) in the first column of the tables under its two "Configuration"
    /// headings (the general one and the daemon's).
    fn documented_keys() -> std::collections::BTreeSet<String> {
        let docs = include_str!("../../../docs/operations.md");
        let mut keys = std::collections::BTreeSet::new();
        let mut in_reference = false;
        for line in docs.lines() {
            if line.starts_with('#') {
                in_reference = line == "## Configuration" || line == "### Configuration";
                continue;
            }
            if !in_reference || !line.starts_with("| `") {
                continue;
            }
            let first = line.trim_start_matches('|').split('|').next().unwrap_or("");
            for token in first.split('`').skip(1).step_by(2) {
                let key = token.split_once('.').is_some_and(|(s, k)| {
                    !s.is_empty()
                        && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && (k == "*" || k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                });
                if key {
                    keys.insert(token.to_string());
                }
            }
        }
        keys
    }

    /// The keys examples/taosbackup.toml shows, commented out or not: `key = …` lines under
    /// their `[section]` (the free-form `[repository.options]` counts as its header only).
    fn example_keys() -> std::collections::BTreeSet<String> {
        let example = include_str!("../../../examples/taosbackup.toml");
        let mut keys = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in example.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if let Some(header) = line.strip_prefix('[') {
                section = header.split(']').next().unwrap_or("").to_string();
                if section.contains('.') {
                    keys.insert(section.clone());
                }
                continue;
            }
            let Some((key, _)) = line.split_once(" =") else {
                continue;
            };
            let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key && !section.is_empty() && !section.contains('.') {
                keys.insert(format!("{section}.{key}"));
            }
        }
        keys
    }

    /// Every key the config accepts is documented in docs/operations.md's key reference and
    /// shown in examples/taosbackup.toml, so neither can miss a key the code has.
    #[test]
    fn every_key_is_documented() {
        let docs = documented_keys();
        let example = example_keys();
        for key in type_keys() {
            let section = key.split('.').next().unwrap_or("");
            assert!(
                docs.contains(&key) || docs.contains(&format!("{section}.*")),
                "{key} is not in docs/operations.md's key reference"
            );
            assert!(
                example.contains(&key),
                "{key} is not in examples/taosbackup.toml"
            );
        }
    }

    /// Neither docs/operations.md's key reference nor examples/taosbackup.toml names a key
    /// the config does not accept.
    #[test]
    fn no_documented_key_is_invented() {
        let keys = type_keys();
        let sections = accepted_keys("");
        let docs = documented_keys();
        assert!(docs.len() > 40, "the key reference was not found: {docs:?}");
        for key in &docs {
            let known = match key.strip_suffix(".*") {
                Some(section) => sections.iter().any(|s| s == section),
                None => keys.contains(key),
            };
            assert!(
                known,
                "docs/operations.md documents {key}, which the config does not accept"
            );
        }
        let example = example_keys();
        assert!(example.len() > 40, "{example:?}");
        for key in &example {
            assert!(
                keys.contains(key),
                "examples/taosbackup.toml shows {key}, which the config does not accept"
            );
        }
        // The test sees what it claims to: an invented key is caught.
        assert!(!keys.contains("backup.enigne") && keys.contains("backup.engine"));
    }

    #[test]
    fn durations_and_widths() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!("1h".parse::<Width>().unwrap().0.seconds(), 3600);
        assert!("1500ms".parse::<Width>().is_err());
        assert!("30s".parse::<Width>().is_err());
    }
}
