//! The repository config object (`config`), plaintext JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taosbackup_core::BucketWidth;

use crate::error::{Error, Result};

/// The repository format version this build creates: snapshot trees with binary shards
/// (docs/format.md §8.3.1).
pub const REPO_VERSION: u32 = 3;
/// Snapshot trees with JSON shards: read and written by this build (shards stay JSON, so
/// builds that know only version 2 keep reading it) until `migrate` switches it to
/// [`REPO_VERSION`].
pub const FORMAT2_VERSION: u32 = 2;
/// The format of repositories written before snapshot trees (one manifest per backup):
/// opened only by `migrate`.
pub const FORMAT1_VERSION: u32 = 1;
/// Default target size of a pack.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// The zstd level of a new repository. zstd picks its parameters by level *and* input size
/// (`lib/compress/clevels.h`): for an input of at most 128 KiB, which a block is, level 4
/// differs from level 3 mainly in a minimum match of 4 bytes instead of 5, which finds the
/// repeated 4-byte values of INT and FLOAT columns. On the benchmark's blocks that made the
/// repository 6% smaller (with a shared dictionary as without), and interleaved full
/// backups' CPU differed by no more than their spread; a context takes 0.4–1.3 MiB more
/// (docs/performance-history.md, "Compression level 4").
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 4;

/// The zstd level of the snapshot tree's objects (shards, nodes, tree roots, catalog parts:
/// compact JSON, most of it hex blob ids), whatever the repository's level. On shard-like
/// JSON level 1 compressed 1.4–2.4× as fast as level 4 and 7–11% smaller, and level 19
/// came within 0.5% of it at 300× its time; an incremental rewrites every shard one of its
/// changes falls in (docs/performance-history.md, "Tree objects at zstd level 1").
pub const TREE_OBJECT_LEVEL: i32 = 1;

/// How blobs and metadata are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// AES-256-GCM with a master key wrapped in key files.
    Aes256Gcm,
    /// No encryption; objects carry a BLAKE3 checksum instead.
    None,
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Format version ([`REPO_VERSION`] or [`FORMAT2_VERSION`]; [`FORMAT1_VERSION`] for
    /// `migrate` only).
    pub version: u32,
    /// Random repository id (32 hex digits).
    pub id: String,
    /// When the repository was created.
    pub created: DateTime<Utc>,
    /// Bucket width of blocks (seconds).
    pub bucket_width: BucketWidth,
    /// zstd level for data blobs, index files and snapshots (tree objects use
    /// [`TREE_OBJECT_LEVEL`]).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Encryption mode.
    pub encryption: Encryption,
}

/// The largest config object read (a hostile store cannot make us read more).
pub(crate) const MAX_CONFIG_SIZE: u64 = 64 * 1024;

/// The object holding the BLAKE3 hash of the exact `config` bytes, in lower-case hex: it
/// makes a damaged config detectable in unencrypted repositories too (where no key file
/// binds it) and gives encrypted ones a clearer error than "wrong password".
pub(crate) const CONFIG_CHECK: &str = "config.check";

/// The content of [`CONFIG_CHECK`] for `config_bytes`.
pub(crate) fn config_check(config_bytes: &[u8]) -> String {
    blake3::hash(config_bytes).to_hex().to_string()
}

/// Compares `config_bytes` with the [`CONFIG_CHECK`] object's content.
pub(crate) fn check_config(config_bytes: &[u8], check: &[u8]) -> Result<()> {
    if check.len() != 64 {
        return Err(Error::corrupt(
            CONFIG_CHECK,
            format!("{} bytes, not 64 hex digits", check.len()),
        ));
    }
    if check != config_check(config_bytes).as_bytes() {
        return Err(Error::corrupt(
            "config",
            "its BLAKE3 hash differs from the one in config.check: one of the two objects is \
             damaged (restore both from a copy of the repository)",
        ));
    }
    Ok(())
}

impl RepoConfig {
    /// Fails unless `bytes` is a JSON object whose `version` this build reads (3 or 2, or 1
    /// to migrate it).
    pub(crate) fn check_version(bytes: &[u8]) -> Result<()> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", format!("not a config object: {e}")))?;
        if ![REPO_VERSION, FORMAT2_VERSION, FORMAT1_VERSION].contains(&v.version) {
            return Err(Error::UnsupportedVersion {
                path: "config".into(),
                found: v.version,
                supported: REPO_VERSION,
            });
        }
        Ok(())
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        Self::check_version(bytes)?;
        let c: RepoConfig =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt("config", e.to_string()))?;
        if c.id.len() != 32 || !c.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::corrupt(
                "config",
                "id is not 32 lower-case hex digits",
            ));
        }
        if !(1..=22).contains(&c.compression_level) {
            return Err(Error::corrupt("config", "compression_level outside 1..=22"));
        }
        if c.pack_size < 64 * 1024 || c.pack_size > 1024 * 1024 * 1024 {
            return Err(Error::corrupt("config", "pack_size outside 64 KiB..=1 GiB"));
        }
        Ok(c)
    }
}
