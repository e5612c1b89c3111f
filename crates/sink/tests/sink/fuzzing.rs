//! Fuzz harness for the repository decoders, shared by the cargo-fuzz targets in `fuzz/`
//! and by the regression-corpus replay (`tests/fuzz_corpus.rs`, stable toolchain).
//!
//! Each target takes arbitrary bytes, builds repository objects from them in an
//! in-memory store (through `object_store` directly, as a hostile or damaged store would
//! hold them) and drives the public API: `Repo::open`, `Repo::verify`, `Repo::read_blob`,
//! `Repo::load_manifest`. Whatever the bytes, the result must be `Ok` or a typed error —
//! never a panic, a hang or an unbounded allocation.
//!
//! The first input byte picks a mode. Raw modes store the bytes as they are; sealed modes
//! treat them as plaintext and seal them the way an unencrypted repository does
//! (`body || BLAKE3(u64le(len(aad)) || aad || body)`, docs/format.md), so the fuzzer gets
//! past the checksum and into the parsers behind it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use taosbackup_core::{
    BackupId, BackupKind, BackupStats, BlobId, BlockChunk, BlockRecord, BlockRef, BucketWidth,
    CatalogSnapshot, DatabaseDef, MANIFEST_VERSION, Manifest, Precision, SourceInfo, TableRecord,
    TimeRange,
};
use taosbackup_sink::{
    Backend, Error, InitOptions, KdfParams, OpenOptions, Password, Repo, VerifyOptions,
};

/// The fuzzed decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A pack file: its trailing length field, sealed header and entries.
    Pack,
    /// An index file (`index/<blake3>`): seal, zstd, JSON, entry bounds.
    Index,
    /// A manifest (`manifests/<id>`): seal, zstd, JSON, validation.
    Manifest,
    /// One blob inside a pack: seal, zstd with the recorded raw length, rehash.
    Blob,
    /// A key file (`keys/<id>`) of an encrypted repository.
    Key,
    /// The `config` object.
    Config,
    /// `BlockChunk::decode_all` (the frames inside a blob).
    Chunk,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 7] = [
        Target::Pack,
        Target::Index,
        Target::Manifest,
        Target::Blob,
        Target::Key,
        Target::Config,
        Target::Chunk,
    ];

    /// The target's name (the cargo-fuzz target and corpus directory).
    pub fn name(self) -> &'static str {
        match self {
            Target::Pack => "pack_header",
            Target::Index => "index_file",
            Target::Manifest => "manifest",
            Target::Blob => "blob_open",
            Target::Key => "key_file",
            Target::Config => "config",
            Target::Chunk => "block_chunk",
        }
    }
}

/// What one input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The decoder accepted the input.
    Accepted,
    /// The decoder refused it with a typed error.
    Refused,
    /// The input was skipped (a key file asking for more KDF work than a fuzz run affords).
    Skipped,
}

/// Runs `data` through `target`.
pub fn run(target: Target, data: &[u8]) -> Outcome {
    match target {
        Target::Chunk => chunk(data),
        _ => {
            // Built outside the runtime: building blocks on it.
            base(target == Target::Key);
            run_async(target, data)
        }
    }
}

