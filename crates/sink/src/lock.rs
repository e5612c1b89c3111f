//! Repository locks (`locks/<id>`): shared for backup/restore/verify, exclusive for
//! forget/prune. A shared lock may carry a scope (a backup's database): two shared locks
//! with the same scope conflict, so two backups of one database never run at once.
//! Plaintext JSON so a blocked operator can see who holds them without a key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taosbackup_core::to_hex;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Lock format version.
pub(crate) const LOCK_VERSION: u32 = 1;
/// The largest lock object read.
const MAX_LOCK_SIZE: usize = 64 * 1024;

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once (backup, restore, verify).
    Shared,
    /// One holder and no shared holders (forget, prune, key changes).
    Exclusive,
}

/// The JSON of a lock object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockFile {
    pub(crate) version: u32,
    pub(crate) exclusive: bool,
    pub(crate) hostname: String,
    pub(crate) pid: u32,
    pub(crate) command: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) refreshed: DateTime<Utc>,
    /// What the holder has to itself among shared holders (a backup's database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

impl LockFile {
    fn describe(&self) -> String {
        format!(
            "{} lock of `{}`{} (pid {} on host {}, taken {}, refreshed {})",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.command,
            self.scope
                .as_deref()
                .map(|s| format!(" for {s}"))
                .unwrap_or_default(),
            self.pid,
            self.hostname,
            self.created.to_rfc3339(),
            self.refreshed.to_rfc3339()
        )
    }

    /// Stale: not refreshed within `stale_after`, or held by a process of this host that
    /// no longer exists.
    pub(crate) fn is_stale(&self, stale_after: Duration) -> bool {
        let age = Utc::now().signed_duration_since(self.refreshed);
        if age.to_std().is_ok_and(|age| age > stale_after) {
            return true;
        }
        self.hostname == hostname() && !process_alive(self.pid)
    }
}

fn process_alive(pid: u32) -> bool {
    let proc_root = std::path::Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true; // cannot tell without procfs: assume alive
    }
    proc_root.join(pid.to_string()).exists()
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A held lock. Refreshed in the background every `stale_after / 3`; call
/// [`LockGuard::release`] when done (a guard dropped without release stops refreshing and
/// its lock object stays until it goes stale).
#[derive(Debug)]
pub struct LockGuard {
    backend: Backend,
    path: String,
    mode: LockMode,
    refresher: tokio::task::JoinHandle<()>,
    failure: Arc<Mutex<Option<String>>>,
}

