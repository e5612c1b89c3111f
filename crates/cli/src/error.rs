//! Exit codes and error presentation: every error is printed once, at the top, in one or
//! two lines — what failed and why, then what to do — with the full chain at `--debug`.

use std::process::ExitCode;

use taosbackup_core::{RepositoryErrorKind, SourceError, SourceErrorKind};
use taosbackup_engine::EngineError;

/// The exit codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok = 0,
    /// 1: the operation failed.
    Failed = 1,
    /// 2: bad usage or config.
    Usage = 2,
    /// 3: verify found problems.
    Problems = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Bad usage or config (exit code 2), with what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl UsageError {
    /// A usage error with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// A failure that already carries its advice (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Advised {
    /// What failed and why.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// Shorthand: a usage error as `anyhow::Error`.
pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    UsageError::new(message, hint).into()
}

/// The hint of an error nothing more specific is known about: every error has a `hint:`
/// line (docs/operations.md, "Troubleshooting").
pub const DEFAULT_HINT: &str =
    "run the command again with --debug to see the whole error chain; if it persists, report it";

/// The exit code and the advice for `err`, from the first error in its chain we know.
pub fn classify(err: &anyhow::Error) -> (Exit, Option<String>) {
    // Causes deep in the chain that say more than the wrappers above them.
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return (
                    Exit::Failed,
                    Some(
                        "the disk is full: free space where the repository (or the tracker \
                         state, bitmap_engine.persistence_path) lives and run again; nothing \
                         partial is listed, and `taosbackup prune` removes what an interrupted \
                         backup left"
                            .into(),
                    ),
                );
            }
        }
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<taosbackup_source::FeedError>() {
            use taosbackup_source::FeedError as F;
            let hint = match e {
                F::WalRetentionDisabled { database, .. } => Some(format!(
                    "run `ALTER DATABASE {database} WAL_RETENTION_PERIOD 86400` on TDengine \
                     (seconds; longer than the time between backups), or back up with \
                     --engine full or time"
                )),
                F::DatabaseNotFound { .. } => {
                    Some("check the database name (SHOW DATABASES)".into())
                }
                F::TopicConflict { .. } => Some(
                    "`taosbackup feed list --source DSN` shows the topics taosbackup owns; \
                     drop the conflicting one with `taosbackup feed drop`"
                        .into(),
                ),
                _ => None,
            };
            if hint.is_some() {
                return (Exit::Failed, hint);
            }
        }
        if let Some(u) = cause.downcast_ref::<UsageError>() {
            return (Exit::Usage, Some(u.hint.clone()));
        }
        if let Some(a) = cause.downcast_ref::<Advised>() {
            return (Exit::Failed, Some(a.hint.clone()));
        }
        if let Some(e) = cause.downcast_ref::<taosbackup_sink::Error>() {
            return sink_advice(e);
        }
        if let Some(e) = cause.downcast_ref::<taosbackup_source::Error>() {
            if let taosbackup_source::Error::InvalidDsn { .. } = e {
                return (Exit::Usage, Some(DSN_HINT.into()));
            }
            if let taosbackup_source::Error::NativeClientMissing { host, .. } = e {
                return (
                    Exit::Failed,
                    Some(format!(
                        "install the TDengine client (libtaos) on this machine, or use \
                         taosAdapter's WebSocket DSN ws://{host}:6041"
                    )),
                );
            }
            if let Some(kind) = source_kind(e) {
                if let Some(hint) = kind_hint(kind) {
                    return (Exit::Failed, Some(hint));
                }
            }
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            match e {
                EngineError::InvalidRequest(_) => {
                    return (
                        Exit::Usage,
                        Some("fix the flags; see `taosbackup <command> --help`".into()),
                    );
                }
                EngineError::Cancelled => {
                    return (
                        Exit::Failed,
                        Some("run the backup again when ready; the repository is unchanged".into()),
                    );
                }
                EngineError::NoBackup { .. } | EngineError::AmbiguousBackupId { .. } => {
                    return (
                        Exit::Failed,
                        Some("list the backups with `taosbackup list --repo URL`".into()),
                    );
                }
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            if let Some(hint) = kind_hint(e.kind()) {
                return (Exit::Failed, Some(hint));
            }
        }
        if let Some(e) = cause.downcast_ref::<taosbackup_core::RepositoryError>() {
            if e.kind() == RepositoryErrorKind::Corrupt {
                return (
                    Exit::Failed,
                    Some("run `taosbackup verify --read-data` to see what is damaged".into()),
                );
            }
        }
    }
    (Exit::Failed, None)
}

