//! Opening and creating repositories; key management; snapshots (and format-1 manifests,
//! read to migrate them); pins.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, BucketWidth, MANIFEST_VERSION, MAX_SNAPSHOT_SIZE, Manifest,
    RepositoryErrorKind, SNAPSHOT_VERSION, ShardEncoding, to_hex,
};

use crate::backend::Backend;
use crate::cache::SnapshotCache;
use crate::config::{
    CONFIG_CHECK, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE, Encryption, FORMAT1_VERSION,
    FORMAT2_VERSION, MAX_CONFIG_SIZE, REPO_VERSION, RepoConfig, check_config, config_check,
};
use crate::crypto::{self, Crypto, MasterKey};
use crate::error::{Error, Result};
use crate::index::{self, Index};
use crate::key::{KdfParams, KeyFile, Password};
use crate::lock::{self, LockGuard, LockMode};
use crate::pack::pack_path;

/// The largest key file read.
const MAX_KEY_SIZE: usize = 64 * 1024;
/// The largest decompressed manifest accepted.
pub(crate) const MAX_MANIFEST_SIZE: usize = 1024 * 1024 * 1024;
/// Snapshot objects downloaded at once when listing.
const LIST_CONCURRENCY: usize = 32;

/// Settings chosen when a repository is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Encrypt (default) or store with checksums only.
    pub encryption: bool,
    /// Argon2id parameters of the first key file; calibrate them in production
    /// ([`KdfParams::calibrate`]).
    pub kdf: KdfParams,
    /// Bucket width of blocks.
    pub bucket_width: BucketWidth,
    /// zstd level (1..=22, default [`DEFAULT_COMPRESSION_LEVEL`]).
    pub compression_level: i32,
    /// Target pack size (default 16 MiB).
    pub pack_size: u32,
    /// The format version written into the config: [`REPO_VERSION`]. Tests set
    /// [`crate::FORMAT2_VERSION`] or [`crate::FORMAT1_VERSION`] to build a repository as
    /// older builds did; nothing else should.
    #[doc(hidden)]
    pub format_version: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            encryption: true,
            kdf: KdfParams::default(),
            bucket_width: BucketWidth::DAY,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            pack_size: DEFAULT_PACK_SIZE,
            format_version: REPO_VERSION,
        }
    }
}

/// Settings for opening a repository.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// A lock not refreshed for this long is stale (default 30 minutes).
    pub lock_stale_after: Duration,
    /// Open even if some index files are damaged (for `verify`); reads of blobs only
    /// those files listed then fail as missing. Default false: damage is an error.
    pub allow_damaged_index: bool,
    /// Open a format-1 repository (only `migrate` does). Default false: a format-1
    /// repository is [`Error::Format1Repository`], which says how to migrate it.
    pub allow_format1: bool,
    /// The user's cache directory for this tool (`$XDG_CACHE_HOME/taosbackup`): decrypted
    /// snapshot objects are cached below it per repository id ([`SnapshotCache`]). `None`:
    /// no cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Load the index at open (default true). `false` for a command that reads snapshot
    /// objects only (`list`): the index (one file per backup session, every blob's
    /// location) is then empty — [`Repo::read_blob`] and [`Repo::has_blob`] find nothing —
    /// until [`Repo::session`] loads it, as every session does anyway.
    pub load_index: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lock_stale_after: Duration::from_secs(30 * 60),
            allow_damaged_index: false,
            allow_format1: false,
            cache_dir: None,
            load_index: true,
        }
    }
}

/// A key file as listed by [`Repo::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id (the object name under `keys/`).
    pub id: String,
    /// Whether this handle opened the repository with it.
    pub current: bool,
    /// Host that created it.
    pub hostname: String,
    /// When it was created.
    pub created: chrono::DateTime<Utc>,
}

/// An open repository. Cheap to clone; clones share the index.
#[derive(Clone)]
pub struct Repo {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) config: RepoConfig,
    pub(crate) crypto: Crypto,
    pub(crate) master: Option<MasterKey>,
    key_id: Mutex<Option<String>>,
    /// What key files bind the master key to: repository id and config hash.
    binding: String,
    pub(crate) index: RwLock<Index>,
    pub(crate) options: OpenOptions,
    index_problems: Vec<(String, String)>,
    cache: Option<SnapshotCache>,
    /// zstd dictionaries read or trained through this handle, by blob id (crate::dict).
    pub(crate) dictionaries: Mutex<HashMap<BlobId, Arc<Vec<u8>>>>,
    /// Stretches of packs read recently (see [`ReadAhead`]).
    read_ahead: Mutex<ReadAhead>,
}

/// How far past a blob [`Repo::read_sealed`] reads into its pack: the blobs a backup wrote
/// one after another (a table's blocks, neighbouring tables) are read back one after
/// another by a restore, so one ranged read serves hundreds of blobs of a few KiB instead
/// of one read (one GET on object storage) per blob.
const READ_AHEAD: u64 = 1 << 20;
/// Stretches kept: a restore reads `--parallel` blocks at once from as many places.
const READ_AHEAD_WINDOWS: usize = 8;

