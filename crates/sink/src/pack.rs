//! Pack files: many sealed blobs followed by a sealed header.
//!
//! `BLOB_0 || … || BLOB_n-1 || SEALED_HEADER || u32le(len(SEALED_HEADER))`, the header
//! plaintext being n entries of `ID (32) || u32le(stored length) || u32le(raw length)`.

use bytes::Bytes;
use taosbackup_core::{BlobId, to_hex};

use crate::crypto::Crypto;
use crate::error::{Error, Result};

/// Associated data of pack headers.
pub(crate) const HEADER_AAD: &[u8] = b"taosbackup pack header v1";
/// Size of one header entry.
pub(crate) const ENTRY_LEN: usize = 40;

/// A pack's id: BLAKE3 of the pack's bytes.
pub(crate) type PackId = [u8; 32];

/// Object path of a pack.
pub(crate) fn pack_path(id: &PackId) -> String {
    let hex = to_hex(id);
    format!("data/{}/{}", &hex[..2], hex)
}

/// One blob inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackEntry {
    pub(crate) id: BlobId,
    pub(crate) offset: u64,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
}

/// A pack being filled.
#[derive(Default)]
pub(crate) struct PackBuilder {
    pub(crate) buf: Vec<u8>,
    pub(crate) entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
pub(crate) struct FinishedPack {
    pub(crate) id: PackId,
    pub(crate) bytes: Bytes,
    pub(crate) entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends a sealed blob; the caller guarantees `stored.len()` fits a `u32`.
    pub(crate) fn add(&mut self, id: BlobId, stored: &[u8], raw_length: u32) -> PackEntry {
        let entry = PackEntry {
            id,
            offset: self.buf.len() as u64,
            length: stored.len() as u32,
            raw_length,
        };
        self.buf.extend_from_slice(stored);
        self.entries.push(entry);
        entry
    }

    pub(crate) fn finish(self, crypto: &Crypto) -> FinishedPack {
        let mut header = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            header.extend_from_slice(e.id.as_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        let sealed = crypto.seal(HEADER_AAD, &header);
        let mut buf = self.buf;
        buf.extend_from_slice(&sealed);
        buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = *blake3::hash(&buf).as_bytes();
        FinishedPack {
            id,
            bytes: Bytes::from(buf),
            entries: self.entries,
        }
    }
}

/// Parses and checks a whole pack's header: the length field, the header's seal, every
/// entry's bounds, and that the blobs exactly fill the space before the header.
pub(crate) fn read_header(path: &str, pack: &[u8], crypto: &Crypto) -> Result<Vec<PackEntry>> {
    if pack.len() < 4 {
        return Err(Error::corrupt(path, "pack shorter than its length field"));
    }
    let (rest, len_field) = pack.split_at(pack.len() - 4);
    let header_len =
        u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize;
    if header_len > rest.len() || header_len < crypto.overhead() {
        return Err(Error::corrupt(
            path,
            format!("header length {header_len} does not fit the pack"),
        ));
    }
    let (blobs, sealed) = rest.split_at(rest.len() - header_len);
    let header = crypto.open(path, HEADER_AAD, sealed)?;
    if header.len() % ENTRY_LEN != 0 {
        return Err(Error::corrupt(
            path,
            "header length is not a multiple of the entry size",
        ));
    }
    let mut entries = Vec::with_capacity(header.len() / ENTRY_LEN);
    let mut offset: u64 = 0;
    for chunk in header.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&chunk[..32]);
        let length = u32::from_le_bytes([chunk[32], chunk[33], chunk[34], chunk[35]]);
        let raw_length = u32::from_le_bytes([chunk[36], chunk[37], chunk[38], chunk[39]]);
        entries.push(PackEntry {
            id: BlobId::from_bytes(id),
            offset,
            length,
            raw_length,
        });
        offset += u64::from(length);
        if offset > blobs.len() as u64 {
            return Err(Error::corrupt(
                path,
                "header entries run past the blob area",
            ));
        }
    }
    if offset != blobs.len() as u64 {
        return Err(Error::corrupt(
            path,
            "blob area has bytes no header entry covers",
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn pack_round_trip_and_hostile_headers() {
        let crypto = Crypto::from_master(&MasterKey::random());
        let mut b = PackBuilder::default();
        b.add(BlobId::from_bytes([1; 32]), b"aaaa", 9);
        b.add(BlobId::from_bytes([2; 32]), b"bbbbbb", 12);
        let p = b.finish(&crypto);
        let entries = read_header("p", &p.bytes, &crypto).unwrap();
        assert_eq!(entries, p.entries);
        assert_eq!(entries[1].offset, 4);
        // Length field pointing past the start, zero, and every truncation: errors only.
        let mut bad = p.bytes.to_vec();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_header("p", &bad, &crypto).is_err());
        for cut in 0..p.bytes.len() {
            assert!(read_header("p", &p.bytes[cut..], &crypto).is_err() || cut == 0);
            assert!(read_header("p", &p.bytes[..cut], &crypto).is_err());
        }
        // An unencrypted pack whose header claims more bytes than exist.
        let plain = Crypto::None;
        let mut b = PackBuilder::default();
        b.add(BlobId::from_bytes([1; 32]), b"aaaa", 4);
        b.entries[0].length = 1000;
        let p = b.finish(&plain);
        assert!(read_header("p", &p.bytes, &plain).is_err());
    }
}
