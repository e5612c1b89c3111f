//! The command line (the user contract of issue 7): every command and flag.
//!
//! Flags override the config file (`--config`); everything a flag can set is `Option`, so
//! "not given" is distinguishable from a default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use taosbackup_engine::EngineKind;

use crate::config::{RetentionOptions, Width};

/// Incremental backup and restore for TDengine.
///
/// With no command, `backup` is meant:
/// `taosbackup --engine bitmap --source localhost:6030 --database power --output /backup/repo`.
///
/// Global options go before or after the command; `--repo URL` before the command is taken
/// as the command's (restic's `-r`).
#[derive(Debug, Parser)]
#[command(name = "taosbackup", version, about, subcommand_negates_reqs = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command (none: `backup`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `backup` flags, when no command is given.
    #[command(
        flatten,
        next_help_heading = "Backup options (when no command is given)"
    )]
    pub backup: BackupArgs,
}

impl Cli {
    /// Parses the command line: clap, then the rules clap cannot state. Flags of the
    /// command-less `backup` before a command are refused (they would be silently ignored),
    /// except `--repo`, which the command takes when it has none of its own.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        Cli::try_parse()?.checked()
    }

    /// [`Cli::parse_args`] on given arguments (tests).
    #[cfg(test)]
    pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args)?.checked()
    }

    fn checked(mut self) -> Result<Cli, clap::Error> {
        let Some(command) = &mut self.command else {
            return Ok(self);
        };
        let b = &self.backup;
        let stray = [
            ("--source", b.select.source.is_some()),
            ("--database", b.select.database.is_some()),
            ("--engine", b.select.engine.is_some()),
            ("--full", b.select.full),
            ("--parallel", b.parallel.is_some()),
            ("--no-encryption", b.no_encryption),
            ("--json", b.json),
            ("--force", b.force),
        ];
        if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
            use clap::CommandFactory;
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{flag} before the command belongs to `backup`: put it after the command \
                     (`taosbackup <COMMAND> {flag} …`)"
                ),
            ));
        }
        if let Some(url) = self.backup.select.repo.repo.take() {
            if let Some(repo) = command.repo_mut() {
                if repo.repo.is_none() {
                    repo.repo = Some(url);
                }
            }
        }
        Ok(self)
    }
}

/// Options of every command (before or after the command).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file: TOML, or JSON with the original plugin's keys (by the `.json` extension).
    /// Flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the repository password from the first line of this file (else from the
    /// TAOSBACKUP_PASSWORD environment variable; never from the command line).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Write logs to this file instead of standard error.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        hide_possible_values = true
    )]
    pub log_format: Option<LogFormat>,
    /// Debug logging and full error details (also: TAOS_BITMAP_DEBUG=1).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Do not use the local cache of snapshot objects ($XDG_CACHE_HOME/taosbackup, else
    /// ~/.cache/taosbackup; safe to delete).
    #[arg(long, global = true)]
    pub no_cache: bool,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository.
    Init(InitArgs),
    /// Back up a database (full or incremental, by engine); creates the repository if needed.
    Backup(BackupArgs),
    /// Show what a backup would do now, writing nothing.
    Plan(PlanArgs),
    /// List the backups of a repository.
    List(ListArgs),
    /// Show one backup: its tables and blocks.
    Show(ShowArgs),
    /// Restore a backup point into a database.
    Restore(RestoreArgs),
    /// Check the repository's integrity (exit code 3 when problems are found).
    Verify(VerifyArgs),
    /// Forget backups by retention rules (per database) and delete the data no kept backup
    /// uses.
    Prune(PruneArgs),
    /// Forget chosen backups (any of them) and delete the data no other backup uses.
    Forget(ForgetArgs),
    /// Pin backups: retention never forgets them.
    Pin(PinArgs),
    /// Unpin backups.
    Unpin(PinArgs),
    /// Convert a format-1 repository (one manifest per backup) into format 3 (snapshot
    /// trees), re-using every data pack, or switch a format-2 one to format 3 (binary
    /// shards).
    Migrate(MigrateArgs),
    /// Manage the repository's passwords (key files).
    Key(KeyArgs),
    /// Run scheduled backups, the change feed and the HTTP status server.
    Daemon(DaemonArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// The change-feed topics taosbackup owns on a TDengine server: list or drop them.
    Feed(FeedArgs),
}