/// The last [`READ_AHEAD_WINDOWS`] stretches of packs read, newest last. Packs never change
/// once written (their name is their content's hash), so a stretch cannot go stale, and
/// every blob taken from one is still verified by its reader.
///
/// Readers that miss in one pack take turns (`gates`): a restore reads `--parallel`
/// neighbouring blobs at once, and without them each would read its own stretch of the same
/// bytes (one GET each on object storage) before any could use another's.
#[derive(Debug, Default)]
struct ReadAhead {
    windows: std::collections::VecDeque<(crate::pack::PackId, u64, bytes::Bytes)>,
    gates: HashMap<crate::pack::PackId, Arc<tokio::sync::Mutex<()>>>,
}

impl ReadAhead {
    /// The bytes `range` of `pack`, when a stretch holds all of them.
    fn get(
        &mut self,
        pack: &crate::pack::PackId,
        range: &std::ops::Range<u64>,
    ) -> Option<bytes::Bytes> {
        let i = self.windows.iter().rposition(|(p, start, b)| {
            p == pack && *start <= range.start && range.end <= start + b.len() as u64
        })?;
        let (_, start, b) = &self.windows[i];
        let out = b.slice((range.start - start) as usize..(range.end - start) as usize);
        // The stretch in use moves to the back, away from eviction.
        if let Some(w) = self.windows.remove(i) {
            self.windows.push_back(w);
        }
        Some(out)
    }

    /// The gate of `pack`'s misses, shared by the readers waiting on it.
    fn gate(&mut self, pack: crate::pack::PackId) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.gates.entry(pack).or_default())
    }

    /// Forgets `pack`'s gate once no other reader holds or awaits it (this one's clone and
    /// the map's are the last).
    fn release(&mut self, pack: &crate::pack::PackId, gate: &Arc<tokio::sync::Mutex<()>>) {
        if Arc::strong_count(gate) <= 2 {
            self.gates.remove(pack);
        }
    }

    fn put(&mut self, pack: crate::pack::PackId, start: u64, bytes: bytes::Bytes) {
        if self.windows.len() >= READ_AHEAD_WINDOWS {
            self.windows.pop_front();
        }
        self.windows.push_back((pack, start, bytes));
    }
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.inner.backend.location())
            .field("id", &self.inner.config.id)
            .finish()
    }
}

pub(crate) fn manifest_path(id: &BackupId) -> String {
    format!("manifests/{}", id.to_hex())
}

pub(crate) fn snapshot_path(id: &BackupId) -> String {
    format!("snapshots/{}", id.to_hex())
}

pub(crate) fn pin_path(id: &BackupId) -> String {
    format!("pins/{}", id.to_hex())
}

fn snapshot_aad(id: &BackupId) -> Vec<u8> {
    let mut aad = b"taosbackup snapshot v2 ".to_vec();
    aad.extend_from_slice(id.to_hex().as_bytes());
    aad
}

/// The backup id an object name under `dir/` holds.
fn id_of(path: &str, what: &str) -> Result<BackupId> {
    let name = path.rsplit('/').next().unwrap_or("");
    name.parse()
        .map_err(|_| Error::corrupt(path, format!("{what} name is not a backup id")))
}

fn manifest_aad(id: &BackupId) -> Vec<u8> {
    let mut aad = b"taosbackup manifest v1 ".to_vec();
    aad.extend_from_slice(id.to_hex().as_bytes());
    aad
}

