//! What every command starts from: the global flags and the config file, and the wiring
//! helpers built on them — repository, password, TDengine connection.
//!
//! This is the one place where a flag and its config key meet, always with the precedence
//! docs/operations.md states: the flag, then the config file, then the default. The values
//! are typed on both sides (`crate::config`'s option types), so nothing is parsed here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use taosbackup_engine::{EngineKind, OnGap, TrackingConfig};
use taosbackup_sink::{
    Backend, InitOptions, KdfParams, OpenOptions, Password, Repo, RetentionPolicy, Scheme,
};
use taosbackup_source::{ConnectOptions, TaosSource};

use crate::args::{GlobalArgs, LogFormat};
use crate::config::{Config, RetentionOptions, Width};
use crate::error::{UsageError, usage};

/// The most tables exported at once that `backup.batch_size` can ask for.
pub const MAX_PARALLEL_FROM_BATCH_SIZE: usize = 16;
/// The fewest tables exported (or written) at once by default: see [`parallel_for`].
const MIN_DEFAULT_PARALLEL: usize = 4;
/// The most tables exported (or written) at once by default: see [`parallel_for`].
const MAX_DEFAULT_PARALLEL: usize = 8;

/// The default of `--parallel` (backup and restore) on a machine with `cores` cores: one
/// export (or table written) per core, so that the work spreads over the async workers: a
/// backup's reading, checking and cutting of the server's blocks and its compression,
/// hashing and encryption (each export is a task of its own, docs/performance-history.md "Exports
/// as tasks of their own"); a restore's decoding and writing. At least 4, the default before
/// (docs/performance.md measures 4 exports on two cores), and at most 8, the thread count
/// TDengine's taosdump uses by default (its `--thread-num`, taos-tools src/taosdump.c), so
/// that a large machine does not open more connections to the server than TDengine's own
/// tools do.
pub fn parallel_for(cores: usize) -> usize {
    cores.clamp(MIN_DEFAULT_PARALLEL, MAX_DEFAULT_PARALLEL)
}

/// The default of `--parallel` on this machine ([`parallel_for`] its available cores).
pub fn default_parallel() -> usize {
    parallel_for(std::thread::available_parallelism().map_or(MIN_DEFAULT_PARALLEL, |n| n.get()))
}

/// How long one key derivation should take when a key file is written.
const KDF_TARGET: Duration = Duration::from_millis(500);

/// Flags and config of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The global flags.
    pub global: GlobalArgs,
    /// The config file (empty without `--config`).
    pub config: Config,
}

/// How a repository is created when a command creates one.
#[derive(Debug, Clone, Copy)]
pub struct InitChoice {
    /// Encrypt.
    pub encryption: bool,
    /// Bucket width.
    pub bucket_width: taosbackup_core::BucketWidth,
    /// zstd level.
    pub compression_level: i32,
    /// Create it even in a local directory that holds other files (`--force`).
    pub force: bool,
}

/// Memory repositories outside tests are refused unless this variable is `1`: everything
/// written to `memory://` is gone when the process exits.
pub const ALLOW_MEMORY_ENV: &str = "TAOSBACKUP_ALLOW_MEMORY_REPOSITORY";

impl Context {
    /// Loads `--config` (if any).
    pub fn load(global: GlobalArgs) -> Result<Context, UsageError> {
        let config = match &global.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        Ok(Context { global, config })
    }

    /// Debug output: `--debug`, `TAOS_BITMAP_DEBUG=1`, or `log.debug = true`.
    pub fn debug(&self) -> bool {
        self.global.debug
            || crate::logging::debug_from_env()
            || self.config.log.debug.unwrap_or(false)
    }

    /// Log format (flag, then config, then text).
    pub fn log_format(&self) -> LogFormat {
        self.global
            .log_format
            .or(self.config.log.format)
            .unwrap_or(LogFormat::Text)
    }

