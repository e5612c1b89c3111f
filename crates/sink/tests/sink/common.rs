//! Test helpers: fast repositories, manifests, data, and the moto S3 server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
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