impl Repo {
    /// Creates a repository. `password` is required when `options.encryption` is set
    /// and must be `None` otherwise. Writes the first key file, then `config` last.
    pub async fn init(
        backend: Backend,
        options: InitOptions,
        password: Option<&Password>,
    ) -> Result<Repo> {
        if backend.exists("config").await? {
            return Err(Error::AlreadyInitialized {
                location: backend.location().into(),
            });
        }
        if !(1..=22).contains(&options.compression_level) {
            return Err(Error::InvalidOptions {
                reason: "compression level must be within 1..=22",
            });
        }
        if ![REPO_VERSION, FORMAT2_VERSION, FORMAT1_VERSION].contains(&options.format_version) {
            return Err(Error::InvalidOptions {
                reason: "unknown format version",
            });
        }
        let config = RepoConfig {
            version: options.format_version,
            id: to_hex(&rand::random::<[u8; 16]>()),
            created: Utc::now(),
            bucket_width: options.bucket_width,
            compression_level: options.compression_level,
            pack_size: options.pack_size.clamp(64 * 1024, 1024 * 1024 * 1024),
            encryption: if options.encryption {
                Encryption::Aes256Gcm
            } else {
                Encryption::None
            },
        };
        let body = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::corrupt("config", e.to_string()))?;
        let binding = key_binding(&config.id, &body);
        let (master, key_id) = match (options.encryption, password) {
            (true, Some(pw)) => {
                let master = MasterKey::random();
                let id = write_key(&backend, &master, pw, &options.kdf, &binding).await?;
                (Some(master), Some(id))
            }
            (true, None) => return Err(Error::PasswordRequired),
            (false, Some(_)) => {
                return Err(Error::PasswordSource {
                    source_name: "init".into(),
                    reason: "a password was given for an unencrypted repository".into(),
                });
            }
            (false, None) => (None, None),
        };
        backend
            .put(CONFIG_CHECK, config_check(&body).into_bytes().into())
            .await?;
        backend.put("config", body.into()).await?;
        let crypto = master.as_ref().map_or(Crypto::None, Crypto::from_master);
        Ok(Repo {
            inner: Arc::new(Inner {
                backend,
                config,
                crypto,
                master,
                key_id: Mutex::new(key_id),
                binding,
                index: RwLock::new(Index::default()),
                options: OpenOptions {
                    allow_format1: options.format_version == FORMAT1_VERSION,
                    ..OpenOptions::default()
                },
                index_problems: Vec::new(),
                cache: None,
                dictionaries: Mutex::default(),
                read_ahead: Mutex::default(),
            }),
        })
    }

    /// Opens a repository with default [`OpenOptions`].
    pub async fn open(backend: Backend, password: Option<&Password>) -> Result<Repo> {
        Self::open_with(backend, password, OpenOptions::default()).await
    }

    /// Opens a repository: reads `config` (checking its version), unlocks the master key
    /// with `password` (writing nothing, whatever the outcome), and loads the index.
    pub async fn open_with(
        backend: Backend,
        password: Option<&Password>,
        options: OpenOptions,
    ) -> Result<Repo> {
        let config_bytes = match backend.get("config").await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: backend.location().into(),
                });
            }
            Err(e) => return Err(e),
        };
        if config_bytes.len() as u64 > MAX_CONFIG_SIZE {
            return Err(Error::corrupt("config", "config object too large"));
        }
        let checked = match backend.get(CONFIG_CHECK).await {
            Ok(check) => check_config(&config_bytes, &check),
            Err(Error::NotFound { .. }) => Err(Error::corrupt(
                CONFIG_CHECK,
                "missing, so the config cannot be checked (the object was deleted, or \
                 the repository was created before 2026-11-24, when config.check was added)",
            )),
            Err(e) => return Err(e),
        };
        if let Err(damage) = checked {
            // A newer format may keep its config differently: name the version it has
            // rather than report damage.
            RepoConfig::check_version(&config_bytes)?;
            if backend.exists(crate::migrate::STAGE).await? {
                return Err(Error::MigrationInterrupted {
                    location: backend.location().into(),
                });
            }
            return Err(damage);
        }
        let config = RepoConfig::parse(&config_bytes)?;
        if config.version == FORMAT1_VERSION && !options.allow_format1 {
            return Err(Error::Format1Repository {
                location: backend.location().into(),
            });
        }
        let binding = key_binding(&config.id, &config_bytes);
        let keys = backend.list("keys").await?;
        let (master, key_id) = match config.encryption {
            Encryption::None => {
                if !keys.is_empty() {
                    return Err(Error::corrupt(
                        "config",
                        "says unencrypted, but key files exist (possible tampering)",
                    ));
                }
                (None, None)
            }
            Encryption::Aes256Gcm => {
                let pw = password.ok_or(Error::PasswordRequired)?;
                let mut found = None;
                for (path, _) in &keys {
                    let kf = read_key(&backend, path).await?;
                    // Argon2id keeps a core busy for ~0.2 s: on the blocking pool, so the
                    // runtime's workers stay free meanwhile (a backup opens its source's
                    // connections while the key is derived).
                    let (p, pw, b) = (path.clone(), pw.clone(), binding.clone());
                    let unwrapped = tokio::task::spawn_blocking(move || kf.unwrap(&p, &pw, &b))
                        .await
                        .map_err(|e| match e.try_into_panic() {
                            Ok(panic) => std::panic::resume_unwind(panic),
                            // Only when the runtime shuts down before the derivation ran.
                            Err(_) => Error::KeyRefused {
                                key_id: key_name(path),
                                reason: "its derivation was cut off by the process shutting down",
                            },
                        })??;
                    if let Some(master) = unwrapped {
                        found = Some((master, key_name(path)));
                        break;
                    }
                }
                match found {
                    Some((m, id)) => (Some(m), Some(id)),
                    None => return Err(Error::WrongPassword { tried: keys.len() }),
                }
            }
        };
        let crypto = master.as_ref().map_or(Crypto::None, Crypto::from_master);
        let (index, problems) = if options.load_index {
            load_index(&backend, &crypto).await?
        } else {
            (Index::default(), Vec::new())
        };
        if !options.allow_damaged_index {
            if let Some((path, reason)) = problems.first() {
                return Err(Error::corrupt(path.clone(), reason.clone()));
            }
        }
        let cache = options
            .cache_dir
            .as_deref()
            .map(|d| SnapshotCache::new(d, &config.id));
        Ok(Repo {
            inner: Arc::new(Inner {
                backend,
                config,
                crypto,
                master,
                key_id: Mutex::new(key_id),
                binding,
                index: RwLock::new(index),
                options,
                index_problems: problems,
                cache,
                dictionaries: Mutex::default(),
                read_ahead: Mutex::default(),
            }),
        })
    }

    /// Reloads the index from storage (fails on damaged index files unless opened with
    /// `allow_damaged_index`).
    pub(crate) async fn reload_index(&self) -> Result<()> {
        let (index, problems) = load_index(&self.inner.backend, &self.inner.crypto).await?;
        if !self.inner.options.allow_damaged_index {
            if let Some((path, reason)) = problems.first() {
                return Err(Error::corrupt(path.clone(), reason.clone()));
            }
        }
        if let Ok(mut idx) = self.inner.index.write() {
            *idx = index;
        }
        Ok(())
    }

    /// The repository's config.
    pub fn config(&self) -> &RepoConfig {
        &self.inner.config
    }

    /// How new shard objects are written: binary from format 3 on, JSON in a format-2
    /// repository, which builds that know only format 2 must still read.
    pub fn shard_encoding(&self) -> ShardEncoding {
        if self.inner.config.version >= REPO_VERSION {
            ShardEncoding::Binary
        } else {
            ShardEncoding::Json
        }
    }

    /// Where the repository is.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Index files that failed to load at open (only with `allow_damaged_index`).
    pub fn index_problems(&self) -> &[(String, String)] {
        &self.inner.index_problems
    }

    /// The blob id `data` would get in this repository.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        self.inner.crypto.blob_id(data)
    }

    /// Whether the index lists blob `id`.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.inner
            .index
            .read()
            .map(|i| i.blobs.contains_key(id))
            .unwrap_or(false)
    }

    /// Takes a lock (see [`LockMode`]); [`Error::Locked`] names the holder on conflict.
    pub async fn lock(&self, mode: LockMode, command: &str) -> Result<LockGuard> {
        self.lock_scoped(mode, command, None).await
    }

    /// Takes a lock with a scope: a shared lock then also conflicts with every other live
    /// shared lock of the same scope (two backups of one database). [`Error::Locked`]
    /// names the holder on conflict.
    pub async fn lock_scoped(
        &self,
        mode: LockMode,
        command: &str,
        scope: Option<&str>,
    ) -> Result<LockGuard> {
        lock::acquire(
            &self.inner.backend,
            mode,
            command,
            scope,
            self.inner.options.lock_stale_after,
        )
        .await
    }

    /// Deletes locks that are stale; returns their object paths.
    pub async fn remove_stale_locks(&self) -> Result<Vec<String>> {
        lock::remove_stale(&self.inner.backend, self.inner.options.lock_stale_after).await
    }

    /// Lists the key files.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let current = self.current_key();
        let mut out = Vec::new();
        for (path, _) in self.inner.backend.list("keys").await? {
            let kf = read_key(&self.inner.backend, &path).await?;
            let id = key_name(&path);
            out.push(KeyInfo {
                current: current.as_deref() == Some(id.as_str()),
                id,
                hostname: kf.hostname,
                created: kf.created,
            });
        }
        Ok(out)
    }

    fn current_key(&self) -> Option<String> {
        self.inner.key_id.lock().ok().and_then(|k| k.clone())
    }

    /// The id of the key file this handle was opened with (`None` when unencrypted).
    pub(crate) fn key_in_use(&self) -> Option<String> {
        self.current_key()
    }

    fn master(&self) -> Result<&MasterKey> {
        self.inner.master.as_ref().ok_or(Error::KeyRefused {
            key_id: String::new(),
            reason: "the repository is not encrypted",
        })
    }

    /// Adds a key file for `password`; returns its id.
    pub async fn add_key(&self, password: &Password, kdf: KdfParams) -> Result<String> {
        let master = self.master()?;
        write_key(
            &self.inner.backend,
            master,
            password,
            &kdf,
            &self.inner.binding,
        )
        .await
    }

    /// Removes key file `key_id`. Refuses to remove the key this handle was opened with
    /// (use [`Repo::change_password`]) or the last key.
    pub async fn remove_key(&self, key_id: &str) -> Result<()> {
        if self.current_key().as_deref() == Some(key_id) {
            return Err(Error::KeyRefused {
                key_id: key_id.into(),
                reason: "it is the key in use; change the password instead",
            });
        }
        let keys = self.inner.backend.list("keys").await?;
        let path = format!("keys/{key_id}");
        if !keys.iter().any(|(p, _)| *p == path) {
            return Err(Error::KeyRefused {
                key_id: key_id.into(),
                reason: "no such key",
            });
        }
        if keys.len() <= 1 {
            return Err(Error::KeyRefused {
                key_id: key_id.into(),
                reason: "it is the last key",
            });
        }
        self.inner.backend.delete(&path).await
    }

    /// Replaces the key in use by one for `new_password`: writes the new key file, then
    /// deletes the old one. Returns the new key id.
    pub async fn change_password(&self, new_password: &Password, kdf: KdfParams) -> Result<String> {
        let new_id = self.add_key(new_password, kdf).await?;
        let old = self.current_key();
        if let Ok(mut k) = self.inner.key_id.lock() {
            *k = Some(new_id.clone());
        }
        if let Some(old) = old {
            self.inner.backend.delete(&format!("keys/{old}")).await?;
        }
        Ok(new_id)
    }

    /// Ids of all committed backups (the names under `snapshots/`).
    pub async fn list_backups(&self) -> Result<Vec<BackupId>> {
        let mut out = Vec::new();
        for (path, _) in self.inner.backend.list("snapshots").await? {
            out.push(id_of(&path, "snapshot")?);
        }
        Ok(out)
    }

    /// Every committed backup's snapshot (from the cache where it holds one; the listing of
    /// `snapshots/` decides which exist). Fails on the first snapshot object that cannot be
    /// read: what deletes (forget, prune) must know every backup.
    pub async fn snapshots(&self) -> Result<Vec<BackupSnapshot>> {
        let (out, damaged) = self.snapshots_lenient().await?;
        match damaged.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(out),
        }
    }

    /// [`Repo::snapshots`], with the snapshot objects that fail their integrity check
    /// (kind corrupt) returned apart, by backup id, instead of failing the listing. Any
    /// other failure (the backend) still fails. Snapshots not in the cache (see
    /// [`SnapshotCache`]: the repository's listing decides what exists; the cache only
    /// saves downloads) are downloaded concurrently; a warm cache is one file read.
    pub async fn snapshots_lenient(&self) -> Result<(Vec<BackupSnapshot>, Vec<(BackupId, Error)>)> {
        let ids = self.list_backups().await?;
        let cache = self.inner.cache.as_ref();
        let mut cached = cache.map(SnapshotCache::load).unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in &ids {
            match cached.remove(id) {
                Some(s) => out.push(s),
                None => missing.push(*id),
            }
        }
        // Entries left are of backups the repository no longer lists: rewrite without them.
        let mut changed = !cached.is_empty();
        let mut damaged = Vec::new();
        if !missing.is_empty() {
            changed = true;
            let loaded: Vec<(BackupId, Result<BackupSnapshot>)> =
                futures::stream::iter(missing.into_iter().map(|id| async move {
                    match cache.and_then(|c| c.get(&id)) {
                        Some(s) => (id, Ok(s)),
                        None => (id, self.load_snapshot(&id).await),
                    }
                }))
                .buffer_unordered(LIST_CONCURRENCY)
                .collect()
                .await;
            for (id, r) in loaded {
                match r {
                    Ok(s) => out.push(s),
                    Err(e) if e.kind() == RepositoryErrorKind::Corrupt => damaged.push((id, e)),
                    Err(e) => return Err(e),
                }
            }
        }
        if let (Some(c), true) = (cache, changed) {
            c.store_all(&out);
        }
        Ok((out, damaged))
    }

    /// Loads, authenticates and validates the snapshot of backup `id` from the repository
    /// (never from the cache).
    pub async fn load_snapshot(&self, id: &BackupId) -> Result<BackupSnapshot> {
        let path = snapshot_path(id);
        let bytes = match self.inner.backend.get(&path).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Err(Error::NoSuchBackup { backup_id: *id }),
            Err(e) => return Err(e),
        };
        let compressed = self.inner.crypto.open(&path, &snapshot_aad(id), &bytes)?;
        let json = crypto::decompress_bounded(&path, &compressed, MAX_SNAPSHOT_SIZE)?;
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(path.clone(), e.to_string()))?;
        if v.version != SNAPSHOT_VERSION {
            return Err(Error::UnsupportedVersion {
                path,
                found: v.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let s: BackupSnapshot = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(path.clone(), e.to_string()))?;
        if s.id != *id {
            return Err(Error::corrupt(
                path,
                format!("snapshot names backup {}", s.id),
            ));
        }
        s.validate()
            .map_err(|e| Error::corrupt(snapshot_path(id), e.to_string()))?;
        Ok(s)
    }

    pub(crate) fn encode_snapshot(&self, s: &BackupSnapshot) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(s)
            .map_err(|e| Error::corrupt(snapshot_path(&s.id), e.to_string()))?;
        let compressed = crypto::compress(&json, self.inner.config.compression_level)?;
        Ok(self.inner.crypto.seal(&snapshot_aad(&s.id), &compressed))
    }

    /// Puts a snapshot object the caller has checked (its tree objects are indexed).
    pub(crate) async fn put_snapshot(&self, s: &BackupSnapshot) -> Result<()> {
        let body = self.encode_snapshot(s)?;
        self.inner
            .backend
            .put(&snapshot_path(&s.id), body.into())
            .await?;
        if let Some(c) = &self.inner.cache {
            c.put(s);
        }
        Ok(())
    }

    /// The pinned backups (`pins/<id>`): retention never forgets them.
    pub async fn pins(&self) -> Result<HashSet<BackupId>> {
        let mut out = HashSet::new();
        for (path, _) in self.inner.backend.list("pins").await? {
            out.insert(id_of(&path, "pin")?);
        }
        Ok(out)
    }

    /// Pins backup `id` (idempotent); fails with [`Error::NoSuchBackup`] if it does not exist.
    pub async fn pin(&self, id: &BackupId) -> Result<()> {
        self.load_snapshot(id).await?;
        let body = serde_json::json!({ "version": 1, "created": Utc::now() });
        let bytes = serde_json::to_vec_pretty(&body)
            .map_err(|e| Error::corrupt(pin_path(id), e.to_string()))?;
        self.inner.backend.put(&pin_path(id), bytes.into()).await
    }

    /// Unpins backup `id` (idempotent).
    pub async fn unpin(&self, id: &BackupId) -> Result<()> {
        self.inner.backend.delete(&pin_path(id)).await
    }

    /// Ids of the format-1 manifests (`manifests/`), read by `migrate`.
    pub async fn list_manifests(&self) -> Result<Vec<BackupId>> {
        let mut out = Vec::new();
        for (path, _) in self.inner.backend.list("manifests").await? {
            out.push(id_of(&path, "manifest")?);
        }
        Ok(out)
    }

    /// Loads, authenticates and validates the format-1 manifest of backup `id`.
    pub async fn load_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let path = manifest_path(id);
        let bytes = match self.inner.backend.get(&path).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Err(Error::NoSuchBackup { backup_id: *id }),
            Err(e) => return Err(e),
        };
        let compressed = self.inner.crypto.open(&path, &manifest_aad(id), &bytes)?;
        let json = crypto::decompress_bounded(&path, &compressed, MAX_MANIFEST_SIZE)?;
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(path.clone(), e.to_string()))?;
        if v.version != MANIFEST_VERSION {
            return Err(Error::UnsupportedVersion {
                path,
                found: v.version,
                supported: MANIFEST_VERSION,
            });
        }
        let m: Manifest = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(path.clone(), e.to_string()))?;
        if m.id != *id {
            return Err(Error::corrupt(
                path,
                format!("manifest names backup {}", m.id),
            ));
        }
        m.validate()
            .map_err(|e| Error::corrupt(manifest_path(id), e.to_string()))?;
        Ok(m)
    }

    /// Encodes a format-1 manifest (tests build format-1 repositories with it).
    #[doc(hidden)]
    pub fn encode_manifest(&self, m: &Manifest) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(m)
            .map_err(|e| Error::corrupt(manifest_path(&m.id), e.to_string()))?;
        let compressed = crypto::compress(&json, self.inner.config.compression_level)?;
        Ok(self.inner.crypto.seal(&manifest_aad(&m.id), &compressed))
    }

    /// Writes a format-1 manifest (tests build format-1 repositories with it).
    #[doc(hidden)]
    pub async fn put_manifest(&self, m: &Manifest) -> Result<()> {
        let body = self.encode_manifest(m)?;
        self.inner
            .backend
            .put(&manifest_path(&m.id), body.into())
            .await
    }

    /// Reads blob `id` through the index (committed blobs only).
    pub async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let (path, stored, raw_length) = self.read_sealed(id, false).await?;
        self.decode_stored(&path, id, &stored, raw_length).await
    }

    /// [`Repo::read_blob`], reading up to 1 MiB of the pack past the blob and keeping it
    /// for the next reads through this handle (see `READ_AHEAD`): for a restore, which reads
    /// blobs in about the order they were written. The bytes are verified the same way;
    /// `verify` never reads through it.
    pub async fn read_blob_ahead(&self, id: &BlobId) -> Result<Vec<u8>> {
        let (path, stored, raw_length) = self.read_sealed(id, true).await?;
        self.decode_stored(&path, id, &stored, raw_length).await
    }

    /// The sealed bytes of committed blob `id` as its pack holds them, with the pack's path
    /// and the blob's raw length from the index.
    /// With `ahead`, through the read-ahead (see [`Repo::read_blob_ahead`]).
    pub(crate) async fn read_sealed(
        &self,
        id: &BlobId,
        ahead: bool,
    ) -> Result<(String, bytes::Bytes, u32)> {
        let (loc, pack_size) = self
            .inner
            .index
            .read()
            .ok()
            .and_then(|i| {
                let loc = i.blobs.get(id).copied()?;
                Some((loc, i.packs.get(&loc.pack).map(|p| p.size)))
            })
            .ok_or(Error::MissingBlob {
                blob: *id,
                backup_id: None,
            })?;
        let path = pack_path(&loc.pack);
        let range = loc.offset..loc.offset + u64::from(loc.length);
        if ahead {
            if let Some(stored) = self.read_ahead(&path, &loc, pack_size).await {
                return Ok((path, stored, loc.raw_length));
            }
        }
        let stored = self.inner.backend.get_range(&path, range).await?;
        Ok((path, stored, loc.raw_length))
    }

    /// Blob `loc`'s stored bytes from the read-ahead, or from a fresh read of up to
    /// READ_AHEAD bytes of its pack (as the index sizes it) that the read-ahead then keeps.
    /// `None` when the blob is the pack's last bytes or that read fails or comes back short
    /// (a pack shorter than the index says): the blob's own range then decides, with its
    /// own error.
    async fn read_ahead(
        &self,
        path: &str,
        loc: &index::BlobLoc,
        pack_size: Option<u64>,
    ) -> Option<bytes::Bytes> {
        let range = loc.offset..loc.offset + u64::from(loc.length);
        let cached = || {
            self.inner
                .read_ahead
                .lock()
                .ok()
                .and_then(|mut r| r.get(&loc.pack, &range))
        };
        if let Some(stored) = cached() {
            return Some(stored);
        }
        let end = pack_size?.min(range.start + READ_AHEAD);
        if end <= range.end {
            return None;
        }
        let gate = self.inner.read_ahead.lock().ok()?.gate(loc.pack);
        let turn = gate.lock().await;
        // The reader before us in this pack may have read the stretch holding our blob.
        let stored = match cached() {
            Some(stored) => Some(stored),
            None => self
                .inner
                .backend
                .get_range(path, range.start..end)
                .await
                .ok()
                .filter(|w| w.len() as u64 == end - range.start)
                .map(|window| {
                    let stored = window.slice(..loc.length as usize);
                    if let Ok(mut r) = self.inner.read_ahead.lock() {
                        r.put(loc.pack, range.start, window);
                    }
                    stored
                }),
        };
        drop(turn);
        if let Ok(mut r) = self.inner.read_ahead.lock() {
            r.release(&loc.pack, &gate);
        }
        stored
    }
}