const DSN_HINT: &str = "use host[:port] or taos://host:6030 (native), ws://host:6041 or \
                        wss://host (taosAdapter)";

/// The class of a source crate error that an operator can act on: the source crate
/// classifies TDengine's codes itself (`taosbackup_source::Error::kind`, with
/// `RETRYABLE_CODES` from `taoserror.h`); the CLI keeps no code table of its own.
fn source_kind(e: &taosbackup_source::Error) -> Option<SourceErrorKind> {
    use taosbackup_source::Error as E;
    match e {
        E::Timeout { .. } | E::TargetExists { .. } | E::Server { .. } => Some(e.kind()),
        _ => None,
    }
}

fn kind_hint(kind: SourceErrorKind) -> Option<String> {
    Some(match kind {
        SourceErrorKind::Connection => "check that TDengine (taosAdapter for ws:// DSNs, port \
                                        6041) is running and reachable at that address"
            .into(),
        SourceErrorKind::Authentication => "check the TDengine user and password (in the DSN, \
                                            [source] user/password, or TAOS_USER/TAOS_PASSWORD)"
            .into(),
        SourceErrorKind::NotFound => {
            "check the database and table names (SHOW DATABASES; SHOW TABLES)".into()
        }
        SourceErrorKind::AlreadyExists => "restore into a new name with --target-database \
                                           NAME, or merge with --into-existing"
            .into(),
        SourceErrorKind::InvalidInput => DSN_HINT.into(),
        _ => return None,
    })
}

fn sink_advice(e: &taosbackup_sink::Error) -> (Exit, Option<String>) {
    use taosbackup_sink::Error as E;
    let (exit, hint) = match e {
        E::InvalidUrl { .. } => (
            Exit::Usage,
            "use a path, file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix",
        ),
        E::InvalidOptions { .. } | E::InvalidPolicy { .. } => {
            (Exit::Usage, "fix the flag or config value")
        }
        E::NotARepository { .. } => (
            Exit::Failed,
            "check the URL, or create a repository there with `taosbackup init --repo URL`",
        ),
        E::AlreadyInitialized { .. } => (
            Exit::Failed,
            "use the existing repository, or choose another location",
        ),
        E::PasswordRequired | E::PasswordSource { .. } => (
            Exit::Usage,
            "give the password with --password-file FILE or the TAOSBACKUP_PASSWORD \
             environment variable",
        ),
        E::WrongPassword { .. } => (
            Exit::Failed,
            "check --password-file / TAOSBACKUP_PASSWORD; `taosbackup key list` shows the \
             repository's keys",
        ),
        E::Locked { stale: true, .. } => (
            Exit::Failed,
            "the holder looks dead; it is removed automatically once stale, or run the \
             command again after checking no other taosbackup runs",
        ),
        E::Locked { .. } => (
            Exit::Failed,
            "wait for the other taosbackup process to finish, then run the command again",
        ),
        E::Corrupt { .. } | E::MissingBlob { .. } | E::UnsupportedVersion { .. } => (
            Exit::Failed,
            "run `taosbackup verify --read-data` to see what is damaged",
        ),
        E::KeyRefused { .. } => (Exit::Failed, "list the keys with `taosbackup key list`"),
        E::Pinned { .. } => (
            Exit::Failed,
            "`taosbackup unpin ID` first if it really should go",
        ),
        E::Format1Repository { .. } | E::MigrationInterrupted { .. } => (
            Exit::Failed,
            "back up the repository's objects first if you can; migrate writes no data pack",
        ),
        E::MigrateRefused { .. } => (
            Exit::Failed,
            "follow the advice above, then run migrate again",
        ),
        E::PruneRefused { .. } => (
            Exit::Failed,
            "run `taosbackup verify` to find the damaged object",
        ),
        E::DeleteDenied { .. } => (
            Exit::Failed,
            "backups still work on such storage; run prune with credentials that may delete, \
             or let the bucket's lifecycle rules expire old objects (docs/operations.md, \
             immutable storage)",
        ),
        E::Backend { .. } | E::CreateDir { .. } => (
            Exit::Failed,
            "check the storage location, its credentials (AWS_*, GOOGLE_*, AZURE_* \
             variables) and the network; retrying may help",
        ),
        _ => return (Exit::Failed, None),
    };
    (exit, Some(hint.to_string()))
}

