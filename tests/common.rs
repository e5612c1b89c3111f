//! Helpers shared by the end-to-end tests that drive the `taosbackup` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle, Outcome, Session};

pub mod storage;

/// A recent millisecond timestamp (inside the default KEEP).
pub const BASE: i64 = 1_760_000_000_000;
pub const DAY: i64 = 86_400_000;

pub fn emu() -> EmulatorHandle {
    // TAOS_EMU_SERVER_VERSION picks the behaviour set (`cargo xtask ci` runs these tests
    // under 3.3.6 and again under 3.4).
    Emulator::start(EmulatorConfig::from_env()).expect("emulator starts")
}

pub fn sql(emu: &EmulatorHandle, statements: &[String]) {
    let mut s = Session::default();
    for q in statements {
        emu.store()
            .execute(&mut s, q)
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// `SELECT COUNT(*)` of a table, through the store.
pub fn count(emu: &EmulatorHandle, table: &str) -> i64 {
    let mut s = Session::default();
    let q = format!("SELECT COUNT(*) FROM {table}");
    match emu.store().execute(&mut s, &q) {
        Ok(Outcome::Rows(rs)) => {
            let v = format!("{:?}", rs.columns[0]);
            v.chars()
                .filter(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("count of {table}: {v}"))
        }
        other => panic!("{q}: {other:?}"),
    }
}

/// Whether `SELECT COUNT(*)` of a table fails (no such table or database), through the store.
pub fn count_fails(emu: &EmulatorHandle, table: &str) -> bool {
    let mut s = Session::default();
    emu.store()
        .execute(&mut s, &format!("SELECT COUNT(*) FROM {table}"))
        .is_err()
}

/// The binary with a hermetic environment: no inherited passwords or log settings, private
/// state and cache directories.
pub fn tb(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("taosbackup").expect("binary built");
    for v in [
        "TAOSBACKUP_PASSWORD",
        "TAOSBACKUP_NEW_PASSWORD",
        "TAOS_BITMAP_DEBUG",
        "RUST_LOG",
        "TAOS_USER",
        "TAOS_PASSWORD",
    ] {
        c.env_remove(v);
    }
    c.env("XDG_STATE_HOME", dir.join("state"));
    c.env("XDG_CACHE_HOME", dir.join("cache"));
    c.timeout(Duration::from_secs(60));
    c
}

/// A TCP proxy that delays every chunk, to make a backup slow enough to interrupt.
pub fn slow_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                std::thread::sleep(delay);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            };
            if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                pipe(client, s2);
                pipe(server, c2);
            }
        }
    });
    addr
}

/// Reads the child's standard error until the export starts; returns the receiver of the
/// remaining lines and the lines seen so far.
pub fn wait_for_export(child: &mut Child) -> (std::sync::mpsc::Receiver<String>, Vec<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no export started: {seen:?}"));
        let started = line.contains("export started");
        seen.push(line);
        if started {
            return (rx, seen);
        }
    }
}

/// moto's S3 server: `$TAOSBACKUP_MOTO_SERVER` or the workspace `.venv`. Never `None`: a
/// missing server fails the test with the install command (storage::Service::binary).
pub fn moto_binary() -> Option<PathBuf> {
    Some(storage::Service::S3.binary())
}

/// A running moto server with one bucket; killed on drop.
pub struct Moto {
    _server: storage::StorageServer,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The port.
    pub port: u16,
}

/// Starts moto on a free port and creates `bucket` (the binary is found again by
/// storage::Service::binary).
pub fn start_moto(_bin: &Path, bucket: &str) -> Moto {
    let server = storage::StorageServer::start(storage::Service::S3, bucket);
    Moto {
        endpoint: server.endpoint(),
        port: server.port,
        _server: server,
    }
}

/// The environment that points the binary's S3 client at moto (or a proxy in front of it).
pub fn s3_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// An HTTP proxy in front of an S3 server that answers every write (PUT, POST, DELETE) with
/// `403 AccessDenied`, as S3 answers a user whose policy allows only reads (s3:GetObject,
/// s3:ListBucket). A stand-in for read-only credentials: moto 5.2.1 enforces IAM policies
/// once `INITIAL_NO_AUTH_ACTION_COUNT` requests are spent, but its signature check then
/// rejects every ListObjectsV2 whose prefix holds a `/` (SignatureDoesNotMatch, with boto3
/// too), and every repository listing has one.
pub fn read_only_s3_proxy(upstream: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_read_only(client, upstream);
            });
        }
    });
    addr
}

fn serve_read_only(client: TcpStream, upstream: u16) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.extend_from_slice(b"Connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let method = String::from_utf8_lossy(&head)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        if matches!(method.as_str(), "PUT" | "POST" | "DELETE") {
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                       <Message>Access Denied</Message></Error>";
            write!(
                client,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                xml.len()
            )?;
            continue;
        }
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(&head)?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        client.write_all(&answer)?;
    }
}

/// Whether the first shard of `snapshot` (in `repo`) is stored in the binary encoding of
/// format 3; else it must be JSON.
pub async fn first_shard_is_binary(
    repo: &taosbackup_sink::Repo,
    snapshot: &taosbackup_core::BackupSnapshot,
) -> bool {
    let (tree, _) = taosbackup_core::Tree::read(
        snapshot.tree,
        "of the test",
        async |blob, _what| repo.read_blob(&blob).await.map_err(|e| e.to_string()),
        |e| e.to_string(),
    )
    .await
    .unwrap();
    let bytes = repo.read_blob(&tree.shards[0].shard).await.unwrap();
    assert!(bytes.starts_with(b"TBSH") || bytes.starts_with(b"{"));
    bytes.starts_with(b"TBSH")
}