    /// Log file (flag, then config).
    pub fn log_file(&self) -> Option<PathBuf> {
        self.global
            .log_file
            .clone()
            .or_else(|| self.config.log.file.clone())
    }

    /// The repository URL: `--repo`/`--output`, else `repository.url`.
    pub fn repo_url(&self, flag: &Option<String>) -> anyhow::Result<String> {
        flag.clone()
            .or_else(|| self.config.repository.url.clone())
            .ok_or_else(|| {
                usage(
                    "no repository given",
                    "pass --repo URL (or --output URL), or set repository.url in the config file",
                )
            })
    }

    /// The repository password: `--password-file`, `repository.password_file`, else
    /// `TAOSBACKUP_PASSWORD` (None when none is set).
    pub fn password(&self) -> anyhow::Result<Option<Password>> {
        let file = self
            .global
            .password_file
            .clone()
            .or_else(|| self.config.repository.password_file.clone());
        if let Some(path) = file {
            return Ok(Some(Password::from_file(&path)?));
        }
        if std::env::var_os(taosbackup_sink::PASSWORD_ENV).is_some() {
            return Ok(Some(Password::from_env()?));
        }
        Ok(None)
    }

    /// The storage backend of `url`, with `repository.options` and
    /// `backup.upload_concurrency`. `memory://` is refused unless [`ALLOW_MEMORY_ENV`] is
    /// `1` (tests).
    pub fn backend(&self, url: &str) -> anyhow::Result<Backend> {
        if matches!(Scheme::of(url), Ok(Scheme::Memory))
            && std::env::var(ALLOW_MEMORY_ENV).as_deref() != Ok("1")
        {
            return Err(usage(
                format!(
                    "{url} keeps the repository in this process's memory: every backup written \
                     there is lost when taosbackup exits"
                ),
                format!(
                    "use a path or an s3://, gs:// or az:// URL (memory:// is for tests: set \
                     {ALLOW_MEMORY_ENV}=1 to use it anyway)"
                ),
            ));
        }
        let options = &self.config.repository.options;
        let mut backend = if options.is_empty() {
            Backend::from_url(url)?
        } else {
            Backend::from_url_with_options(url, options.iter().map(|(k, v)| (k, v.clone())))?
        };
        match self.config.backup.upload_concurrency {
            Some(0) => {
                return Err(usage(
                    "backup.upload_concurrency must be at least 1",
                    "give --upload-concurrency N with N >= 1, or leave it out for one per core",
                ));
            }
            Some(n) => backend = backend.with_upload_concurrency(n),
            None => {}
        }
        Ok(backend)
    }