/// Opens a sealed blob compressed without a dictionary, decompresses it, and checks it
/// hashes to `id` (blobs that may name a dictionary: [`Repo::decode_stored`]).
pub(crate) fn decode_blob(
    crypto: &Crypto,
    pack: &str,
    id: &BlobId,
    stored: &[u8],
    raw_length: u32,
) -> Result<Vec<u8>> {
    let where_ = format!("{pack} (blob {id})");
    let compressed = crypto.open(&where_, id.as_bytes(), stored)?;
    let data = crypto::decompress(&where_, &compressed, raw_length as usize)?;
    if crypto.blob_id(&data) != *id {
        return Err(Error::corrupt(
            where_,
            "content does not hash to the blob id",
        ));
    }
    Ok(data)
}

/// Key files bind the master key to the repository id and to the exact config bytes, so a
/// modified config (for example a downgrade to `"encryption": "none"` or another bucket
/// width) makes every key file fail to open.
pub(crate) fn key_binding(repo_id: &str, config_bytes: &[u8]) -> String {
    format!("{repo_id} {}", blake3::hash(config_bytes).to_hex())
}

fn key_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or("").to_owned()
}

pub(crate) async fn read_key(backend: &Backend, path: &str) -> Result<KeyFile> {
    let bytes = backend.get(path).await?;
    if bytes.len() > MAX_KEY_SIZE {
        return Err(Error::corrupt(path, "key file too large"));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path, e.to_string()))
}