fn run_async(target: Target, data: &[u8]) -> Outcome {
    match target {
        Target::Chunk => chunk(data),
        _ => runtime().block_on(async {
            match target {
                Target::Pack => pack(data).await,
                Target::Index => index(data).await,
                Target::Manifest => manifest(data).await,
                Target::Blob => blob(data).await,
                Target::Key => key(data).await,
                Target::Config => config(data).await,
                Target::Chunk => unreachable!("handled above"),
            }
        }),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Objects of a valid repository, built once: (path, bytes).
struct Base {
    objects: Vec<(String, Vec<u8>)>,
    manifest_id: BackupId,
    manifest_json: Vec<u8>,
}

const PASSWORD: &str = "fuzz password";

fn base(encrypted: bool) -> &'static Base {
    static PLAIN: OnceLock<Base> = OnceLock::new();
    static SEALED: OnceLock<Base> = OnceLock::new();
    let cell = if encrypted { &SEALED } else { &PLAIN };
    cell.get_or_init(|| runtime().block_on(build_base(encrypted)))
}

async fn build_base(encrypted: bool) -> Base {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "fuzz://").expect("backend");
    let options = InitOptions {
        encryption: encrypted,
        kdf: KdfParams::insecure_for_tests(),
        pack_size: 64 * 1024,
        ..InitOptions::default()
    };
    let pw = Password::new(PASSWORD).expect("password");
    let repo = Repo::init(backend, options, encrypted.then_some(&pw))
        .await
        .expect("init");
    let session = repo.session("backup").await.expect("session");
    let mut blobs = Vec::new();
    for data in [&b"first block"[..], b"second block", b"third block"] {
        blobs.push(session.put_blob(data).await.expect("put"));
    }
    let id = BackupId::from_bytes([7; 16]);
    let m = valid_manifest(id, &blobs);
    // A format-1 manifest beside the format-2 objects: the manifest and key-file targets
    // load it (`migrate` reads manifests with the same code).
    session.flush_index().await.expect("flush");
    let body = repo.encode_manifest(&m).expect("encode manifest");
    put(&store, &format!("manifests/{}", id.to_hex()), body).await;
    session.finish().await.expect("finish");
    let mut objects = Vec::new();
    let mut listing = store.list(None);
    use futures::StreamExt;
    while let Some(meta) = listing.next().await {
        let meta = meta.expect("list");
        let bytes = store
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        objects.push((meta.location.to_string(), bytes.to_vec()));
    }
    Base {
        objects,
        manifest_id: id,
        manifest_json: serde_json::to_vec(&m).expect("manifest json"),
    }
}

/// A valid full backup of table `t0` with one bucket per blob.
pub fn valid_manifest(id: BackupId, blobs: &[BlobId]) -> Manifest {
    let blocks: BTreeMap<i64, BlockRecord> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let ts = i as i64 * 86_400_000;
            let r = BlockRef {
                blob: *b,
                rows: 1,
                min_ts: ts,
                max_ts: ts,
            };
            (i as i64, BlockRecord::Data(r))
        })
        .collect();
    let mut tables = BTreeMap::new();
    tables.insert("t0".to_owned(), TableRecord::Present { blocks });
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    Manifest {
        version: MANIFEST_VERSION,
        id,
        parent: None,
        chain: id,
        database: "power".into(),
        kind: BackupKind::Full,
        engine: "full".into(),
        started_at: now,
        finished_at: now,
        source: SourceInfo::default(),
        bucket_width: BucketWidth::DAY,
        catalog: CatalogSnapshot {
            database: DatabaseDef {
                name: "power".into(),
                precision: Precision::Ms,
                ddl: "CREATE DATABASE `power` PRECISION 'ms'".into(),
            },
            super_tables: vec![],
            skipped: Vec::new(),
            tables: vec![],
        },
        tables,
        feed_positions: None,
        stats: BackupStats::default(),
    }
}

/// A fresh store holding the base objects for which `keep` is true.
async fn store_from(base: &Base, keep: impl Fn(&str) -> bool) -> Arc<InMemory> {
    let store = Arc::new(InMemory::new());
    for (path, bytes) in &base.objects {
        if keep(path) {
            put(&store, path, bytes.clone()).await;
        }
    }
    store
}

async fn put(store: &InMemory, path: &str, bytes: Vec<u8>) {
    store
        .put(&Path::from(path), PutPayload::from(bytes))
        .await
        .expect("in-memory put");
}

/// How an unencrypted repository seals `body` (docs/format.md).
pub fn seal(aad: &[u8], body: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(&(aad.len() as u64).to_le_bytes());
    h.update(aad);
    h.update(body);
    let mut out = body.to_vec();
    out.extend_from_slice(h.finalize().as_bytes());
    out
}

fn compress(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).expect("zstd compress")
}