/// The error chain as one line, without repeats: library errors often print their source
/// inside their own message, and the trait wrappers (`source error (kind)`, `repository
/// error (kind)`) add nothing an operator needs.
pub fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let mut text = cause.to_string();
        if let Some(src) = cause.source() {
            let s = src.to_string();
            if let Some(head) = text.strip_suffix(&s) {
                text = head.trim_end().trim_end_matches(':').trim_end().to_string();
            }
        }
        let wrapper = (text.starts_with("source error (")
            || text.starts_with("repository error ("))
            && text.ends_with(')');
        if text.is_empty() || wrapper || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        return err.to_string();
    }
    parts.join(": ")
}

/// Prints `err` to standard error and returns its exit code.
pub fn report(err: &anyhow::Error, debug: bool) -> Exit {
    let (exit, hint) = classify(err);
    let text = render(err, exit, hint.as_deref(), debug);
    tracing::debug!(error = %format!("{err:#}"), "command failed");
    crate::progress::suspend(|| eprintln!("{text}"));
    exit
}

/// At most two lines without `--debug`: what failed and why, then what to do (every error
/// has a hint: [`DEFAULT_HINT`] when nothing more specific is known).
fn render(err: &anyhow::Error, exit: Exit, hint: Option<&str>, debug: bool) -> String {
    let hint = Some(hint.unwrap_or(DEFAULT_HINT));
    let mut text = format!("error: {}", message(err));
    let more = if !debug && exit == Exit::Failed {
        "details with --debug"
    } else {
        ""
    };
    match (hint, more.is_empty()) {
        (Some(h), true) => text.push_str(&format!("\n  hint: {h}")),
        (Some(h), false) => text.push_str(&format!("\n  hint: {h} ({more})")),
        (None, false) => text.push_str(&format!("\n  ({more})")),
        (None, true) => {}
    }
    if debug {
        text.push_str(&format!("\n\ndetails:\n{err:?}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_print_once() {
        let inner = taosbackup_source::Error::TargetExists {
            database: "p2".into(),
            endpoint: "ws://h:6041".into(),
        };
        let core = taosbackup_core::SourceError::from(inner);
        let e = anyhow::Error::from(EngineError::Source {
            context: "creating the target database".into(),
            source: core,
        });
        let m = message(&e);
        assert_eq!(m.matches("already exists").count(), 1, "{m}");
        assert!(
            m.starts_with("creating the target database: target database p2"),
            "{m}"
        );
        assert!(!m.contains("source error ("), "{m}");
    }

    #[test]
    fn at_most_two_lines() {
        let e = anyhow::Error::from(taosbackup_sink::Error::WrongPassword { tried: 2 })
            .context("cannot open the repository /r");
        let (exit, hint) = classify(&e);
        let text = render(&e, exit, hint.as_deref(), false);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("error: cannot open the repository /r: wrong password"));
        assert!(text.contains("hint: check --password-file"), "{text}");
        assert!(text.ends_with("(details with --debug)"), "{text}");
        let debug = render(&e, exit, hint.as_deref(), true);
        assert!(debug.contains("details:"), "{debug}");
    }

    #[test]
    fn classes() {
        let e = usage("bad flag", "fix it");
        assert_eq!(classify(&e), (Exit::Usage, Some("fix it".into())));
        let e = anyhow::Error::from(taosbackup_sink::Error::WrongPassword { tried: 1 })
            .context("opening the repository");
        assert_eq!(classify(&e).0, Exit::Failed);
        let e = anyhow::Error::from(taosbackup_sink::Error::PasswordRequired);
        assert_eq!(classify(&e).0, Exit::Usage);
        let e = anyhow::anyhow!("plain");
        assert_eq!(classify(&e), (Exit::Failed, None));
        let text = render(&e, Exit::Failed, None, false);
        assert!(
            text.contains("hint: run the command again with --debug"),
            "{text}"
        );
        let full = anyhow::Error::from(std::io::Error::from_raw_os_error(28)).context("writing");
        assert!(classify(&full).1.unwrap().contains("disk is full"));
        let e = anyhow::Error::from(taosbackup_source::Error::TargetExists {
            database: "d".into(),
            endpoint: "ws://h:6041".into(),
        });
        assert!(classify(&e).1.unwrap().contains("--into-existing"));
    }
}