/// `feed`.
#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: FeedAction,
}

/// `feed list|drop`.
#[derive(Debug, Clone, Subcommand)]
pub enum FeedAction {
    /// List the taosbackup_* topics, their consumer groups, WAL lag and repository.
    List(FeedListArgs),
    /// Drop change-feed topics (a repository that still uses one takes a full backup next).
    Drop(FeedDropArgs),
}

/// `feed list`.
#[derive(Debug, Clone, Default, Args)]
pub struct FeedListArgs {
    /// TDengine DSN (see `backup`).
    #[arg(long, value_name = "DSN")]
    pub source: Option<String>,
    #[command(flatten)]
    pub repo: RepoArg,
    /// Do not read the WAL's end (which subscribes to each idle group for a moment).
    #[arg(long)]
    pub no_lag: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `feed drop`.
#[derive(Debug, Clone, Default, Args)]
pub struct FeedDropArgs {
    /// TDengine DSN (see `backup`).
    #[arg(long, value_name = "DSN")]
    pub source: Option<String>,
    /// The topics (as `feed list` shows them).
    #[arg(value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,
}

/// `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

impl Command {
    /// The command's `--repo`, if it has one.
    pub fn repo_mut(&mut self) -> Option<&mut RepoArg> {
        Some(match self {
            Command::Init(a) => &mut a.repo,
            Command::Backup(a) => &mut a.select.repo,
            Command::Plan(a) => &mut a.select.repo,
            Command::List(a) => &mut a.repo,
            Command::Show(a) => &mut a.repo,
            Command::Restore(a) => &mut a.repo,
            Command::Verify(a) => &mut a.repo,
            Command::Prune(a) => &mut a.repo,
            Command::Feed(f) => match &mut f.action {
                FeedAction::List(a) => &mut a.repo,
                FeedAction::Drop(_) => return None,
            },
            Command::Key(k) => match &mut k.action {
                KeyAction::Add(a) | KeyAction::Passwd(a) => &mut a.repo,
                KeyAction::Remove(a) => &mut a.repo,
                KeyAction::List(a) => &mut a.repo,
            },
            _ => return None,
        })
    }
}

/// The repository flag, shared by the commands.
#[derive(Debug, Clone, Default, Args)]
pub struct RepoArg {
    /// Repository URL: a path, file:///path, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix.
    #[arg(long, visible_alias = "output", value_name = "URL")]
    pub repo: Option<String>,
}

/// `--no-lock` of the reading commands.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct NoLockArg {
    /// Read without taking a lock (for read-only media and credentials). Without it, a
    /// repository found not writable is read without a lock too, with a warning.
    #[arg(long)]
    pub no_lock: bool,
}

/// `init`.
#[derive(Debug, Clone, Default, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Store blobs unencrypted (checksummed only); no password needed.
    #[arg(long)]
    pub no_encryption: bool,
    /// Width of a block's time bucket, at least 1m: 1h, 30m … [default: 1d].
    #[arg(long, value_name = "DURATION")]
    pub bucket_width: Option<Width>,
    /// zstd compression level, 1..=22 [default: 4].
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,
    /// Create the repository even in a directory that holds other files.
    #[arg(long)]
    pub force: bool,
}

