//! The repository config object (`config`), plaintext JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taosbackup_core::BucketWidth;

use crate::error::{Error, Result};

/// The repository format version this build writes and reads.
pub const REPO_VERSION: u32 = 1;
/// Default target size of a pack.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

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
    /// Format version ([`REPO_VERSION`]).
    pub version: u32,
    /// Random repository id (32 hex digits).
    pub id: String,
    /// When the repository was created.
    pub created: DateTime<Utc>,
    /// Bucket width of blocks (seconds).
    pub bucket_width: BucketWidth,
    /// zstd level for blobs and metadata.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Encryption mode.
    pub encryption: Encryption,
}

/// The largest config object read (a hostile store cannot make us read more).
pub(crate) const MAX_CONFIG_SIZE: u64 = 64 * 1024;

impl RepoConfig {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", format!("not a config object: {e}")))?;
        if v.version != REPO_VERSION {
            return Err(Error::UnsupportedVersion {
                path: "config".into(),
                found: v.version,
                supported: REPO_VERSION,
            });
        }
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
