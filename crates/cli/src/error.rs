//! Exit codes and error presentation: every error is printed once, at the top, in one or
//! two lines — what failed and why, then what to do — with the full chain at `--debug`.

use std::process::ExitCode;

use taosbackup_core::{RepositoryError, RepositoryErrorKind, SourceError, SourceErrorKind};
use taosbackup_engine::{EngineError, TrackerError};

/// The exit codes of the contract (docs/operations.md, "Exit codes").
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
    /// 4: a bug in taosbackup (a worker panicked, an internal queue closed).
    Internal = 4,
}

impl Exit {
    /// Every exit code, for the test that keeps docs/operations.md true.
    #[cfg(test)]
    const ALL: [Exit; 5] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Problems,
        Exit::Internal,
    ];
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

/// The exit code and the advice for `err`.
pub fn classify(err: &anyhow::Error) -> (Exit, Option<String>) {
    (exit_code(err), hint(err))
}

/// The exit code of `err`: the first error in its chain that has a kind decides. This is the
/// one place where error kinds become exit codes (docs/operations.md, "Exit codes"): the
/// operator's options unusable → 2, a bug → 4, every other failure → 1.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    use taosbackup_engine::ErrorKind as Engine;
    let source = |k: SourceErrorKind| match k {
        SourceErrorKind::Config => Exit::Usage,
        _ => Exit::Failed,
    };
    let repository = |k: RepositoryErrorKind| match k {
        RepositoryErrorKind::Config => Exit::Usage,
        _ => Exit::Failed,
    };
    for cause in err.chain() {
        let exit = if cause.is::<UsageError>() {
            Exit::Usage
        } else if cause.is::<Advised>() {
            Exit::Failed
        } else if let Some(e) = cause.downcast_ref::<EngineError>() {
            match e.kind() {
                Engine::Source(k) => source(k),
                Engine::Repository(k) => repository(k),
                Engine::InvalidRequest => Exit::Usage,
                Engine::Internal => Exit::Internal,
                _ => Exit::Failed,
            }
        } else if let Some(e) = cause.downcast_ref::<taosbackup_sink::Error>() {
            repository(e.kind())
        } else if let Some(e) = cause.downcast_ref::<RepositoryError>() {
            repository(e.kind())
        } else if let Some(e) = cause.downcast_ref::<taosbackup_source::Error>() {
            source(e.kind())
        } else if let Some(e) = cause.downcast_ref::<taosbackup_source::FeedError>() {
            source(e.kind())
        } else if let Some(e) = cause.downcast_ref::<taosbackup_source::WalError>() {
            source(e.kind())
        } else if let Some(e) = cause.downcast_ref::<SourceError>() {
            source(e.kind())
        } else if cause.is::<tokio::task::JoinError>() {
            // A task of ours panicked or was cancelled under us.
            Exit::Internal
        } else if cause.is::<taosbackup_core::Error>() || cause.is::<TrackerError>() {
            Exit::Failed
        } else {
            continue;
        };
        return exit;
    }
    Exit::Failed
}

/// What to do about `err`, from the first error in its chain we know (or a cause deep in the
/// chain that says more than the wrappers above it, such as a full disk).
fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return Some(
                    "the disk is full: free space where the repository (or the tracker \
                     state, bitmap_engine.persistence_path) lives and run again; nothing \
                     partial is listed, and `taosbackup prune` removes what an interrupted \
                     backup left"
                        .into(),
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
                return hint;
            }
        }
        if let Some(u) = cause.downcast_ref::<UsageError>() {
            return Some(u.hint.clone());
        }
        if let Some(a) = cause.downcast_ref::<Advised>() {
            return Some(a.hint.clone());
        }
        if let Some(e) = cause.downcast_ref::<taosbackup_sink::Error>() {
            return sink_hint(e).map(str::to_string);
        }
        if let Some(e) = cause.downcast_ref::<taosbackup_source::Error>() {
            if let taosbackup_source::Error::NativeClientMissing { host, .. } = e {
                return Some(format!(
                    "install the TDengine client (libtaos) on this machine, or use \
                     taosAdapter's WebSocket DSN ws://{host}:6041"
                ));
            }
            if let Some(hint) = kind_hint(e.kind()) {
                return Some(hint);
            }
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            let hint = match e {
                EngineError::InvalidRequest(_) => {
                    "fix the flags; see `taosbackup <command> --help`"
                }
                EngineError::Internal(_) => {
                    "this is a bug; please report it with the output of the command run again \
                     with --debug"
                }
                EngineError::Cancelled => {
                    "run the backup again when ready; the repository is unchanged"
                }
                EngineError::NoBackup { .. } | EngineError::AmbiguousBackupId { .. } => {
                    "list the backups with `taosbackup list --repo URL`"
                }
                _ => continue,
            };
            return Some(hint.into());
        }
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            if let Some(hint) = kind_hint(e.kind()) {
                return Some(hint);
            }
        }
        if let Some(e) = cause.downcast_ref::<RepositoryError>() {
            if e.kind() == RepositoryErrorKind::Corrupt {
                return Some("run `taosbackup verify --read-data` to see what is damaged".into());
            }
        }
    }
    None
}