impl LockGuard {
    /// The lock object path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The mode held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Fails if the background refresh failed (others may then treat the lock as stale).
    pub fn check(&self) -> Result<()> {
        let failure = self.failure.lock().map_err(|_| Error::LockLost {
            path: self.path.clone(),
            reason: "refresh task panicked".into(),
        })?;
        match failure.as_ref() {
            Some(reason) => Err(Error::LockLost {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Stops refreshing and deletes the lock object; reports a refresh failure, if any.
    /// Where the storage refuses deletes (credentials without delete permission, an
    /// immutable bucket), the lock is rewritten as refreshed at the Unix epoch instead:
    /// stale at once for everyone, so it blocks nobody.
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        let status = self.check();
        match self.backend.delete(&self.path).await {
            Err(e) if e.is_permission_denied() => {
                if let Some(mut lock) = read_lock(&self.backend, &self.path).await? {
                    lock.refreshed = DateTime::<Utc>::UNIX_EPOCH;
                    let body = serde_json::to_vec(&lock)
                        .map_err(|e| Error::corrupt(&self.path, e.to_string()))?;
                    self.backend.put(&self.path, body.into()).await?;
                }
            }
            other => other?,
        }
        status
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

async fn read_lock(backend: &Backend, path: &str) -> Result<Option<LockFile>> {
    let bytes = match backend.get(path).await {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => return Ok(None), // released meanwhile
        Err(e) => return Err(e),
    };
    if bytes.len() > MAX_LOCK_SIZE {
        return Err(Error::corrupt(path, "lock object too large"));
    }
    let lock: LockFile =
        serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if lock.version != LOCK_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.into(),
            found: lock.version,
            supported: LOCK_VERSION,
        });
    }
    Ok(Some(lock))
}

/// Lists the locks of the repository: (path, lock).
pub(crate) async fn list_locks(backend: &Backend) -> Result<Vec<(String, LockFile)>> {
    let mut out = Vec::new();
    for (path, _) in backend.list("locks").await? {
        if let Some(lock) = read_lock(backend, &path).await? {
            out.push((path, lock));
        }
    }
    Ok(out)
}

/// Whether a lock of `mode` and `scope` may not coexist with `other`: either is exclusive,
/// or both have the same scope.
fn conflict(mode: LockMode, scope: Option<&str>, other: &LockFile) -> bool {
    mode == LockMode::Exclusive
        || other.exclusive
        || scope.is_some_and(|s| other.scope.as_deref() == Some(s))
}

/// Takes a lock: fails with [`Error::Locked`] naming the holder if a conflicting, fresh
/// lock exists, either before ours is written or right after (then ours is removed; two
/// racing takers may then both fail, never both succeed).
pub(crate) async fn acquire(
    backend: &Backend,
    mode: LockMode,
    command: &str,
    scope: Option<&str>,
    stale_after: Duration,
) -> Result<LockGuard> {
    let check = |locks: &[(String, LockFile)], own: Option<&str>| -> Result<()> {
        for (path, lock) in locks {
            if Some(path.as_str()) == own
                || !conflict(mode, scope, lock)
                || lock.is_stale(stale_after)
            {
                continue;
            }
            return Err(Error::Locked {
                holder: lock.describe(),
                path: path.clone(),
                stale: false,
            });
        }
        Ok(())
    };
    check(&list_locks(backend).await?, None)?;
    let now = Utc::now();
    let lock = LockFile {
        version: LOCK_VERSION,
        exclusive: mode == LockMode::Exclusive,
        hostname: hostname(),
        pid: std::process::id(),
        command: command.to_owned(),
        created: now,
        refreshed: now,
        scope: scope.map(str::to_owned),
    };
    let path = format!("locks/{}", to_hex(&rand::random::<[u8; 16]>()));
    let body = serde_json::to_vec(&lock).map_err(|e| Error::corrupt(&path, e.to_string()))?;
    backend.put(&path, body.into()).await?;
    let after = match list_locks(backend).await {
        Ok(l) => l,
        Err(e) => {
            backend.delete(&path).await?;
            return Err(e);
        }
    };
    if let Err(e) = check(&after, Some(&path)) {
        backend.delete(&path).await?;
        return Err(e);
    }
    let failure = Arc::new(Mutex::new(None));
    let refresher = tokio::spawn(refresh_loop(
        backend.clone(),
        path.clone(),
        lock,
        stale_after / 3,
        failure.clone(),
    ));
    Ok(LockGuard {
        backend: backend.clone(),
        path,
        mode,
        refresher,
        failure,
    })
}

async fn refresh_loop(
    backend: Backend,
    path: String,
    mut lock: LockFile,
    every: Duration,
    failure: Arc<Mutex<Option<String>>>,
) {
    let every = every.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        lock.refreshed = Utc::now();
        let result = match serde_json::to_vec(&lock) {
            Ok(body) => backend
                .put(&path, body.into())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = result {
            if let Ok(mut slot) = failure.lock() {
                *slot = Some(reason);
            }
            return;
        }
    }
}

/// Removes stale locks; returns their paths.
pub(crate) async fn remove_stale(backend: &Backend, stale_after: Duration) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (path, lock) in list_locks(backend).await? {
        if lock.is_stale(stale_after) {
            backend.delete(&path).await?;
            removed.push(path);
        }
    }
    Ok(removed)
}