fn hex_name(dir: &str, bytes: &[u8]) -> String {
    let hex = blake3::hash(bytes).to_hex().to_string();
    if dir == "data" {
        format!("data/{}/{hex}", &hex[..2])
    } else {
        format!("{dir}/{hex}")
    }
}

/// The sealed index file listing one pack; returns its object path and bytes.
fn index_for_pack(pack: &[u8], entries: &[(BlobId, u64, u32, u32)]) -> (String, Vec<u8>) {
    let blobs: Vec<serde_json::Value> = entries
        .iter()
        .map(|(id, offset, length, raw)| {
            serde_json::json!({"id": id, "offset": offset, "length": length, "raw_length": raw})
        })
        .collect();
    let json = serde_json::json!({
        "version": 1,
        "packs": [{"id": blake3::hash(pack).to_hex().to_string(), "size": pack.len(), "blobs": blobs}],
    });
    let bytes = seal(
        b"taosbackup index v1",
        &compress(json.to_string().as_bytes()),
    );
    (hex_name("index", &bytes), bytes)
}

/// Opens the repository in `store` (unencrypted), strictly and tolerantly, verifies it
/// with every pack read, and reads `blobs` and the base manifest.
async fn exercise(store: Arc<InMemory>, blobs: &[BlobId], manifest: Option<BackupId>) -> Outcome {
    let backend = Backend::from_store(store, "", "fuzz://").expect("backend");
    let strict = Repo::open(backend.clone(), None).await;
    let tolerant = Repo::open_with(
        backend,
        None,
        OpenOptions {
            allow_damaged_index: true,
            ..OpenOptions::default()
        },
    )
    .await;
    let repo = match tolerant {
        Ok(r) => r,
        Err(e) => {
            check_error(&e);
            return Outcome::Refused;
        }
    };
    let mut refused = strict.is_err();
    if let Err(e) = &strict {
        check_error(e);
    }
    match repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
    {
        Ok(report) => refused |= !report.is_ok(),
        Err(e) => {
            check_error(&e);
            refused = true;
        }
    }
    for id in blobs {
        if let Err(e) = repo.read_blob(id).await {
            check_error(&e);
            refused = true;
        }
    }
    if let Some(id) = manifest {
        match repo.load_manifest(&id).await {
            Ok(m) => assert_eq!(m.id, id, "load_manifest returned another backup"),
            Err(e) => {
                check_error(&e);
                refused = true;
            }
        }
    }
    if refused {
        Outcome::Refused
    } else {
        Outcome::Accepted
    }
}

/// Every refusal must say what failed: a non-empty message, no internal failure.
fn check_error(e: &Error) {
    let text = e.to_string();
    assert!(!text.trim().is_empty(), "empty error message: {e:?}");
    assert!(
        !matches!(e, Error::SessionFailed { .. }),
        "a decoder failure surfaced as an internal session failure: {e}"
    );
}

fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (*m, rest),
        None => (0, data),
    }
}

/// Parses header entries leniently (whole 40-byte entries only), as the index would list.
fn entries_of(header: &[u8]) -> Vec<(BlobId, u64, u32, u32)> {
    let mut offset = 0u64;
    header
        .chunks_exact(40)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&c[..32]);
            let length = u32::from_le_bytes([c[32], c[33], c[34], c[35]]);
            let raw = u32::from_le_bytes([c[36], c[37], c[38], c[39]]);
            let e = (BlobId::from_bytes(id), offset, length, raw);
            offset = offset.saturating_add(u64::from(length));
            e
        })
        .collect()
}

/// Mode even: the rest is the whole pack. Mode odd: `u16le n || n bytes of blob area ||
/// header plaintext`, and the harness seals the header and appends its length.
async fn pack(data: &[u8]) -> Outcome {
    let (mode, rest) = split_mode(data);
    let (bytes, entries) = if mode % 2 == 0 {
        // The index lists the pack but none of its blobs: verify still reads the header.
        (rest.to_vec(), Vec::new())
    } else {
        let n = match rest {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => 0,
        };
        let rest = rest.get(2..).unwrap_or_default();
        let n = n.min(rest.len());
        let (area, header) = rest.split_at(n);
        let sealed = seal(b"taosbackup pack header v1", header);
        let mut bytes = area.to_vec();
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        (bytes, entries_of(header))
    };
    let base = base(false);
    let store = store_from(base, |p| p == "config" || p == "config.check").await;
    let (index_path, index) = index_for_pack(&bytes, &entries);
    put(&store, &hex_name("data", &bytes), bytes).await;
    put(&store, &index_path, index).await;
    let ids: Vec<BlobId> = entries.iter().map(|e| e.0).collect();
    exercise(store, &ids, None).await
}

