//! The taosbackup repository: where backups live.
//!
//! # Brief overview
//!
//! * [`Backend`] — an `object_store` store chosen by URL ([`Scheme`]): a path or
//!   `file://`, `s3://`, `gs://`, `az://`, `memory://`.
//! * [`Repo`] — an open repository: [`Repo::init`], [`Repo::open`], key management
//!   ([`Repo::add_key`], [`Repo::remove_key`], [`Repo::change_password`]),
//!   [`Repo::snapshots`] (through a [`SnapshotCache`]), [`Repo::verify`], [`Repo::forget`]
//!   and [`Repo::prune`] (with a [`RetentionPolicy`] or chosen ids: [`Forget`]),
//!   [`Repo::pin`], [`Repo::migrate`] from format 1.
//! * [`Session`] — a shared-locked handle from [`Repo::session`] that implements
//!   [`taosbackup_core::Repository`]: blobs (data and tree objects) go into packs, and a
//!   commit writes packs, then an index file, then the snapshot object.
//! * [`Password`] (from a file or `TAOSBACKUP_PASSWORD`) and [`KdfParams`] (Argon2id).
//! * [`Error`] — the one error type, with [`Error::is_retryable`].
//!
//! The on-storage format is specified in `docs/format.md`.
//!
//! # Example
//!
//! ```
//! use taosbackup_core::Repository;
//! use taosbackup_sink::{Backend, InitOptions, KdfParams, Password, Repo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let password = Password::new("correct horse")?;
//! let options = InitOptions { kdf: KdfParams::insecure_for_tests(), ..InitOptions::default() };
//! let repo = Repo::init(Backend::memory(), options, Some(&password)).await?;
//! let session = repo.session("backup").await?;
//! let id = session.store_blob(b"block bytes").await?;
//! assert_eq!(session.read_blob(&id).await?, b"block bytes");
//! session.finish().await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
// One `unsafe`: `crypto::train_dictionary` calls zstd's fixed-parameter dictionary trainer,
// which no safe binding wraps (docs/architecture.md).
#![deny(unsafe_code)]

mod backend;
mod cache;
mod config;
mod crypto;
mod dict;
mod error;
mod index;
mod key;
mod lock;
mod migrate;
mod pack;
mod prune;
mod repo;
mod session;
mod verify;
mod walk;

pub use crate::{
    backend::{Backend, Scheme, StorageRetry, StorageStats, default_upload_concurrency},
    cache::SnapshotCache,
    config::{
        DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE, Encryption, FORMAT1_VERSION, FORMAT2_VERSION,
        REPO_VERSION, RepoConfig,
    },
    crypto::MAX_BLOB_SIZE,
    error::{Error, Result},
    key::{KdfParams, PASSWORD_ENV, Password},
    lock::{LockGuard, LockMode},
    migrate::MigrateReport,
    prune::{
        BackupSummary, Forget, ForgetReport, PruneReport, RetentionPlan, RetentionPolicy, pinned_of,
    },
    repo::{InitOptions, KeyInfo, OpenOptions, Repo},
    session::Session,
    verify::{Problem, VerifyOptions, VerifyReport},
};
