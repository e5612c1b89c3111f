//! Index files (`index/<id>`): which pack holds each blob, loaded at open.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use taosbackup_core::{BlobId, from_hex_array, to_hex};

use crate::crypto::{self, Crypto};
use crate::error::{Error, Result};
use crate::pack::{PackEntry, PackId};

/// Index file format version.
pub(crate) const INDEX_VERSION: u32 = 1;
/// Associated data of index files.
pub(crate) const INDEX_AAD: &[u8] = b"taosbackup index v1";
/// The largest decompressed index file accepted.
pub(crate) const MAX_INDEX_SIZE: usize = 512 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexFile {
    pub(crate) version: u32,
    pub(crate) packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexPack {
    pub(crate) id: String,
    pub(crate) size: u64,
    pub(crate) blobs: Vec<IndexBlob>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexBlob {
    pub(crate) id: BlobId,
    pub(crate) offset: u64,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
}

impl IndexPack {
    pub(crate) fn new(id: &PackId, size: u64, entries: &[PackEntry]) -> Self {
        IndexPack {
            id: to_hex(id),
            size,
            blobs: entries
                .iter()
                .map(|e| IndexBlob {
                    id: e.id,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        }
    }
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobLoc {
    pub(crate) pack: PackId,
    pub(crate) offset: u64,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
}

/// What the index knows about a pack.
#[derive(Debug, Clone)]
pub(crate) struct PackInfo {
    pub(crate) size: u64,
    pub(crate) blobs: Vec<PackEntry>,
}

/// The in-memory index: the union of all index files.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) blobs: HashMap<BlobId, BlobLoc>,
    pub(crate) packs: HashMap<PackId, PackInfo>,
    /// Names of the index files (`index/<id>`) loaded.
    pub(crate) files: Vec<String>,
}

impl Index {
    pub(crate) fn add_pack(&mut self, id: PackId, size: u64, entries: Vec<PackEntry>) {
        for e in &entries {
            self.blobs.entry(e.id).or_insert(BlobLoc {
                pack: id,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
        self.packs.insert(
            id,
            PackInfo {
                size,
                blobs: entries,
            },
        );
    }

    /// Adds the packs of a decoded index file, checking every entry lies inside its pack.
    pub(crate) fn add_file(&mut self, path: &str, file: IndexFile) -> Result<()> {
        for p in file.packs {
            let id = parse_pack_id(path, &p.id)?;
            let mut entries = Vec::with_capacity(p.blobs.len());
            for b in p.blobs {
                let end = b.offset.checked_add(u64::from(b.length));
                if end.is_none_or(|end| end > p.size) {
                    return Err(Error::corrupt(
                        path,
                        format!("blob {} lies outside pack {}", b.id, p.id),
                    ));
                }
                if b.raw_length as usize > crypto::MAX_BLOB_SIZE {
                    return Err(Error::corrupt(
                        path,
                        format!("blob {} is larger than allowed", b.id),
                    ));
                }
                entries.push(PackEntry {
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    raw_length: b.raw_length,
                });
            }
            self.add_pack(id, p.size, entries);
        }
        self.files.push(path.to_owned());
        Ok(())
    }
}

pub(crate) fn parse_pack_id(path: &str, text: &str) -> Result<PackId> {
    from_hex_array::<32>(text).ok_or_else(|| Error::corrupt(path, format!("bad pack id {text:?}")))
}

/// Encodes an index file: seal(zstd(JSON)); returns (object path, bytes).
pub(crate) fn encode(file: &IndexFile, crypto: &Crypto, level: i32) -> Result<(String, Vec<u8>)> {
    let json = serde_json::to_vec(file).map_err(|e| Error::corrupt("index", e.to_string()))?;
    let compressed = crypto::compress(&json, level)?;
    let sealed = crypto.seal(INDEX_AAD, &compressed);
    let name = format!("index/{}", blake3::hash(&sealed).to_hex());
    Ok((name, sealed))
}

/// Decodes and checks an index file.
pub(crate) fn decode(path: &str, bytes: &[u8], crypto: &Crypto) -> Result<IndexFile> {
    check_name(path, bytes)?;
    let compressed = crypto.open(path, INDEX_AAD, bytes)?;
    let json = crypto::decompress_bounded(path, &compressed, MAX_INDEX_SIZE)?;
    let file: IndexFile =
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if file.version != INDEX_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.into(),
            found: file.version,
            supported: INDEX_VERSION,
        });
    }
    Ok(file)
}

/// Checks that a content-addressed object's name is the BLAKE3 of its bytes.
pub(crate) fn check_name(path: &str, bytes: &[u8]) -> Result<()> {
    let expected = path.rsplit('/').next().unwrap_or("");
    if blake3::hash(bytes).to_hex().as_str() != expected {
        return Err(Error::corrupt(
            path,
            "content does not match its name (BLAKE3)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(offset: u64, length: u32, raw_length: u32, size: u64) -> IndexFile {
        IndexFile {
            version: INDEX_VERSION,
            packs: vec![IndexPack {
                id: "ab".repeat(32),
                size,
                blobs: vec![IndexBlob {
                    id: BlobId::from_bytes([3; 32]),
                    offset,
                    length,
                    raw_length,
                }],
            }],
        }
    }

    #[test]
    fn hostile_index_entries_are_errors() {
        let mut index = Index::default();
        assert!(index.add_file("i", file(0, 10, 10, 10)).is_ok());
        assert!(
            index.add_file("i", file(1, 10, 10, 10)).is_err(),
            "past the pack end"
        );
        assert!(
            index.add_file("i", file(u64::MAX, 10, 10, 10)).is_err(),
            "offset overflow"
        );
        assert!(
            index.add_file("i", file(0, 10, u32::MAX, 10)).is_err(),
            "raw length too large"
        );
        let mut bad_id = file(0, 1, 1, 1);
        bad_id.packs[0].id = "zz".into();
        assert!(index.add_file("i", bad_id).is_err());
        // Sealed round trip, a wrong version, and a renamed object.
        let crypto = Crypto::None;
        let (name, bytes) = encode(&file(0, 1, 1, 1), &crypto, 3).unwrap();
        assert!(decode(&name, &bytes, &crypto).is_ok());
        assert!(decode("index/00", &bytes, &crypto).is_err());
        let mut v2 = file(0, 1, 1, 1);
        v2.version = 2;
        let (name, bytes) = encode(&v2, &crypto, 3).unwrap();
        assert!(matches!(
            decode(&name, &bytes, &crypto),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
    }
}