/// Mode 0: raw index object. Mode 1: JSON plaintext (compressed and sealed by the
/// harness). Mode 2: compressed plaintext (sealed by the harness). The object is named by
/// its hash, as a valid one would be; the base packs are present.
async fn index(data: &[u8]) -> Outcome {
    let (mode, rest) = split_mode(data);
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => seal(b"taosbackup index v1", &compress(rest)),
        _ => seal(b"taosbackup index v1", rest),
    };
    let base = base(false);
    let store = store_from(base, |p| {
        !p.starts_with("index/") && !p.starts_with("manifests/")
    })
    .await;
    put(&store, &hex_name("index", &bytes), bytes).await;
    exercise(store, &[], None).await
}

/// Mode 0: raw manifest object. Mode 1: JSON plaintext. Mode 2: compressed plaintext.
async fn manifest(data: &[u8]) -> Outcome {
    let (mode, rest) = split_mode(data);
    let base = base(false);
    let id = base.manifest_id;
    let aad = format!("taosbackup manifest v1 {}", id.to_hex());
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => seal(aad.as_bytes(), &compress(rest)),
        _ => seal(aad.as_bytes(), rest),
    };
    let store = store_from(base, |p| !p.starts_with("manifests/")).await;
    put(&store, &format!("manifests/{}", id.to_hex()), bytes).await;
    exercise(store, &[], Some(id)).await
}

/// `u32le raw_length || mode || payload`. Mode 0: payload is the stored blob. Mode 1:
/// payload is the compressed plaintext (sealed by the harness). Mode 2: payload is the
/// data (compressed and sealed by the harness, id its hash). The blob sits alone in a pack
/// whose header and index match it.
async fn blob(data: &[u8]) -> Outcome {
    let raw_length = match data {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    };
    let (mode, payload) = split_mode(data.get(4..).unwrap_or_default());
    let (id, stored) = match mode % 3 {
        0 => (
            BlobId::from_bytes(*blake3::hash(payload).as_bytes()),
            payload.to_vec(),
        ),
        1 => {
            let id = BlobId::from_bytes(*blake3::hash(payload).as_bytes());
            (id, seal(id.as_bytes(), payload))
        }
        _ => {
            let id = BlobId::from_bytes(*blake3::hash(payload).as_bytes());
            (id, seal(id.as_bytes(), &compress(payload)))
        }
    };
    let length = stored.len() as u32;
    let mut header = id.as_bytes().to_vec();
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(&raw_length.to_le_bytes());
    let sealed = seal(b"taosbackup pack header v1", &header);
    let mut bytes = stored;
    bytes.extend_from_slice(&sealed);
    bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    let base = base(false);
    let store = store_from(base, |p| p == "config" || p == "config.check").await;
    let (index_path, index) = index_for_pack(&bytes, &[(id, 0, length, raw_length)]);
    put(&store, &hex_name("data", &bytes), bytes).await;
    put(&store, &index_path, index).await;
    exercise(store, &[id], None).await
}

/// The largest Argon2 work a fuzz input may ask for (KiB × passes): key files may
/// legitimately demand up to 4 GiB × 1000 passes, which would only measure Argon2.
const MAX_FUZZ_KDF_WORK: u64 = 64 * 1024;