async fn write_key(
    backend: &Backend,
    master: &MasterKey,
    pw: &Password,
    kdf: &KdfParams,
    repo_id: &str,
) -> Result<String> {
    let kf = KeyFile::create(master, pw, kdf, repo_id)?;
    let body = serde_json::to_vec_pretty(&kf).map_err(|e| Error::corrupt("keys", e.to_string()))?;
    let id = blake3::hash(&body).to_hex().to_string();
    backend
        .put_private(&format!("keys/{id}"), body.into())
        .await?;
    Ok(id)
}

/// Loads every index file; returns the index and the files that failed with why.
pub(crate) async fn load_index(
    backend: &Backend,
    crypto: &Crypto,
) -> Result<(Index, Vec<(String, String)>)> {
    let mut index = Index::default();
    let mut problems = Vec::new();
    for (path, _) in backend.list("index").await? {
        let bytes = backend.get(&path).await?;
        match index::decode(&path, &bytes, crypto).and_then(|f| index.add_file(&path, f)) {
            Ok(()) => {}
            Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
                problems.push((path.clone(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    Ok((index, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::snap;

    fn sorted(mut v: Vec<BackupSnapshot>) -> Vec<BackupId> {
        v.sort_by_key(|s| s.id);
        v.into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn read_ahead_serves_only_ranges_it_holds_and_keeps_the_newest_windows() {
        let mut r = ReadAhead::default();
        let bytes = bytes::Bytes::from((0..=255u8).collect::<Vec<u8>>());
        r.put([1; 32], 1000, bytes);
        assert_eq!(r.get(&[1; 32], &(1000..1004)).unwrap()[..], [0, 1, 2, 3]);
        assert_eq!(
            r.get(&[1; 32], &(1250..1256)).unwrap()[..],
            [250, 251, 252, 253, 254, 255]
        );
        assert!(
            r.get(&[1; 32], &(1250..1257)).is_none(),
            "past the window's end"
        );
        assert!(r.get(&[1; 32], &(999..1001)).is_none(), "before its start");
        assert!(r.get(&[2; 32], &(1000..1001)).is_none(), "another pack");
        // Used windows move back; the least recently used one goes first.
        for p in 2..=READ_AHEAD_WINDOWS as u8 {
            r.put([p; 32], 0, bytes::Bytes::from_static(b"x"));
        }
        assert!(r.get(&[1; 32], &(1000..1001)).is_some());
        r.put([99; 32], 0, bytes::Bytes::from_static(b"y"));
        assert!(r.get(&[2; 32], &(0..1)).is_none(), "evicted");
        assert!(r.get(&[1; 32], &(1000..1001)).is_some(), "kept: used last");
        assert_eq!(r.windows.len(), READ_AHEAD_WINDOWS);
    }

    #[test]
    fn a_pack_gate_lives_while_readers_hold_it() {
        let mut r = ReadAhead::default();
        let first = r.gate([1; 32]);
        let second = r.gate([1; 32]);
        assert!(Arc::ptr_eq(&first, &second), "one gate per pack");
        r.release(&[1; 32], &first);
        assert!(
            r.gates.contains_key(&[1; 32]),
            "the second reader still waits"
        );
        drop(first);
        r.release(&[1; 32], &second);
        assert!(r.gates.is_empty());
    }

    /// A warm listing is the repository's listing and one cache file; the listing, not
    /// the cache, decides what exists.
    #[tokio::test]
    async fn listing_through_the_cache() {
        let cache_dir = tempfile::tempdir().unwrap();
        let backend = Backend::memory();
        let options = InitOptions {
            encryption: false,
            ..InitOptions::default()
        };
        let id = Repo::init(backend.clone(), options, None)
            .await
            .unwrap()
            .config()
            .id
            .clone();
        let open = |cache: bool| {
            let backend = backend.clone();
            let cache_dir = cache.then(|| cache_dir.path().to_path_buf());
            async move {
                let options = OpenOptions {
                    cache_dir,
                    ..OpenOptions::default()
                };
                Repo::open_with(backend, None, options).await.unwrap()
            }
        };
        let repo = open(true).await;
        for n in 1..=3 {
            repo.put_snapshot(&snap(n)).await.unwrap();
        }
        let cache = SnapshotCache::new(cache_dir.path(), &id);
        // A commit stores its snapshot on its own; a listing folds them into the file.
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 3);
        let ids: Vec<BackupId> = (1..=3).map(|n| snap(n).id).collect();
        assert_eq!(sorted(repo.snapshots().await.unwrap()), ids);
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 0);
        assert_eq!(cache.load().len(), 3);
        // Warm: the listing is the only storage operation.
        let before = backend.stats().operations;
        assert_eq!(sorted(repo.snapshots().await.unwrap()), ids);
        assert_eq!(backend.stats().operations - before, 1);
        // Deleted behind the cache's back: not listed, and dropped from the cache.
        backend.delete(&snapshot_path(&ids[1])).await.unwrap();
        let left = vec![ids[0], ids[2]];
        assert_eq!(sorted(repo.snapshots().await.unwrap()), left);
        assert_eq!(cache.load().len(), 2);
        // Another process committed one: downloaded once, then cached.
        open(false).await.put_snapshot(&snap(4)).await.unwrap();
        let before = backend.stats().operations;
        let all = vec![ids[0], ids[2], snap(4).id];
        assert_eq!(sorted(repo.snapshots().await.unwrap()), all);
        assert_eq!(backend.stats().operations - before, 2);
        assert_eq!(cache.load().len(), 3);
        // Without a cache, the same.
        assert_eq!(sorted(open(false).await.snapshots().await.unwrap()), all);
    }
}
