//! Sealing (AES-256-GCM or checksum), blob ids and compression.

use std::cell::RefCell;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use taosbackup_core::BlobId;

use crate::error::{Error, Result};

/// Length of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the BLAKE3 checksum that seals objects of unencrypted repositories.
pub(crate) const CHECK_LEN: usize = 32;
/// The largest blob plaintext accepted (and the largest raw length believed on read).
pub const MAX_BLOB_SIZE: usize = 256 * 1024 * 1024;

/// The repository master key: 32 bytes for AES-256-GCM and 32 bytes keying BLAKE3 blob ids.
#[derive(Clone)]
pub(crate) struct MasterKey {
    pub(crate) encrypt: [u8; 32],
    pub(crate) id: [u8; 32],
}

impl MasterKey {
    pub(crate) fn random() -> Self {
        MasterKey {
            encrypt: rand::random(),
            id: rand::random(),
        }
    }

    pub(crate) fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.encrypt);
        out[32..].copy_from_slice(&self.id);
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 64 {
            return None;
        }
        let mut encrypt = [0u8; 32];
        let mut id = [0u8; 32];
        encrypt.copy_from_slice(&bytes[..32]);
        id.copy_from_slice(&bytes[32..]);
        Some(MasterKey { encrypt, id })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// How objects are sealed: authenticated encryption, or a plain checksum.
#[derive(Clone)]
pub(crate) enum Crypto {
    /// Unencrypted repository: `PLAINTEXT || BLAKE3(u64le(len(AAD)) || AAD || PLAINTEXT)`.
    None,
    /// Encrypted repository: `NONCE || CIPHERTEXT || TAG`.
    Aes {
        cipher: Box<Aes256Gcm>,
        id_key: [u8; 32],
    },
}

impl Crypto {
    pub(crate) fn from_master(key: &MasterKey) -> Self {
        Crypto::Aes {
            cipher: Box::new(Aes256Gcm::new(&key.encrypt.into())),
            id_key: key.id,
        }
    }

    /// The blob id of `data`: keyed BLAKE3 when encrypted, plain BLAKE3 otherwise.
    pub(crate) fn blob_id(&self, data: &[u8]) -> BlobId {
        let hash = match self {
            Crypto::None => blake3::hash(data),
            Crypto::Aes { id_key, .. } => blake3::keyed_hash(id_key, data),
        };
        BlobId::from_bytes(*hash.as_bytes())
    }

    /// The blob id of `data` compressed with dictionary `dictionary`: the hash of
    /// `dict_frame(dictionary) || data`, so that deduplication only ever meets a blob
    /// compressed with the same dictionary (the one the snapshot's catalog keeps reachable).
    pub(crate) fn blob_id_with_dictionary(&self, data: &[u8], dictionary: &BlobId) -> BlobId {
        let mut h = match self {
            Crypto::None => blake3::Hasher::new(),
            Crypto::Aes { id_key, .. } => blake3::Hasher::new_keyed(id_key),
        };
        h.update(&dict_frame(dictionary));
        h.update(data);
        BlobId::from_bytes(*h.finalize().as_bytes())
    }

    /// Bytes added by sealing.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            Crypto::None => CHECK_LEN,
            Crypto::Aes { .. } => NONCE_LEN + TAG_LEN,
        }
    }

    /// Seals `plaintext` with associated data `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(self, aad, plaintext)
    }

    /// Opens a sealed object; `path` names it in errors.
    pub(crate) fn open(&self, path: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        match self {
            Crypto::None => {
                if sealed.len() < CHECK_LEN {
                    return Err(Error::corrupt(path, "shorter than its checksum"));
                }
                let (body, check) = sealed.split_at(sealed.len() - CHECK_LEN);
                if checksum(aad, body).as_bytes() != check {
                    return Err(Error::corrupt(path, "checksum mismatch"));
                }
                Ok(body.to_vec())
            }
            Crypto::Aes { cipher, .. } => open_aes(cipher, path, aad, sealed),
        }
    }
}