/// The bytes replace the only key file of an encrypted repository; open with the right
/// password.
async fn key(data: &[u8]) -> Outcome {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let p = &v["kdf"]["params"];
        let work = p["memory_kib"]
            .as_u64()
            .unwrap_or(0)
            .saturating_mul(p["iterations"].as_u64().unwrap_or(0));
        if work > MAX_FUZZ_KDF_WORK || p["parallelism"].as_u64().unwrap_or(0) > 4 {
            return Outcome::Skipped;
        }
    }
    let base = base(true);
    let store = store_from(base, |p| !p.starts_with("keys/")).await;
    put(&store, "keys/fuzzed", data.to_vec()).await;
    let backend = Backend::from_store(store, "", "fuzz://").expect("backend");
    let pw = Password::new(PASSWORD).expect("password");
    match Repo::open(backend, Some(&pw)).await {
        Ok(repo) => {
            // A key file that opens must unwrap the real master key: the data reads back.
            let m = repo
                .load_manifest(&base.manifest_id)
                .await
                .expect("a key file that opens unwraps the real master key");
            for blob in m.blob_ids() {
                repo.read_blob(&blob).await.expect("blob readable");
            }
            Outcome::Accepted
        }
        Err(e) => {
            check_error(&e);
            Outcome::Refused
        }
    }
}

/// The bytes replace `config` of the unencrypted base repository, with a `config.check`
/// that matches them (so the parser, not the checksum, meets the input).
async fn config(data: &[u8]) -> Outcome {
    let base = base(false);
    let store = store_from(base, |p| p != "config" && p != "config.check").await;
    put(&store, "config", data.to_vec()).await;
    let check = blake3::hash(data).to_hex().to_string().into_bytes();
    put(&store, "config.check", check).await;
    exercise(store, &[], Some(base.manifest_id)).await
}

/// `decode_all`; whatever decodes re-encodes to exactly the input.
fn chunk(data: &[u8]) -> Outcome {
    let range = TimeRange { start: 0, end: 1 };
    match BlockChunk::decode_all(data, "t", range) {
        Ok(chunks) => {
            let mut again = Vec::new();
            for c in &chunks {
                c.encode(&mut again).expect("a decoded chunk encodes");
            }
            // A TBC1 or TBC2 frame whose raw block has a known layout re-encodes as TBC3: the
            // bytes may differ, the chunks may not. Encoding is deterministic, so
            // re-encoding what was written is the identity.
            let reread = BlockChunk::decode_all(&again, "t", range).expect("re-encoded reads");
            assert_eq!(reread, chunks, "decode, encode, decode changed the chunks");
            let mut third = Vec::new();
            for c in &reread {
                c.encode(&mut third).expect("encodes");
            }
            assert_eq!(third, again, "encoding is not deterministic");
            Outcome::Accepted
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            Outcome::Refused
        }
    }
}

/// The base repository's pack: (id in hex, bytes, blob area, header plaintext).
fn real_pack() -> (String, Vec<u8>, Vec<u8>, Vec<u8>) {
    let base = base(false);
    let (path, bytes) = base
        .objects
        .iter()
        .find(|(p, _)| p.starts_with("data/"))
        .expect("the base repository has a pack");
    let n = bytes.len();
    let header_len = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
    let area_end = n - 4 - header_len as usize;
    let header = bytes[area_end..n - 4 - 32].to_vec();
    let id = path.rsplit('/').next().unwrap_or_default().to_owned();
    (id, bytes.clone(), bytes[..area_end].to_vec(), header)
}