/// What to back up and how: the flags `backup` and `plan` share (one definition; each
/// falls back to its config key, see [`crate::context::Context`]).
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// TDengine to back up: host[:port] or taos://host:6030 (native), ws://host:6041 (taosAdapter).
    #[arg(long, value_name = "DSN")]
    pub source: Option<String>,
    /// The database to back up.
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    #[command(flatten)]
    pub repo: RepoArg,
    /// Which blocks to back up: full, time (fast, misses late rows/updates/deletes), bitmap
    /// (exactly the changed blocks) [default: bitmap]. The bitmap engine's change feed is
    /// bitmap_engine.change_feed in the config: tmq (default) or wal (EXPERIMENTAL: reads the
    /// TDengine host's WAL files; format from TDengine 3.3.7, untested on a real server).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<EngineKind>,
    /// Take (or plan) a full backup whatever the engine would do.
    #[arg(long)]
    pub full: bool,
}

/// `backup` (also the flags accepted without a command).
#[derive(Debug, Clone, Default, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Tables exported at once [default: one per core, 4 to 8, or backup.parallel].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Pack uploads to the repository in flight at once (default: one per core, 2 to 8;
    /// each holds one pack, ~16 MiB, in memory).
    #[arg(long, value_name = "N")]
    pub upload_concurrency: Option<usize>,
    /// When the repository is created by this backup: create it unencrypted.
    #[arg(long)]
    pub no_encryption: bool,
    /// When the repository is created by this backup: create it even in a directory that
    /// holds other files.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `plan`.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `list`.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Only this database's backups.
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    #[command(flatten)]
    pub lock: NoLockArg,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `show`.
#[derive(Debug, Clone, Default, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// `latest`, a backup id (or a unique prefix of at least 8 hex digits), or a time.
    #[arg(value_name = "BACKUP")]
    pub backup: String,
    /// The database, when the repository holds several and BACKUP is `latest` or a time.
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    #[command(flatten)]
    pub lock: NoLockArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `restore`.
#[derive(Debug, Clone, Default, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// TDengine to restore into (DSN forms as for `--source`).
    #[arg(long, value_name = "DSN")]
    pub target: Option<String>,
    /// Which source database's backups (needed when the repository holds several).
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    /// Name of the database to create (default: the source database's name).
    #[arg(long, value_name = "NAME")]
    pub target_database: Option<String>,
    /// `latest` (default), a backup id (or unique prefix), or a time (RFC 3339 or
    /// "YYYY-MM-DD HH:MM[:SS]" in UTC): the newest backup at or before it.
    #[arg(long, value_name = "BACKUP")]
    pub backup: Option<String>,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// Only the child tables of these super tables (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "S1,S2")]
    pub stables: Vec<String>,
    /// Write into an existing database instead of refusing.
    #[arg(long)]
    pub into_existing: bool,
    /// Create the target database with KEEP of this many days, so old rows are accepted.
    #[arg(long, value_name = "DAYS")]
    pub keep_override: Option<u32>,
    /// Only report what would be restored.
    #[arg(long)]
    pub dry_run: bool,
    /// Tables written at once, each a write of its consecutive blocks joined up to 1 MiB
    /// [default: one per core, 4 to 8, or restore.parallel].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    #[command(flatten)]
    pub lock: NoLockArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `verify`.
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Also read back PERCENT of the pack data (default 100) and check every blob in it.
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "100")]
    pub read_data: Option<u8>,
    /// Also read every block of this backup's chain (id, prefix, `latest` or a time).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    #[command(flatten)]
    pub lock: NoLockArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `prune`.
#[derive(Debug, Clone, Default, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The keep rules; each falls back to its `[retention]` key.
    #[command(flatten)]
    pub keep: RetentionOptions,
    /// Only report what would be forgotten and freed (exactly what the real run does).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `forget`.
#[derive(Debug, Clone, Default, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The backups (ids, or unique prefixes of at least 8 hex digits).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// Only forget (delete the snapshot objects); leave the data to a later prune.
    #[arg(long)]
    pub no_prune: bool,
    /// Only report what would be forgotten and freed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pin` / `unpin`.
#[derive(Debug, Clone, Default, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The backups (ids, or unique prefixes of at least 8 hex digits).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
}

/// `migrate`.
#[derive(Debug, Clone, Default, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Only report what would be written and deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `key`.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeyAction,
}

