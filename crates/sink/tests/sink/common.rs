//! Test helpers: fast repositories, manifests, data, and the storage servers (moto,
//! Azurite, fake-gcs-server; `tests/common/storage.rs`, shared with the end-to-end tests).

#[path = "../../../../tests/common/storage.rs"]
pub mod storage;
#[allow(unused_imports)]
pub use storage::{Fault, FaultPolicy, FaultProxy, SERVICES, Service, StorageServer};

use chrono::Utc;
use std::collections::BTreeMap;
use taosbackup_core::{
    BackupId, BackupKind, BackupStats, BlobId, BlockRecord, BlockRef, BucketWidth, CatalogSnapshot,
    DatabaseDef, MANIFEST_VERSION, Manifest, Precision, SourceInfo, TableRecord,
};
use taosbackup_sink::{Backend, InitOptions, KdfParams, Password, Repo};

pub fn password() -> Password {
    Password::new("test password").unwrap()
}

pub fn fast_options(encryption: bool) -> InitOptions {
    InitOptions {
        encryption,
        kdf: KdfParams::insecure_for_tests(),
        pack_size: 64 * 1024,
        ..InitOptions::default()
    }
}

pub async fn init(backend: Backend, encryption: bool) -> Repo {
    let pw = password();
    Repo::init(backend, fast_options(encryption), encryption.then_some(&pw))
        .await
        .unwrap()
}

pub fn random_backup_id() -> BackupId {
    BackupId::from_bytes(rand::random())
}

/// Deterministic pseudo-random bytes (incompressible), `len` long.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A manifest recording `blobs` as buckets 0.. of table `t0`.
pub fn manifest(
    id: BackupId,
    parent: Option<BackupId>,
    chain: BackupId,
    blobs: &[BlobId],
) -> Manifest {
    let blocks: BTreeMap<i64, BlockRecord> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                i as i64,
                BlockRecord::Data(BlockRef {
                    blob: *b,
                    rows: 1,
                    min_ts: i as i64,
                    max_ts: i as i64,
                }),
            )
        })
        .collect();
    let mut tables = BTreeMap::new();
    tables.insert("t0".to_owned(), TableRecord::Present { blocks });
    let now = Utc::now();
    Manifest {
        version: MANIFEST_VERSION,
        id,
        parent,
        chain,
        database: "power".into(),
        kind: if parent.is_some() {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        },
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

/// Writes a full backup of `datas` and returns (manifest, blob ids).
pub async fn backup(repo: &Repo, datas: &[Vec<u8>]) -> (Manifest, Vec<BlobId>) {
    let session = repo.session("backup").await.unwrap();
    let mut ids = Vec::new();
    for d in datas {
        ids.push(session.put_blob(d).await.unwrap());
    }
    let id = random_backup_id();
    let m = manifest(id, None, id, &ids);
    session.commit(&m).await.unwrap();
    session.finish().await.unwrap();
    (m, ids)
}

/// A backend on `server` (reached at `endpoint`: the server's or a proxy's) under `prefix`,
/// built by the production path (`Backend::from_url_with_options`), with `extra` options.
pub fn remote(
    server: &StorageServer,
    endpoint: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Backend {
    let mut options = server.options(endpoint);
    options.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Backend::from_url_with_options(&server.url(prefix), options).unwrap()
}