/// Seed inputs for every target: valid objects (in the sealed modes, so the fuzzer starts
/// past the checksums) and a few hostile ones.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let with_mode = |mode: u8, body: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(body);
        v
    };
    match target {
        Target::Pack => {
            let mut header = [9u8; 32].to_vec();
            header.extend_from_slice(&4u32.to_le_bytes());
            header.extend_from_slice(&4u32.to_le_bytes());
            let mut sealed = vec![1, 4, 0];
            sealed.extend_from_slice(b"abcd");
            sealed.extend_from_slice(&header);
            let (_, whole, area, header) = real_pack();
            let mut real = vec![1];
            real.extend_from_slice(&(area.len() as u16).to_le_bytes());
            real.extend_from_slice(&area);
            real.extend_from_slice(&header);
            vec![sealed, real, with_mode(0, &whole), with_mode(0, &[0xff; 8])]
        }
        Target::Index => {
            let (id, whole, _, header) = real_pack();
            let blobs: Vec<serde_json::Value> = entries_of(&header)
                .iter()
                .map(|(id, offset, length, raw)| {
                    serde_json::json!({"id": id, "offset": offset, "length": length, "raw_length": raw})
                })
                .collect();
            let json = serde_json::json!({"version": 1, "packs": [{"id": id, "size": whole.len(), "blobs": blobs}]});
            vec![
                with_mode(1, json.to_string().as_bytes()),
                with_mode(1, br#"{"version":2,"packs":[]}"#),
                with_mode(2, &[0x28, 0xb5, 0x2f, 0xfd, 0, 0x58]),
            ]
        }
        Target::Manifest => {
            let base = base(false);
            vec![
                with_mode(1, &base.manifest_json),
                with_mode(1, br#"{"version":9}"#),
            ]
        }
        Target::Blob => {
            let mut v = 5u32.to_le_bytes().to_vec();
            v.push(2);
            v.extend_from_slice(b"hello");
            let mut huge = u32::MAX.to_le_bytes().to_vec();
            huge.push(1);
            huge.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x01, 0x00, 0x00]);
            vec![v, huge]
        }
        Target::Key => {
            let base = base(true);
            let mut seeds: Vec<Vec<u8>> = base
                .objects
                .iter()
                .filter(|(p, _)| p.starts_with("keys/"))
                .map(|(_, b)| b.clone())
                .collect();
            seeds.push(br#"{"version":2}"#.to_vec());
            seeds.push(b"\xff not json".to_vec());
            seeds
        }
        Target::Config => {
            let base = base(false);
            let mut seeds: Vec<Vec<u8>> = base
                .objects
                .iter()
                .filter(|(p, _)| p == "config")
                .map(|(_, b)| b.clone())
                .collect();
            seeds.push(br#"{"version":1}"#.to_vec());
            seeds.push(br#"{"version":4294967296}"#.to_vec());
            seeds
        }
        Target::Chunk => {
            let c = BlockChunk {
                table: "t".into(),
                range: TimeRange { start: 0, end: 1 },
                precision: Precision::Us,
                columns: vec!["ts".into(), "v".into()],
                rows: 1,
                min_ts: 0,
                max_ts: 0,
                raw: vec![1, 2, 3, 4],
            };
            let mut v = Vec::new();
            c.encode(&mut v).expect("encode");
            c.encode(&mut v).expect("encode");
            // A real raw block (one TIMESTAMP column, two rows): written as a TBC3 frame.
            let mut raw = Vec::new();
            for x in [1u32, 0, 2, 1, 0] {
                raw.extend_from_slice(&x.to_le_bytes());
            }
            raw.extend_from_slice(&0u64.to_le_bytes());
            raw.push(9);
            raw.extend_from_slice(&8u32.to_le_bytes());
            raw.extend_from_slice(&16u32.to_le_bytes());
            raw.push(0);
            raw.extend_from_slice(&1000i64.to_le_bytes());
            raw.extend_from_slice(&61_000i64.to_le_bytes());
            let total = raw.len() as u32;
            raw[4..8].copy_from_slice(&total.to_le_bytes());
            let t = BlockChunk {
                columns: vec!["ts".into()],
                rows: 2,
                min_ts: 1000,
                max_ts: 61_000,
                raw,
                ..c
            };
            let mut framed = Vec::new();
            t.encode(&mut framed).expect("encode");
            assert_eq!(
                &framed[..4],
                b"TBC3",
                "a known layout is written transformed"
            );
            v.extend_from_slice(&framed);
            // The same frame with a block that does not describe itself.
            let mut hostile = framed.clone();
            let n = hostile.len();
            hostile[n - 26..n - 22].copy_from_slice(&u32::MAX.to_le_bytes());
            vec![v, b"TBC1\xff\xff\xff\xff".to_vec(), hostile]
        }
    }
}