fn checksum(aad: &[u8], body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(&(aad.len() as u64).to_le_bytes());
    h.update(aad);
    h.update(body);
    h.finalize()
}

fn seal_with(crypto: &Crypto, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    match crypto {
        Crypto::None => {
            let mut out = Vec::with_capacity(plaintext.len() + CHECK_LEN);
            out.extend_from_slice(plaintext);
            out.extend_from_slice(checksum(aad, plaintext).as_bytes());
            out
        }
        Crypto::Aes { cipher, .. } => seal_aes(cipher, aad, plaintext),
    }
}

pub(crate) fn seal_aes(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    // Encryption with AES-GCM fails only for messages longer than 64 GiB, which the
    // callers never produce (blobs are capped at MAX_BLOB_SIZE, packs at their target).
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
        .unwrap_or_else(|_| unreachable!("AES-GCM message length limit exceeded"));
    out.extend_from_slice(&tag);
    out
}

pub(crate) fn open_aes(
    cipher: &Aes256Gcm,
    path: &str,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::corrupt(path, "shorter than nonce and tag"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut out = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut out,
            Tag::from_slice(tag),
        )
        .map_err(|_| Error::corrupt(path, "authentication failed (wrong key or damaged data)"))?;
    Ok(out)
}

thread_local! {
    /// Reused across blobs: a fresh context per blob cost more than decompressing a tree
    /// object (an incremental reads one per changed shard).
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// One context per level in use: the repository's and [`crate::config::TREE_OBJECT_LEVEL`].
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
}

/// The most compression contexts a thread keeps (levels in use at once).
const MAX_COMPRESSORS: usize = 4;

/// The context for `key` in a thread's small cache `contexts`, made by `make` when it has
/// none; past `max` contexts the oldest is dropped.
fn cached_context<K: PartialEq, C>(
    contexts: &mut Vec<(K, C)>,
    key: K,
    max: usize,
    make: impl FnOnce() -> Result<C>,
) -> Result<&mut C> {
    let i = match contexts.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let c = make()?;
            if contexts.len() >= max {
                contexts.remove(0);
            }
            contexts.push((key, c));
            contexts.len() - 1
        }
    };
    Ok(&mut contexts[i].1)
}

/// zstd-compresses `data` at `level`, reusing a per-thread context for the level.
pub(crate) fn compress(data: &[u8], level: i32) -> Result<Vec<u8>> {
    COMPRESSORS.with(|cell| {
        let mut contexts = cell.borrow_mut();
        cached_context(&mut contexts, level, MAX_COMPRESSORS, || {
            zstd::bulk::Compressor::new(level).map_err(|source| Error::Compression { source })
        })?
        .compress(data)
        .map_err(|source| Error::Compression { source })
    })
}

/// The magic of the zstd skippable frame that opens a blob compressed with a shared
/// dictionary (docs/format.md §5.3). zstd reserves 0x184D2A50–0x184D2A5F for skippable
/// frames; a blob compressed without a dictionary starts with the zstd frame magic
/// 0xFD2FB528 instead, so the two never meet.
pub(crate) const DICT_FRAME_MAGIC: u32 = 0x184D_2A5D;
/// The skippable frame's length: magic, `u32le(32)`, the dictionary's blob id.
pub(crate) const DICT_FRAME_LEN: usize = 8 + 32;

/// The skippable frame naming dictionary blob `dictionary`.
pub(crate) fn dict_frame(dictionary: &BlobId) -> [u8; DICT_FRAME_LEN] {
    let mut f = [0u8; DICT_FRAME_LEN];
    f[..4].copy_from_slice(&DICT_FRAME_MAGIC.to_le_bytes());
    f[4..8].copy_from_slice(&32u32.to_le_bytes());
    f[8..].copy_from_slice(dictionary.as_bytes());
    f
}