    /// The options repositories are opened with: the snapshot cache unless `--no-cache`.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache_dir: if self.global.no_cache {
                None
            } else {
                default_cache_dir()
            },
            ..OpenOptions::default()
        }
    }

    /// Opens the repository at `url`.
    pub async fn open_repo(&self, url: &str) -> anyhow::Result<Repo> {
        self.open_repo_with(url, true).await
    }

    /// Opens the repository at `url`, loading its index or not (`list` reads snapshot
    /// objects only; see [`OpenOptions::load_index`]).
    pub async fn open_repo_with(&self, url: &str, load_index: bool) -> anyhow::Result<Repo> {
        let backend = self.backend(url)?;
        let password = self.password()?;
        let options = OpenOptions {
            load_index,
            ..self.open_options()
        };
        Repo::open_with(backend, password.as_ref(), options)
            .await
            .map_err(|e| self.storage_error(url, e, "cannot open the repository"))
    }

    /// Where the object store of `url` could have found credentials, when it found none in
    /// the environment or `repository.options` (then it asks the cloud's metadata service,
    /// and a failure there is an HTTP error that names no credentials at all). `None` for
    /// local repositories and when some credential source is set. The variables and keys
    /// are object_store 0.14's (`AmazonS3Builder`, `GoogleCloudStorageBuilder`,
    /// `MicrosoftAzureBuilder` `from_env` and their config keys).
    pub fn missing_credentials(&self, url: &str) -> Option<String> {
        let sources: &[&str] = match Scheme::of(url).ok()? {
            Scheme::S3 => &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_SKIP_SIGNATURE",
            ],
            Scheme::Gcs => &[
                "GOOGLE_SERVICE_ACCOUNT",
                "GOOGLE_SERVICE_ACCOUNT_PATH",
                "GOOGLE_SERVICE_ACCOUNT_KEY",
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_SKIP_SIGNATURE",
            ],
            Scheme::Azure => &[
                "AZURE_STORAGE_ACCOUNT_KEY",
                "AZURE_STORAGE_ACCESS_KEY",
                "AZURE_STORAGE_SAS_KEY",
                "AZURE_STORAGE_TOKEN",
                "AZURE_CLIENT_SECRET",
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_STORAGE_USE_EMULATOR",
                "AZURE_SKIP_SIGNATURE",
            ],
            _ => return None,
        };
        let options = &self.config.repository.options;
        let set = sources.iter().any(|v| {
            std::env::var_os(v).is_some_and(|x| !x.is_empty())
                || options.contains_key(&v.to_ascii_lowercase())
        });
        if set {
            return None;
        }
        let mut looked: Vec<String> = sources.iter().map(|v| v.to_string()).collect();
        looked.push("repository.options".into());
        if matches!(Scheme::of(url), Ok(Scheme::Gcs)) {
            looked.push("~/.config/gcloud/application_default_credentials.json".into());
        }
        looked.push("the instance metadata service".into());
        Some(looked.join(", "))
    }

    /// A storage failure at `url`, said as "no credentials found (looked in …)" when the
    /// store had none to use.
    pub fn storage_error(&self, url: &str, e: taosbackup_sink::Error, what: &str) -> anyhow::Error {
        let backend = matches!(e, taosbackup_sink::Error::Backend { .. });
        match self.missing_credentials(url) {
            Some(looked) if backend => crate::error::Advised {
                message: format!("{what} {url}: no credentials found (looked in {looked}): {e}"),
                hint: "give the storage's credentials in the environment (e.g. \
                       AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or in repository.options"
                    .into(),
            }
            .into(),
            _ => anyhow::Error::from(e).context(format!("{what} {url}")),
        }
    }

    /// The creation settings: `no_encryption` flag, then config; bucket width and level from
    /// the flags, then config.
    pub fn init_choice(
        &self,
        no_encryption: bool,
        bucket_width: Option<Width>,
        compression_level: Option<i32>,
    ) -> anyhow::Result<InitChoice> {
        let encryption = !no_encryption && self.config.backup.encryption.unwrap_or(true);
        let bucket_width = bucket_width
            .or(self.config.repository.bucket_width)
            .map_or(taosbackup_core::BucketWidth::DAY, |w| w.0);
        let compression_level = compression_level
            .or(self.config.repository.compression_level)
            .or(self.config.backup.compression.map(|c| c.level()))
            .unwrap_or(taosbackup_sink::DEFAULT_COMPRESSION_LEVEL);
        if !(1..=22).contains(&compression_level) {
            return Err(usage(
                format!("compression level {compression_level} is outside 1..=22"),
                format!(
                    "give --compression-level between 1 (fastest) and 22 (smallest); {} is the default",
                    taosbackup_sink::DEFAULT_COMPRESSION_LEVEL
                ),
            ));
        }
        Ok(InitChoice {
            encryption,
            bucket_width,
            compression_level,
            force: false,
        })
    }

    /// Creates a repository at `url`. A local directory holding other files (and no
    /// repository) is refused unless `choice.force`.
    pub async fn init_repo(&self, url: &str, choice: InitChoice) -> anyhow::Result<Repo> {
        let backend = self.backend(url)?;
        if !choice.force {
            refuse_foreign_directory(url)?;
        }
        let password = if choice.encryption {
            Some(self.password()?.ok_or_else(|| {
                usage(
                    format!("cannot create an encrypted repository at {url}: no password"),
                    "give one with --password-file FILE or TAOSBACKUP_PASSWORD, or pass \
                     --no-encryption for an unencrypted repository",
                )
            })?)
        } else {
            None
        };
        let kdf = if choice.encryption {
            KdfParams::calibrate(KDF_TARGET)?
        } else {
            KdfParams::default()
        };
        let options = InitOptions {
            encryption: choice.encryption,
            kdf,
            bucket_width: choice.bucket_width,
            compression_level: choice.compression_level,
            ..InitOptions::default()
        };
        Repo::init(backend, options, password.as_ref())
            .await
            .map_err(|e| self.storage_error(url, e, "cannot create a repository at"))
    }

    /// Opens the repository at `url`, creating it (logged) when the location holds none.
    pub async fn open_or_init(&self, url: &str, choice: InitChoice) -> anyhow::Result<Repo> {
        self.open_or_init_with(url, choice, true).await
    }

    /// [`Context::open_or_init`], loading the index at open or not: `backup` does not, its
    /// session loads it under the lock anyway (one file per backup that stored data: a
    /// load that grows with the number of backups, done once instead of twice).
    pub async fn open_or_init_with(
        &self,
        url: &str,
        choice: InitChoice,
        load_index: bool,
    ) -> anyhow::Result<Repo> {
        let backend = self.backend(url)?;
        let password = self.password()?;
        let options = OpenOptions {
            load_index,
            ..self.open_options()
        };
        match Repo::open_with(backend, password.as_ref(), options).await {
            Ok(r) => Ok(r),
            Err(taosbackup_sink::Error::NotARepository { .. }) => {
                let repo = self.init_repo(url, choice).await?;
                tracing::info!(
                    repository = url,
                    id = %repo.config().id,
                    encrypted = choice.encryption,
                    "no repository at {url}: created one"
                );
                Ok(repo)
            }
            Err(e) => Err(self.storage_error(url, e, "cannot open the repository")),
        }
    }

    /// Connection options for the backup source: `dsn` flag, then `source.dsn`.
    pub fn source_options(
        &self,
        dsn: &Option<String>,
        parallel: usize,
    ) -> anyhow::Result<ConnectOptions> {
        let s = &self.config.source;
        let dsn = dsn.clone().or_else(|| s.dsn.clone()).ok_or_else(|| {
            usage(
                "no TDengine source given",
                "pass --source DSN (host:6030, ws://host:6041), or set source.dsn in the config file",
            )
        })?;
        self.connect_options(dsn, s.user.clone(), s.password.clone(), parallel)
    }

    /// Connection options for a restore target: `dsn` flag, then `restore.target`.
    pub fn target_options(
        &self,
        dsn: &Option<String>,
        parallel: usize,
    ) -> anyhow::Result<ConnectOptions> {
        let r = &self.config.restore;
        let dsn = dsn.clone().or_else(|| r.target.clone()).ok_or_else(|| {
            usage(
                "no restore target given",
                "pass --target DSN (host:6030, ws://host:6041), or set restore.target in the config file",
            )
        })?;
        self.connect_options(dsn, r.user.clone(), r.password.clone(), parallel)
    }

    fn connect_options(
        &self,
        dsn: String,
        user: Option<String>,
        password: Option<String>,
        parallel: usize,
    ) -> anyhow::Result<ConnectOptions> {
        let b = &self.config.backup;
        let mut o = ConnectOptions::new(dsn);
        o.user = user;
        o.password = password;
        o.pool_size = self.config.source.pool_size.unwrap_or(parallel.max(4));
        if let Some(n) = b.retry_count {
            o.retry_count = n;
        }
        if let Some(ms) = b.retry_interval_ms {
            o.retry_interval_ms = ms;
        }
        if let Some(t) = self.config.source.request_timeout {
            o.request_timeout = t.0;
        }
        Ok(o)
    }

    /// Connects (lazily: the first statement opens the connection).
    pub fn connect(&self, options: ConnectOptions) -> anyhow::Result<TaosSource> {
        let dsn = options.dsn.clone();
        TaosSource::connect(options).with_context(|| {
            format!(
                "cannot use TDengine at {}",
                taosbackup_source::Endpoint::parse(&dsn)
                    .map(|(e, _, _)| e.to_string())
                    .unwrap_or_else(|_| "the given DSN".into())
            )
        })
    }

    /// The database to back up: `--database`, else the config's only database.
    pub fn database(&self, flag: &Option<String>) -> anyhow::Result<String> {
        if let Some(d) = flag {
            return Ok(d.clone());
        }
        let dbs = self.config.databases();
        match dbs.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(usage(
                "no database given",
                "pass --database DB, or set backup.database in the config file",
            )),
            _ => Err(usage(
                format!("the config names several databases ({})", dbs.join(", ")),
                "pass --database DB to choose one",
            )),
        }
    }

    /// The engine: flag, then `backup.engine`, then bitmap. The bitmap engine needs the
    /// change feed, which the original plugin's `event_interceptor.enable = false` turns off.
    pub fn engine(&self, flag: Option<EngineKind>) -> anyhow::Result<EngineKind> {
        let engine = flag
            .or(self.config.backup.engine)
            .unwrap_or(EngineKind::Bitmap);
        if engine == EngineKind::Bitmap && self.config.event_interceptor.enable == Some(false) {
            return Err(usage(
                "the bitmap engine needs the change feed, and event_interceptor.enable = false \
                 turns it off",
                "set event_interceptor.enable to true, or back up with --engine full or time",
            ));
        }
        Ok(engine)
    }

    /// The retention policy of the `prune` flags, each rule falling back to `[retention]`;
    /// `None` when no rule is set.
    pub fn retention(&self, flags: &RetentionOptions) -> anyhow::Result<Option<RetentionPolicy>> {
        Ok(flags.or(&self.config.retention).policy()?)
    }

    /// `backup.on_gap`, else [`OnGap::Full`].
    pub fn on_gap(&self) -> OnGap {
        self.config.backup.on_gap.unwrap_or_default()
    }

    /// Tables exported at once: flag, `backup.parallel`, `backup.batch_size` (at most
    /// [`MAX_PARALLEL_FROM_BATCH_SIZE`]), [`default_parallel`].
    pub fn backup_parallel(&self, flag: Option<usize>) -> anyhow::Result<usize> {
        // The original plugin's `batch_size` counted rows per batch (values like 1000), not
        // connections: as a fallback for `parallel` it is capped so it cannot open a
        // connection per row of a batch.
        let from_batch = self.config.backup.batch_size.map(|b| {
            if b > MAX_PARALLEL_FROM_BATCH_SIZE {
                tracing::info!(
                    batch_size = b,
                    parallel = MAX_PARALLEL_FROM_BATCH_SIZE,
                    "backup.batch_size taken as the number of tables exported at once, capped"
                );
            }
            b.min(MAX_PARALLEL_FROM_BATCH_SIZE)
        });
        let p = flag
            .or(self.config.backup.parallel)
            .or(from_batch)
            .unwrap_or_else(default_parallel);
        if p == 0 {
            return Err(usage(
                "--parallel must be at least 1",
                "pass --parallel 1 or more",
            ));
        }
        Ok(p)
    }

    /// Tables written at once on restore: flag, `restore.parallel`, [`default_parallel`].
    pub fn restore_parallel(&self, flag: Option<usize>) -> anyhow::Result<usize> {
        let p = flag
            .or(self.config.restore.parallel)
            .unwrap_or_else(default_parallel);
        if p == 0 {
            return Err(usage(
                "--parallel must be at least 1",
                "pass --parallel 1 or more",
            ));
        }
        Ok(p)
    }

    /// The tracker settings for `database` of repository `repo_id`.
    pub fn tracking_config(&self, repo_id: &str, database: &str) -> anyhow::Result<TrackingConfig> {
        let dir = match &self.config.bitmap_engine.persistence_path {
            Some(p) => p.clone(),
            None => default_state_dir()?,
        };
        let mut c = TrackingConfig::new(dir.join(repo_id).join(format!("{database}.bitmap")));
        if let Some(m) = self.config.bitmap_engine.memory_limit_mb {
            c.memory_limit_mb = m;
        }
        if let Some(b) = self.config.event_interceptor.buffer_size {
            c.buffer_size = b;
        }
        if let Some(t) = self.config.event_interceptor.callback_threads {
            c.callback_threads = t;
        }
        Ok(c)
    }
}

