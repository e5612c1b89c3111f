//! Test helpers: fast repositories, manifests, data, and the storage servers (moto,
//! Azurite, fake-gcs-server; `tests/common/storage.rs`, shared with the end-to-end tests).

#[path = "../../../../tests/common/storage.rs"]
pub mod storage;
#[allow(unused_imports)]
pub use storage::{Fault, FaultPolicy, FaultProxy, SERVICES, Service, StorageServer};

use chrono::Utc;
use std::collections::BTreeMap;
use taosbackup_core::{
    BackupId, BackupKind, BackupSnapshot, BackupStats, BlobId, BlockRef, BucketWidth, CatalogRoot,
    DatabaseDef, Precision, SNAPSHOT_VERSION, Shard, ShardTable, SourceInfo, TableDef, TableKind,
    Tree, TreeObject,
};
use taosbackup_sink::{Backend, InitOptions, KdfParams, Password, Repo, Session};

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

/// Stores, through `session`, the tree of a backup recording `blobs` as buckets 0.. of
/// table `t0`, and returns its snapshot (not committed).
pub async fn make_snapshot(
    session: &Session,
    id: BackupId,
    parent: Option<BackupId>,
    chain: BackupId,
    blobs: &[BlobId],
) -> BackupSnapshot {
    let blocks: BTreeMap<i64, BlockRef> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let r = BlockRef {
                blob: *b,
                rows: 1,
                min_ts: i as i64,
                max_ts: i as i64,
            };
            (i as i64, r)
        })
        .collect();
    let shard = Shard {
        version: SNAPSHOT_VERSION,
        tables: vec![ShardTable {
            def: TableDef {
                name: "t0".into(),
                kind: TableKind::Normal,
                super_table: None,
                tags: vec![],
                comment: None,
                ttl: None,
                columns: vec![],
            },
            blocks,
        }],
    };
    let entry = shard.entry(BlobId::from_bytes([0; 32]));
    // A session whose uploads fail still gets ids (its commit then fails, as tested).
    let put = async |bytes: Vec<u8>| {
        session
            .put_blob(&bytes)
            .await
            .unwrap_or_else(|_| session.repo().blob_id(&bytes))
    };
    let shard_id = put(TreeObject::Shard(shard).encode()).await;
    let mut entry = entry.unwrap();
    entry.shard = shard_id;
    let (tree, _) = Tree::store(vec![entry], None, async |obj| {
        Ok::<_, ()>(put(obj.encode()).await)
    })
    .await
    .unwrap();
    let catalog = put(TreeObject::Catalog(CatalogRoot {
        version: SNAPSHOT_VERSION,
        database: DatabaseDef {
            name: "power".into(),
            precision: Precision::Ms,
            ddl: "CREATE DATABASE `power` PRECISION 'ms'".into(),
        },
        super_tables: vec![],
        skipped: vec![],
        dictionaries: vec![],
    })
    .encode())
    .await;
    let now = Utc::now();
    BackupSnapshot {
        version: SNAPSHOT_VERSION,
        id,
        database: "power".into(),
        kind: if parent.is_some() {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        },
        engine: "full".into(),
        parent,
        chain,
        started_at: now,
        finished_at: now,
        source: SourceInfo::default(),
        bucket_width: BucketWidth::DAY,
        precision: Precision::Ms,
        tree,
        catalog,
        feed_positions: None,
        stats: BackupStats::default(),
    }
}

/// Every data blob `s` references, read through its tree and shards.
#[allow(dead_code)]
pub async fn snapshot_blobs(repo: &Repo, s: &BackupSnapshot) -> Vec<BlobId> {
    let (tree, _) = Tree::read(
        s.tree,
        "of a test backup",
        async |id, _| repo.read_blob(&id).await,
        |e| panic!("{e}"),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for e in &tree.shards {
        let shard = Shard::decode(&repo.read_blob(&e.shard).await.unwrap(), "shard").unwrap();
        shard.check_against(e, "shard").unwrap();
        for t in shard.tables {
            out.extend(t.blocks.values().map(|b| b.blob));
        }
    }
    out
}

/// Writes a full backup of `datas` and returns (snapshot, blob ids).
pub async fn backup(repo: &Repo, datas: &[Vec<u8>]) -> (BackupSnapshot, Vec<BlobId>) {
    let session = repo.session("backup").await.unwrap();
    let mut ids = Vec::new();
    for d in datas {
        ids.push(session.put_blob(d).await.unwrap());
    }
    let id = random_backup_id();
    let m = make_snapshot(&session, id, None, id, &ids).await;
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

/// Asserts that `repo` verifies with every data blob read.
pub async fn assert_verifies_whole(repo: &Repo) {
    let report = repo
        .verify(taosbackup_sink::VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