/// `key add|remove|passwd|list`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyAction {
    /// Add a password (a new key file for the same master key).
    Add(KeyNewArgs),
    /// Remove a key file by id (not the one in use, not the last one).
    Remove(KeyRemoveArgs),
    /// Change the password in use (adds a new key file, removes the old one).
    Passwd(KeyNewArgs),
    /// List the key files.
    List(KeyListArgs),
}

/// `key add` / `key passwd`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyNewArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The new password's file (else the TAOSBACKUP_NEW_PASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `key remove`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyRemoveArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The key id (see `taosbackup key list`).
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,
}

/// `key list`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyListArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `daemon` (its `--config` is the global one, required here).
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn init_help_names_the_default_compression_level() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("init")
            .expect("init subcommand")
            .render_help()
            .to_string();
        let want = format!("[default: {}]", taosbackup_sink::DEFAULT_COMPRESSION_LEVEL);
        assert!(help.contains(&want), "{help}");
    }

    #[test]
    fn no_command_means_backup_and_output_is_repo() {
        let cli = Cli::parse_from([
            "taosbackup",
            "--engine",
            "bitmap",
            "--config",
            "backup_config.json",
            "--source",
            "localhost:6030",
            "--database",
            "dbname",
            "--output",
            "/backup/incremental/",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            cli.backup.select.repo.repo.as_deref(),
            Some("/backup/incremental/")
        );
        assert_eq!(cli.backup.select.engine, Some(EngineKind::Bitmap));
        assert_eq!(
            cli.global.config.as_deref(),
            Some(std::path::Path::new("backup_config.json"))
        );
    }

    #[test]
    fn config_after_the_command_and_lists() {
        let cli = Cli::parse_from([
            "taosbackup",
            "restore",
            "--repo",
            "r",
            "--tables",
            "t1,t2",
            "--config",
            "c.toml",
        ])
        .unwrap();
        let Some(Command::Restore(r)) = cli.command else {
            panic!("not restore")
        };
        assert_eq!(r.tables, ["t1", "t2"]);
        assert!(cli.global.config.is_some());
    }

    #[test]
    fn read_data_percent_is_optional() {
        let parse = |args: &[&str]| match Cli::parse_from(args).unwrap().command {
            Some(Command::Verify(v)) => v.read_data,
            _ => panic!("not verify"),
        };
        assert_eq!(parse(&["t", "verify", "--read-data"]), Some(100));
        assert_eq!(parse(&["t", "verify", "--read-data", "10"]), Some(10));
        assert_eq!(parse(&["t", "verify"]), None);
    }

    #[test]
    fn backup_flags_conflict_with_a_command() {
        assert!(Cli::parse_from(["t", "--engine", "full", "list"]).is_err());
        assert!(Cli::parse_from(["t", "--source", "h", "restore"]).is_err());
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        for args in [
            &[
                "t",
                "--password-file",
                "pw",
                "--debug",
                "list",
                "--repo",
                "r",
            ][..],
            &[
                "t",
                "list",
                "--password-file",
                "pw",
                "--repo",
                "r",
                "--debug",
            ][..],
            &[
                "t",
                "--password-file",
                "pw",
                "--repo",
                "r",
                "list",
                "--debug",
            ][..],
        ] {
            let cli = Cli::parse_from(args).unwrap();
            assert_eq!(
                cli.global.password_file.as_deref(),
                Some(std::path::Path::new("pw")),
                "{args:?}"
            );
            assert!(cli.global.debug, "{args:?}");
            let Some(Command::List(l)) = cli.command else {
                panic!("not list")
            };
            assert_eq!(l.repo.repo.as_deref(), Some("r"), "{args:?}");
        }
        // The command's own --repo wins over one before it.
        let cli = Cli::parse_from(["t", "--repo", "a", "show", "--repo", "b", "latest"]).unwrap();
        let Some(Command::Show(s)) = cli.command else {
            panic!("not show")
        };
        assert_eq!(s.repo.repo.as_deref(), Some("b"));
    }
}