/// Refuses to create a repository in a local directory that already holds files (a typo in
/// `--repo` would otherwise mix backups into someone else's data). A repository there is
/// left to `Repo::init` ("already exists").
fn refuse_foreign_directory(url: &str) -> anyhow::Result<()> {
    if !matches!(Scheme::of(url), Ok(Scheme::Local)) {
        return Ok(());
    }
    let path = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
    if path.join("config").exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let total = names.len();
    names.truncate(3);
    let more = if total > 3 { ", …" } else { "" };
    Err(usage(
        format!(
            "{} is not empty ({total} entries: {}{more}) and holds no taosbackup repository",
            path.display(),
            names.join(", ")
        ),
        "choose an empty or new directory, or pass --force to create the repository there anyway",
    ))
}

/// `$XDG_CACHE_HOME/taosbackup`, else `~/.cache/taosbackup` (XDG base directories); `None`
/// when neither is set (no cache: listing downloads every snapshot).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("taosbackup"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/taosbackup"))
}

/// `$XDG_STATE_HOME/taosbackup`, else `~/.local/state/taosbackup`.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("taosbackup"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/taosbackup")),
        None => Err(usage(
            "cannot choose where to keep the change tracker's state: neither XDG_STATE_HOME nor HOME is set",
            "set bitmap_engine.persistence_path in the config file",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(toml: &str) -> Context {
        Context {
            global: GlobalArgs::default(),
            config: Config::from_toml(toml).unwrap(),
        }
    }

    #[test]
    fn flags_override_the_file() {
        let c = ctx(
            "[backup]\ndatabase = \"a\"\nengine = \"time\"\nbatch_size = 7\n[repository]\nurl = \"/r\"",
        );
        assert_eq!(c.database(&None).unwrap(), "a");
        assert_eq!(c.database(&Some("b".into())).unwrap(), "b");
        assert_eq!(c.engine(None).unwrap(), EngineKind::Time);
        assert_eq!(c.engine(Some(EngineKind::Full)).unwrap(), EngineKind::Full);
        assert_eq!(c.backup_parallel(None).unwrap(), 7);
        assert_eq!(c.backup_parallel(Some(2)).unwrap(), 2);
        let plugin = ctx("[backup]\nbatch_size = 1000\n[repository]\nurl = \"/r\"");
        assert_eq!(
            plugin.backup_parallel(None).unwrap(),
            MAX_PARALLEL_FROM_BATCH_SIZE
        );
        assert_eq!(c.repo_url(&None).unwrap(), "/r");
        assert_eq!(c.repo_url(&Some("/x".into())).unwrap(), "/x");
        // Retention: each rule of the flags, else the file's; none at all is no policy.
        let r = ctx("[retention]\nkeep_last = 3\nkeep_within = \"1d\"\nallow_empty = true");
        let flags = RetentionOptions {
            keep_last: Some(5),
            allow_empty: Some(false),
            ..RetentionOptions::default()
        };
        let p = r.retention(&flags).unwrap().unwrap();
        assert_eq!(p.keep_last, Some(5));
        assert_eq!(p.keep_within, Some(Duration::from_secs(86400)));
        assert!(!p.allow_empty);
        assert!(
            r.retention(&RetentionOptions::default())
                .unwrap()
                .unwrap()
                .allow_empty
        );
        assert!(c.retention(&RetentionOptions::default()).unwrap().is_none());
        let zero = RetentionOptions {
            keep_chains: Some(0),
            ..RetentionOptions::default()
        };
        assert!(c.retention(&zero).is_err());
    }

    #[test]
    fn parallel_defaults_follow_the_cores_from_4_to_8() {
        let by_cores: Vec<usize> = [1, 2, 4, 6, 8, 12, 64].map(parallel_for).to_vec();
        assert_eq!(by_cores, [4, 4, 4, 6, 8, 8, 8]);
        assert!((4..=8).contains(&default_parallel()));
    }

    #[test]
    fn interceptor_off_means_no_bitmap_engine() {
        let c = ctx("[event_interceptor]\nenable = false");
        let e = c.engine(None).unwrap_err();
        assert!(format!("{e}").contains("event_interceptor.enable"), "{e}");
        assert_eq!(c.engine(Some(EngineKind::Full)).unwrap(), EngineKind::Full);
    }

    #[test]
    fn defaults_and_missing_settings() {
        let c = ctx("");
        assert_eq!(c.engine(None).unwrap(), EngineKind::Bitmap);
        assert_eq!(c.on_gap(), OnGap::Full);
        assert_eq!(c.backup_parallel(None).unwrap(), default_parallel());
        assert_eq!(c.restore_parallel(None).unwrap(), default_parallel());
        assert!(c.repo_url(&None).is_err());
        assert!(c.database(&None).is_err());
        let many = ctx("[backup]\ndatabases = [\"a\", \"b\"]");
        let e = many.database(&None).unwrap_err();
        assert!(format!("{e}").contains("a, b"), "{e}");
    }

    #[test]
    fn init_choice_combines_flags_and_the_original_keys() {
        let level = |toml: &str| {
            ctx(toml)
                .init_choice(false, None, None)
                .unwrap()
                .compression_level
        };
        assert_eq!(level(""), taosbackup_sink::DEFAULT_COMPRESSION_LEVEL);
        assert_eq!(
            level("[backup]\ncompression = true"),
            taosbackup_sink::DEFAULT_COMPRESSION_LEVEL
        );
        let c = ctx("[backup]\nencryption = false\ncompression = false");
        let choice = c
            .init_choice(false, Some("6h".parse().unwrap()), None)
            .unwrap();
        assert!(!choice.encryption);
        assert_eq!(choice.compression_level, 1);
        assert_eq!(choice.bucket_width.seconds(), 6 * 3600);
        let c = ctx("[repository]\ncompression_level = 9\n[backup]\ncompression = 2");
        assert_eq!(
            c.init_choice(false, None, None).unwrap().compression_level,
            9
        );
        assert_eq!(
            c.init_choice(false, None, Some(4))
                .unwrap()
                .compression_level,
            4
        );
        assert!(c.init_choice(false, None, Some(23)).is_err());
    }

    #[test]
    fn tracker_state_path_is_per_repository_and_database() {
        let c = ctx(
            "[bitmap_engine]\npersistence_path = \"/var/lib/tb\"\nmemory_limit_mb = 64\n[event_interceptor]\ncallback_threads = 2",
        );
        let t = c.tracking_config("abc", "power").unwrap();
        assert_eq!(
            t.persistence_path,
            PathBuf::from("/var/lib/tb/abc/power.bitmap")
        );
        assert_eq!(t.memory_limit_mb, 64);
        assert_eq!(t.callback_threads, 2);
    }
}