const DSN_HINT: &str = "use host[:port] or taos://host:6030 (native), ws://host:6041 or \
                        wss://host (taosAdapter)";

/// What to do about a source failure of `kind` (the source crate classifies TDengine's codes
/// itself, `taosbackup_source::Error::kind` with `RETRYABLE_CODES`; the CLI keeps no code
/// table of its own).
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
        SourceErrorKind::Config => DSN_HINT.into(),
        _ => return None,
    })
}

fn sink_hint(e: &taosbackup_sink::Error) -> Option<&'static str> {
    use taosbackup_sink::Error as E;
    Some(match e {
        E::InvalidUrl { .. } => {
            "use a path, file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix"
        }
        E::InvalidOptions { .. } | E::InvalidPolicy { .. } => "fix the flag or config value",
        E::NotARepository { .. } => {
            "check the URL, or create a repository there with `taosbackup init --repo URL`"
        }
        E::AlreadyInitialized { .. } => "use the existing repository, or choose another location",
        E::PasswordRequired | E::PasswordSource { .. } => {
            "give the password with --password-file FILE or the TAOSBACKUP_PASSWORD \
             environment variable"
        }
        E::WrongPassword { .. } => {
            "check --password-file / TAOSBACKUP_PASSWORD; `taosbackup key list` shows the \
             repository's keys"
        }
        E::Locked { stale: true, .. } => {
            "the holder looks dead; it is removed automatically once stale, or run the \
             command again after checking no other taosbackup runs"
        }
        E::Locked { .. } => {
            "wait for the other taosbackup process to finish, then run the command again"
        }
        E::Corrupt { .. } | E::MissingBlob { .. } | E::UnsupportedVersion { .. } => {
            "run `taosbackup verify --read-data` to see what is damaged"
        }
        E::KeyRefused { .. } => "list the keys with `taosbackup key list`",
        E::Pinned { .. } => "`taosbackup unpin ID` first if it really should go",
        E::Format1Repository { .. } | E::MigrationInterrupted { .. } => {
            "back up the repository's objects first if you can; migrate writes no data pack"
        }
        E::MigrateRefused { .. } => "follow the advice above, then run migrate again",
        E::PruneRefused { .. } => "run `taosbackup verify` to find the damaged object",
        E::DeleteDenied { .. } => {
            "backups still work on such storage; run prune with credentials that may delete, \
             or let the bucket's lifecycle rules expire old objects (docs/operations.md, \
             immutable storage)"
        }
        E::Backend { .. } | E::CreateDir { .. } => {
            "check the storage location, its credentials (AWS_*, GOOGLE_*, AZURE_* \
             variables) and the network; retrying may help"
        }
        _ => return None,
    })
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
    let more = if !debug && matches!(exit, Exit::Failed | Exit::Internal) {
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

    /// One error of each kind, as a library raises it, with the exit code docs/operations.md
    /// gives its class.
    fn kinds() -> Vec<(String, anyhow::Error, Exit)> {
        use taosbackup_engine::ErrorKind as Engine;
        let src = |k| SourceError::new(k, false, "x");
        let repo = |k| RepositoryError::new(k, false, "x");
        let mut all: Vec<(String, anyhow::Error, Exit)> = Vec::new();
        for (k, exit) in [
            (SourceErrorKind::Connection, Exit::Failed),
            (SourceErrorKind::Authentication, Exit::Failed),
            (SourceErrorKind::NotFound, Exit::Failed),
            (SourceErrorKind::AlreadyExists, Exit::Failed),
            (SourceErrorKind::Rejected, Exit::Failed),
            (SourceErrorKind::InvalidInput, Exit::Failed),
            (SourceErrorKind::Config, Exit::Usage),
            (SourceErrorKind::Other, Exit::Failed),
        ] {
            all.push((format!("source {k}"), src(k).into(), exit));
            let engine = EngineError::Source {
                context: "c".into(),
                source: src(k),
            };
            assert_eq!(engine.kind(), Engine::Source(k));
            all.push((format!("engine source {k}"), engine.into(), exit));
        }
        for (k, exit) in [
            (RepositoryErrorKind::NotFound, Exit::Failed),
            (RepositoryErrorKind::Corrupt, Exit::Failed),
            (RepositoryErrorKind::Locked, Exit::Failed),
            (RepositoryErrorKind::AlreadyExists, Exit::Failed),
            (RepositoryErrorKind::InvalidInput, Exit::Failed),
            (RepositoryErrorKind::Config, Exit::Usage),
            (RepositoryErrorKind::Backend, Exit::Failed),
            (RepositoryErrorKind::Other, Exit::Failed),
        ] {
            all.push((format!("repository {k}"), repo(k).into(), exit));
            let engine = EngineError::Repository {
                context: "c".into(),
                source: repo(k),
            };
            assert_eq!(engine.kind(), Engine::Repository(k));
            all.push((format!("engine repository {k}"), engine.into(), exit));
        }
        let engine = [
            (
                EngineError::Tracker(TrackerError::Corrupt {
                    path: "s".into(),
                    reason: "r".into(),
                }),
                Engine::Tracker,
                Exit::Failed,
            ),
            (
                EngineError::DamagedSnapshot {
                    backup: "b".into(),
                    reason: "r".into(),
                },
                Engine::Damaged,
                Exit::Failed,
            ),
            (
                EngineError::NoBackup {
                    what: "w".into(),
                    hint: "h".into(),
                },
                Engine::NoBackup,
                Exit::Failed,
            ),
            (
                EngineError::Gap { reason: "r".into() },
                Engine::Gap,
                Exit::Failed,
            ),
            (EngineError::Cancelled, Engine::Cancelled, Exit::Failed),
            (
                EngineError::InvalidRequest("r".into()),
                Engine::InvalidRequest,
                Exit::Usage,
            ),
            (
                EngineError::Internal("a worker panicked".into()),
                Engine::Internal,
                Exit::Internal,
            ),
        ];
        for (e, k, exit) in engine {
            assert_eq!(e.kind(), k);
            all.push((format!("engine {k:?}"), e.into(), exit));
        }
        // The libraries' own enums classify themselves the same way.
        all.push((
            "sink password required".into(),
            taosbackup_sink::Error::PasswordRequired.into(),
            Exit::Usage,
        ));
        all.push((
            "source invalid DSN".into(),
            taosbackup_source::Error::InvalidDsn {
                endpoint: "e".into(),
                reason: "r".into(),
            }
            .into(),
            Exit::Usage,
        ));
        all.push((
            "core invalid value".into(),
            taosbackup_core::Error::Overflow {
                value: 1,
                context: "c",
            }
            .into(),
            Exit::Failed,
        ));
        all
    }

    #[test]
    fn each_kind_maps_to_its_documented_exit_code() {
        let docs = include_str!("../../../docs/operations.md");
        let table = &docs[docs.find("## Exit codes").expect("the exit code table")..];
        let documented: Vec<u8> = table
            .lines()
            .skip_while(|l| !l.starts_with("| code"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').next().unwrap().trim())
            .map(|c| c.parse::<u8>().unwrap_or_else(|_| panic!("code {c:?}")))
            .collect();
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| *e as u8).collect();
        assert_eq!(documented, codes, "docs/operations.md's exit code table");
        for (name, err, exit) in kinds() {
            // Wrapped in context, as commands report them.
            let err = err.context("running the command");
            assert_eq!(classify(&err).0, exit, "{name}: {err:#}");
        }
    }

    #[test]
    fn a_worker_panic_is_an_internal_error_not_a_usage_error() {
        let e = anyhow::Error::from(EngineError::Internal(
            "a change-tracking worker failed: task 7 panicked".into(),
        ))
        .context("backup of db");
        let (exit, hint) = classify(&e);
        assert_eq!(exit, Exit::Internal);
        assert_eq!(exit as u8, 4);
        let text = render(&e, exit, hint.as_deref(), false);
        assert!(
            text.contains("internal error: a change-tracking worker"),
            "{text}"
        );
        assert!(text.contains("hint: this is a bug"), "{text}");
        // A panicked task of the CLI's own, kept as the source of its error, too.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let joined = runtime.block_on(async { tokio::spawn(async { panic!("injected") }).await });
        let e = anyhow::Error::new(joined.unwrap_err()).context("a daemon scheduler task failed");
        assert_eq!(classify(&e).0, Exit::Internal);
    }
}