/// The dictionary a compressed blob names and the zstd frame after its skippable frame, or
/// `None` for a blob compressed without a dictionary.
pub(crate) fn dictionary_of(compressed: &[u8]) -> Option<(BlobId, &[u8])> {
    let magic = compressed.get(..4)?;
    if magic != DICT_FRAME_MAGIC.to_le_bytes() || compressed.get(4..8)? != 32u32.to_le_bytes() {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(compressed.get(8..DICT_FRAME_LEN)?);
    Some((BlobId::from_bytes(id), &compressed[DICT_FRAME_LEN..]))
}

/// Contexts with a dictionary loaded, kept per thread (a few: one per super table in use).
const DICT_CONTEXTS: usize = 8;

thread_local! {
    static DICT_COMPRESSORS: RefCell<Vec<((BlobId, i32), zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    static DICT_DECOMPRESSORS: RefCell<Vec<(BlobId, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
}

/// `dict_frame(id) || zstd(data)` compressed at `level` with dictionary `bytes` (blob `id`),
/// reusing a per-thread context that has the dictionary loaded (zstd digests a loaded
/// dictionary once per context, not once per blob).
pub(crate) fn compress_with_dictionary(
    data: &[u8],
    level: i32,
    id: &BlobId,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    DICT_COMPRESSORS.with(|cell| {
        let mut ctxs = cell.borrow_mut();
        let c = cached_context(&mut ctxs, (*id, level), DICT_CONTEXTS, || {
            let mut c = zstd::bulk::Compressor::with_dictionary(level, bytes)
                .map_err(|source| Error::Compression { source })?;
            // A block (~30 KB) is above the size up to which zstd attaches a dictionary's
            // tables by reference; by default it copies them (~768 KiB at level 3) into the
            // context for every frame, which cost more than compressing the block.
            // Attaching compresses 10,000 meters-like 24 KB blocks in 0.64 s instead of
            // 0.89 s (plain zstd-3: 0.47 s), within 0.01% of the same size.
            c.set_parameter(zstd::zstd_safe::CParameter::ForceAttachDict(
                zstd::zstd_safe::DictAttachPref::ForceAttach,
            ))
            .map_err(|source| Error::Compression { source })?;
            Ok(c)
        })?;
        let frame = c
            .compress(data)
            .map_err(|source| Error::Compression { source })?;
        let mut out = Vec::with_capacity(DICT_FRAME_LEN + frame.len());
        out.extend_from_slice(&dict_frame(id));
        out.extend_from_slice(&frame);
        Ok(out)
    })
}

/// Decompresses the zstd frame `payload` of a blob compressed with dictionary `bytes`
/// (blob `id`); the plaintext must be exactly `raw_len` bytes.
pub(crate) fn decompress_with_dictionary(
    path: &str,
    payload: &[u8],
    raw_len: usize,
    id: &BlobId,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    if raw_len > MAX_BLOB_SIZE {
        return Err(Error::corrupt(
            path,
            format!("raw length {raw_len} exceeds the maximum blob size"),
        ));
    }
    let out = DICT_DECOMPRESSORS.with(|cell| {
        let mut ctxs = cell.borrow_mut();
        cached_context(&mut ctxs, *id, DICT_CONTEXTS, || {
            zstd::bulk::Decompressor::with_dictionary(bytes)
                .map_err(|e| Error::corrupt(path, format!("dictionary {id}: {e}")))
        })?
        .decompress(payload, raw_len)
        .map_err(|e| Error::corrupt(path, format!("zstd with dictionary {id}: {e}")))
    })?;
    if out.len() != raw_len {
        return Err(Error::corrupt(
            path,
            format!("decompressed to {} bytes, index says {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// fastCover's segment size `k` for [`train_dictionary`] (its dmer size `d` is 8, zstd's
/// default). zstd's optimising trainer (`ZDICT_trainFromBuffer`, what `zstd::dict` calls)
/// builds a dictionary for each of k = 50, 537, 1024, 1511 and 1998 and keeps the best; on
/// the benchmark's blocks it kept 1511 at every scale, and one fastCover pass with it trains
/// in a quarter of the time to the same size within 0.1% (docs/performance-history.md, "Training
/// dictionaries with one fastCover pass").
const DICT_SEGMENT: u32 = 1511;

/// Trains a zstd dictionary of at most `max_size` bytes from `samples` (their bytes
/// concatenated in `flat`, their lengths in `sizes`) with one fastCover pass, its entropy
/// tables tuned for compression at `level`; `None` when zstd cannot train one from them (too
/// few or too small samples).
pub(crate) fn train_dictionary(
    flat: &[u8],
    sizes: &[usize],
    max_size: usize,
    level: i32,
) -> Option<Vec<u8>> {
    use zstd::zstd_safe::zstd_sys as sys;
    if sizes.iter().sum::<usize>() != flat.len() {
        return None;
    }
    let count = u32::try_from(sizes.len()).ok()?;
    let params = sys::ZDICT_fastCover_params_t {
        k: DICT_SEGMENT,
        d: 8,
        // log2 of the entries of the trainer's d-mer frequency tables: 2^18 instead of zstd's
        // default 2^20 trained ~30% faster on the benchmark's blocks, the repository within
        // 1% either way (docs/performance-history.md, "A smaller frequency table for the trainer").
        f: 18,
        steps: 0,
        nbThreads: 0,
        splitPoint: 1.0,
        accel: 1,
        shrinkDict: 0,
        shrinkDictMaxRegression: 0,
        // The level the statistics in the dictionary's header are computed at: the level
        // its blobs are compressed at (0 would mean zstd's default, 3).
        zParams: sys::ZDICT_params_t {
            compressionLevel: level,
            notificationLevel: 0,
            dictID: 0,
        },
    };
    let mut dict = vec![0u8; max_size];
    #[allow(unsafe_code)]
    // SAFETY: `dict` is writable for `dict.len()` bytes and `flat` readable for its length,
    // which the check above makes the sum of the `count` lengths `sizes` holds; zstd reads
    // and writes only within those and keeps no pointer after returning. `ZDICT_isError`
    // only compares the returned code. (No safe binding exists: the `zstd` crates wrap only
    // the optimising `ZDICT_trainFromBuffer`.)
    let (len, failed) = unsafe {
        let len = sys::ZDICT_trainFromBuffer_fastCover(
            dict.as_mut_ptr().cast(),
            dict.len(),
            flat.as_ptr().cast(),
            sizes.as_ptr(),
            count,
            params,
        );
        (len, sys::ZDICT_isError(len) != 0)
    };
    if failed || len > dict.len() {
        return None;
    }
    dict.truncate(len);
    Some(dict)
}

/// Decompresses a blob whose plaintext must be exactly `raw_len` bytes.
pub(crate) fn decompress(path: &str, data: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    if raw_len > MAX_BLOB_SIZE {
        return Err(Error::corrupt(
            path,
            format!("raw length {raw_len} exceeds the maximum blob size"),
        ));
    }
    let out = DECOMPRESSOR
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            let d = match slot.as_mut() {
                Some(d) => d,
                None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress(data, raw_len)
        })
        .map_err(|e| Error::corrupt(path, format!("zstd: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::corrupt(
            path,
            format!("decompressed to {} bytes, index says {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// Decompresses a whole object (index, manifest) of unknown size, refusing more than
/// `limit` bytes of output.
pub(crate) fn decompress_bounded(path: &str, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(data)
        .map_err(|e| Error::corrupt(path, format!("zstd: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt(path, format!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(Error::corrupt(
            path,
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        for crypto in [Crypto::None, Crypto::from_master(&MasterKey::random())] {
            let sealed = crypto.seal(b"aad", b"hello");
            assert_eq!(sealed.len(), 5 + crypto.overhead());
            assert_eq!(crypto.open("x", b"aad", &sealed).unwrap(), b"hello");
            assert!(crypto.open("x", b"other", &sealed).is_err());
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert!(crypto.open("x", b"aad", &bad).is_err());
            assert!(crypto.open("x", b"aad", &sealed[..3]).is_err());
        }
    }

    #[test]
    fn compression_round_trip_and_bounds() {
        let data = vec![7u8; 100_000];
        let c = compress(&data, 3).unwrap();
        assert_eq!(decompress("x", &c, data.len()).unwrap(), data);
        assert!(decompress("x", &c, 10).is_err());
        assert!(decompress("x", &c, MAX_BLOB_SIZE + 1).is_err());
        assert!(decompress_bounded("x", &c, 1000).is_err());
        assert_eq!(decompress_bounded("x", &c, 100_000).unwrap(), data);
        assert!(decompress_bounded("x", b"garbage", 1000).is_err());
    }

    /// Each level keeps its own context: alternating levels on one thread compresses every
    /// input as a fresh context at that level would, and the contexts kept stay bounded.
    #[test]
    fn compression_contexts_are_kept_per_level() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                format!(
                    "{{\"blob\":\"{:08x}\",\"rows\":{}}}",
                    i.wrapping_mul(2_654_435_761),
                    i % 7
                )
                .into_bytes()
            })
            .collect();
        for level in [4, 1, 4, 1, 3, 2, 5, 4, 1] {
            let ours = compress(&text, level).unwrap();
            assert_eq!(
                ours,
                zstd::bulk::compress(&text, level).unwrap(),
                "level {level}"
            );
            assert_eq!(decompress("x", &ours, text.len()).unwrap(), text);
        }
        COMPRESSORS.with(|c| assert!(c.borrow().len() <= MAX_COMPRESSORS));
    }

    /// `n` blocks alike to each other: rows drawn (by a fixed pseudo-random sequence) from
    /// one vocabulary of 256 random 24-byte strings, so what repeats is shared across blocks
    /// more than within one, which is what a dictionary is for.
    fn alike_blocks(n: u64) -> Vec<Vec<u8>> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let vocabulary: Vec<[u8; 24]> = (0..256)
            .map(|_| {
                let mut w = [0u8; 24];
                for c in w.chunks_mut(8) {
                    c.copy_from_slice(&next().to_le_bytes());
                }
                w
            })
            .collect();
        (0..n)
            .map(|_| {
                (0..300)
                    .flat_map(|_| vocabulary[(next() % 256) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_trained_dictionary_compresses_alike_blocks_better_and_round_trips() {
        let samples = alike_blocks(64);
        let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
        let dict = train_dictionary(&samples.concat(), &sizes, 32 * 1024, 3)
            .expect("64 alike samples train a dictionary");
        assert!(!dict.is_empty() && dict.len() <= 32 * 1024);
        let id = BlobId::from_bytes([9; 32]);
        let mut with = 0;
        let mut plain = 0;
        for block in alike_blocks(80).iter().skip(64) {
            let c = compress_with_dictionary(block, 3, &id, &dict).unwrap();
            let (named, payload) = dictionary_of(&c).expect("the blob names its dictionary");
            assert_eq!(named, id);
            let back = decompress_with_dictionary("x", payload, block.len(), &id, &dict).unwrap();
            assert_eq!(&back, block);
            with += c.len();
            plain += compress(block, 3).unwrap().len();
        }
        assert!(with < plain, "the dictionary pays: {with} vs {plain}");
    }

    #[test]
    fn training_refuses_what_it_cannot_train_from() {
        let samples = alike_blocks(3);
        let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
        assert_eq!(
            train_dictionary(&samples.concat(), &sizes, 32 * 1024, 3),
            None,
            "too few"
        );
        let samples = alike_blocks(64);
        let mut sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
        sizes[0] += 1;
        assert_eq!(
            train_dictionary(&samples.concat(), &sizes, 32 * 1024, 3),
            None,
            "lengths not summing to the bytes"
        );
    }
}
