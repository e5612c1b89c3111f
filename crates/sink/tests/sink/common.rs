//! Test helpers: fast repositories, manifests, data, and the moto S3 server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
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
    let tree = put(TreeObject::Tree(Tree {
        version: SNAPSHOT_VERSION,
        shards: vec![entry],
    })
    .encode())
    .await;
    let catalog = put(TreeObject::Catalog(CatalogRoot {
        version: SNAPSHOT_VERSION,
        database: DatabaseDef {
            name: "power".into(),
            precision: Precision::Ms,
            ddl: "CREATE DATABASE `power` PRECISION 'ms'".into(),
        },
        super_tables: vec![],
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
    let tree = Tree::decode(&repo.read_blob(&s.tree).await.unwrap(), "tree").unwrap();
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

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TAOSBACKUP_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

impl Moto {
    /// Starts moto and creates `bucket`. Panics (fails the test) when moto is missing.
    pub fn start(bucket: &str) -> Moto {
        let bin = moto_binary();
        assert!(
            bin.exists(),
            "moto_server not found at {} (or $TAOSBACKUP_MOTO_SERVER): the S3 tests need it. \
             Run `cargo xtask ci`, which installs it, or: \
             python3 -m venv .venv && .venv/bin/pip install 'moto[server]'",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(status) = http(port, &format!("PUT /{bucket} HTTP/1.1")) {
                assert!(status.contains(" 200"), "creating bucket failed: {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

fn http(port: u16, request_line: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{request_line}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.lines().next().unwrap_or("").to_owned())
}
