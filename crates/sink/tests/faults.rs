//! Storage faults: a loopback HTTP proxy in front of moto (S3) that injects 5xx answers,
//! throttling (503 SlowDown), stalls past the client timeout and dropped connections; and
//! a full disk (a child process with a file-size limit) under a local repository.
//!
//! What must hold: at a 10% fault rate a backup completes through object_store's retries
//! and reads back intact; when faults persist it fails with an error naming the object,
//! and no manifest (no backup) appears; a disk that fills up fails the backup cleanly and
//! leaves a repository that verifies with no partial backup.
//!
//! Needs moto (`$TAOSBACKUP_MOTO_SERVER` or `.venv/bin/moto_server`, installed by
//! `cargo xtask ci`). Figures (faults injected per kind) are printed with `--nocapture`.

#[allow(dead_code)]
#[path = "sink/common.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use common::{Moto, backup, init, make_snapshot, noise, password, random_backup_id};
use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use taosbackup_sink::{Backend, Error, Repo, VerifyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: &str = "faults";
/// The client timeout used through the proxy; stalls last longer than this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The kinds of injected faults.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `500 InternalError`.
    ServerError,
    /// `503 SlowDown` (S3 throttling).
    SlowDown,
    /// No answer for longer than the client timeout, then the connection closes.
    Stall,
    /// The connection closes without an answer after the request reached S3 (the
    /// write may have happened: retries must be idempotent).
    DropAfterForward,
    /// The connection closes without an answer before the request reached S3.
    DropBeforeForward,
}

const FAULTS: [Fault; 5] = [
    Fault::ServerError,
    Fault::SlowDown,
    Fault::Stall,
    Fault::DropAfterForward,
    Fault::DropBeforeForward,
];

/// Fault injection settings and counters, shared with the proxy task.
#[derive(Default)]
struct Policy {
    /// Faults per 1000 requests.
    per_mille: AtomicU32,
    /// Only requests whose path contains this are faulted (empty: all).
    only: std::sync::Mutex<String>,
    requests: AtomicU64,
    /// Requests that matched `only`.
    matching: AtomicU64,
    /// Faults injected so far (picks the next kind).
    faulted: AtomicU64,
    injected: [AtomicU64; 5],
}

impl Policy {
    fn set(&self, per_mille: u32, only: &str) {
        self.per_mille.store(per_mille, Ordering::SeqCst);
        *self.only.lock().unwrap() = only.to_owned();
    }

    /// Faults exactly `per_mille` of the matching requests, evenly spaced, cycling through
    /// the fault kinds (so every kind occurs once five faults have).
    fn decide(&self, path: &str) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let only = self.only.lock().unwrap().clone();
        if !path.contains(&only) {
            return None;
        }
        let rate = u64::from(self.per_mille.load(Ordering::SeqCst));
        let n = self.matching.fetch_add(1, Ordering::SeqCst);
        if (n + 1) * rate / 1000 == n * rate / 1000 {
            return None;
        }
        let k = self.faulted.fetch_add(1, Ordering::SeqCst) as usize % FAULTS.len();
        self.injected[k].fetch_add(1, Ordering::SeqCst);
        Some(FAULTS[k])
    }

    fn total_injected(&self) -> u64 {
        self.injected.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    fn summary(&self) -> String {
        let kinds: Vec<String> = FAULTS
            .iter()
            .zip(&self.injected)
            .map(|(f, c)| format!("{f:?} {}", c.load(Ordering::SeqCst)))
            .collect();
        format!(
            "{} requests, {} faults injected ({})",
            self.requests.load(Ordering::SeqCst),
            self.total_injected(),
            kinds.join(", ")
        )
    }
}

/// Starts the proxy in front of `upstream` (`127.0.0.1:port`); returns its endpoint.
async fn start_proxy(upstream: String, policy: Arc<Policy>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let policy = policy.clone();
            tokio::spawn(async move {
                // A connection torn down by the client is not a test failure.
                let _ = serve(client, &upstream, &policy).await;
            });
        }
    });
    endpoint
}

/// Reads one request (head and Content-Length body) from `s`.
async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("transfer-encoding: chunked"),
        "the proxy does not handle chunked request bodies: {head}"
    );
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

/// Replaces (or adds) the `Connection` header of an HTTP head with `close`.
fn close_connection(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// One request per connection: faulted, or forwarded with `Connection: close` both ways.
async fn serve(mut client: TcpStream, upstream: &str, policy: &Policy) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let fault = policy.decide(&path);
    let error = |status: &str, code: &str| {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>injected</Message></Error>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{xml}",
            xml.len()
        )
    };
    match fault {
        Some(Fault::ServerError) => {
            client
                .write_all(error("500 Internal Server Error", "InternalError").as_bytes())
                .await?;
            return client.shutdown().await;
        }
        Some(Fault::SlowDown) => {
            client
                .write_all(error("503 Slow Down", "SlowDown").as_bytes())
                .await?;
            return client.shutdown().await;
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(CLIENT_TIMEOUT + Duration::from_millis(500)).await;
            return Ok(());
        }
        Some(Fault::DropBeforeForward) => return Ok(()),
        Some(Fault::DropAfterForward) | None => {}
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(close_connection(&head).as_bytes()).await?;
    up.write_all(&body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    if matches!(fault, Some(Fault::DropAfterForward)) {
        return Ok(());
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    client.write_all(close_connection(&head).as_bytes()).await?;
    client.write_all(&response[head_end..]).await?;
    client.shutdown().await
}

fn s3_options(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_owned()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
        ("timeout", format!("{}s", CLIENT_TIMEOUT.as_secs())),
    ]
}

/// The repository straight on moto (no proxy), to check what the faulty run left.
fn direct(moto: &Moto, prefix: &str) -> Backend {
    Backend::from_url_with_options(
        &format!("s3://{BUCKET}/{prefix}"),
        s3_options(&moto.endpoint),
    )
    .unwrap()
}

fn upstream_of(moto: &Moto) -> String {
    moto.endpoint.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_completes_through_retries_at_a_ten_percent_fault_rate() {
    let moto = Moto::start(BUCKET);
    let policy = Arc::new(Policy::default());
    let proxy = start_proxy(upstream_of(&moto), policy.clone()).await;
    policy.set(100, "");
    // Backend::from_url_with_options: the production path, default retry settings.
    let faulty =
        Backend::from_url_with_options(&format!("s3://{BUCKET}/ten-percent"), s3_options(&proxy))
            .unwrap();
    let repo = init(faulty.clone(), true).await;
    // Backups of 20 incompressible 12 kB blobs each (about 4 packs, an index and a
    // manifest); `cargo xtask soak` raises the count.
    let rounds: u64 = std::env::var("TAOSBACKUP_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut written = Vec::new();
    for round in 0..rounds {
        let datas: Vec<Vec<u8>> = (0..20).map(|i| noise(round * 100 + i, 12_000)).collect();
        let (m, ids) = backup(&repo, &datas).await;
        written.push((m.id, ids, datas));
    }
    let reopened = Repo::open(faulty, Some(&password())).await.unwrap();
    let report = reopened
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    println!("10% faults: {}", policy.summary());
    assert!(
        policy.total_injected() >= 8,
        "too few faults to mean anything: {}",
        policy.summary()
    );

    // Straight on moto: both backups, every blob intact.
    policy.set(0, "");
    let clean = Repo::open(direct(&moto, "ten-percent"), Some(&password()))
        .await
        .unwrap();
    let mut listed = clean.list_backups().await.unwrap();
    listed.sort();
    let mut expected: Vec<_> = written.iter().map(|(id, _, _)| *id).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (_, ids, datas) in &written {
        for (id, data) in ids.iter().zip(datas) {
            assert_eq!(&clean.read_blob(id).await.unwrap(), data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_faults_fail_cleanly_without_a_manifest() {
    let moto = Moto::start(BUCKET);
    let policy = Arc::new(Policy::default());
    let proxy = start_proxy(upstream_of(&moto), policy.clone()).await;
    // A short retry budget, or every failed request would be retried for minutes.
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&proxy)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .with_virtual_hosted_style_request(false)
        .with_client_options(
            ClientOptions::new()
                .with_timeout(CLIENT_TIMEOUT)
                .with_allow_http(true),
        );
    builder = builder.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    });
    let faulty = Backend::from_store(
        Arc::new(builder.build().unwrap()),
        "persistent",
        "faulty-s3",
    )
    .unwrap();
    let repo = init(faulty.clone(), true).await;

    let mut errors = Vec::new();
    // 1. Every pack upload fails.
    policy.set(1000, "/data/");
    let session = repo.session("backup").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        match session.put_blob(&noise(i, 12_000)).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                errors.push(e.to_string());
                break;
            }
        }
    }
    let id = random_backup_id();
    let err = session
        .commit(&make_snapshot(&session, id, None, id, &ids).await)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SessionFailed { .. }), "{err}");
    assert!(err.to_string().contains("data/"), "{err}");
    errors.push(err.to_string());
    session.finish().await.unwrap();

    // 2. Every snapshot write fails (packs and index are written).
    policy.set(1000, "/snapshots/");
    let session = repo.session("backup").await.unwrap();
    let mut ids = Vec::new();
    for i in 100..110 {
        ids.push(session.put_blob(&noise(i, 12_000)).await.unwrap());
    }
    let id2 = random_backup_id();
    let err = session
        .commit(&make_snapshot(&session, id2, None, id2, &ids).await)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert!(text.contains(&format!("snapshots/{id2}")), "{text}");
    errors.push(text);
    session.finish().await.unwrap();

    // 3. Everything fails: opening a session (the lock write) already fails.
    policy.set(1000, "");
    let err = repo.session("backup").await.unwrap_err();
    assert!(err.to_string().contains("locks"), "{err}");
    errors.push(err.to_string());

    for e in &errors {
        println!("persistent faults: error: {e}");
    }
    println!("100% faults: {}", policy.summary());

    // Nothing committed, and what the failures left verifies clean.
    policy.set(0, "");
    let clean = Repo::open(direct(&moto, "persistent"), Some(&password()))
        .await
        .unwrap();
    assert!(clean.list_backups().await.unwrap().is_empty());
    let report = clean
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The packs of the second attempt are referenced by an index but by no manifest;
    // prune removes them and what the first attempt left.
    clean.remove_stale_locks().await.unwrap();
    clean.prune(None, false).await.unwrap();
    let report = clean
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(
        report.is_ok() && report.unindexed_packs.is_empty(),
        "{report:?}"
    );
}

/// Tiny blobs of the index and manifest scenarios: their index file is about 200 KiB, each
/// of their packs under 100 KiB.
const SMALL_BLOBS: u64 = 6000;

/// The environment variable that turns the disk-full test binary into the child.
const DISK_FULL_CHILD: &str = "TAOSBACKUP_DISK_FULL_CHILD";

/// Runs in the child (with a file-size limit): one backup of `scenario` into the local
/// repository at `path`. Exits 0 when it committed, 3 when it failed with an error.
async fn disk_full_child(spec: &str) -> ! {
    let (scenario, path) = spec.split_once(':').unwrap();
    let repo = Repo::open(Backend::local(path).unwrap(), None)
        .await
        .unwrap();
    let session = repo.session("backup").await.unwrap();
    let result = async {
        let mut ids = Vec::new();
        match scenario {
            // Incompressible 12 kB blobs: packs exceed the limit.
            "packs" => {
                for i in 0..20 {
                    ids.push(session.put_blob(&noise(i, 12_000)).await?);
                }
            }
            // Many tiny blobs: packs fit, the index file does not.
            "index" => {
                for i in 0..SMALL_BLOBS {
                    ids.push(session.put_blob(&noise(1000 + i, 40)).await?);
                }
            }
            // The parent's blocks: every tree object exists already (deduplicated), so
            // only the snapshot object is written, made larger than the limit.
            _ => {
                for i in 0..10 {
                    ids.push(repo.blob_id(&noise(1000 + i, 40)));
                }
            }
        }
        let id = random_backup_id();
        // A snapshot names its tree, not its blocks: the index scenario's packs and index
        // list every blob, its shard only ten.
        let mut snap = make_snapshot(&session, id, None, id, &ids[..10]).await;
        if scenario == "manifest" {
            snap.source.endpoint = Some(taosbackup_core::to_hex(&noise(7, 2048)));
        }
        session.commit(&snap).await
    }
    .await;
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("backup failed: {e}");
            3
        }
    };
    // The lock release may fail as well; the lock then goes stale with this process.
    let _ = session.finish().await;
    std::process::exit(code);
}

/// Runs this test binary again as a child with a file-size limit of `limit_kib` (writes
/// past it fail with EFBIG: SIGXFSZ is ignored), running `scenario`.
fn run_limited(scenario: &str, repo: &std::path::Path, limit_kib: u64) -> (i32, String) {
    let exe = std::env::current_exe().unwrap();
    // `ulimit -f` counts 512-byte blocks in POSIX sh; an ignored signal stays ignored
    // across exec.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" --exact disk_full_leaves_no_partial_backup --nocapture",
            limit_kib * 2
        ))
        .arg(&exe)
        .env(DISK_FULL_CHILD, format!("{scenario}:{}", repo.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_leaves_no_partial_backup() {
    if let Ok(spec) = std::env::var(DISK_FULL_CHILD) {
        disk_full_child(&spec).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = init(Backend::local(&path).unwrap(), false).await;
    // The blobs of the "index" and "manifest" scenarios.
    let small: Vec<Vec<u8>> = (0..SMALL_BLOBS).map(|i| noise(1000 + i, 40)).collect();
    for (scenario, limit_kib, fails_on) in [
        ("packs", 32, "data/"),
        ("index", 120, "index/"),
        ("manifest", 2, "snapshots/"),
    ] {
        if scenario == "manifest" {
            // Commit the small blobs first, with no file-size limit.
            let session = repo.session("backup").await.unwrap();
            let ids: Vec<_> = small.iter().map(|d| repo.blob_id(d)).collect();
            for d in &small {
                session.put_blob(d).await.unwrap();
            }
            let id = random_backup_id();
            session
                .commit(&make_snapshot(&session, id, None, id, &ids[..10]).await)
                .await
                .unwrap();
            session.finish().await.unwrap();
        }
        let backups_before = repo.list_backups().await.unwrap();
        let (code, stderr) = run_limited(scenario, &path, limit_kib);
        println!(
            "disk full ({scenario}, {limit_kib} KiB): exit {code}: {}",
            stderr.trim()
        );
        assert_eq!(code, 3, "scenario {scenario}: {stderr}");
        assert!(stderr.contains("backup failed"), "{stderr}");
        assert!(stderr.contains(fails_on), "scenario {scenario}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let repo = Repo::open(Backend::local(&path).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            repo.list_backups().await.unwrap(),
            backups_before,
            "scenario {scenario} left a backup"
        );
        let report = repo
            .verify(VerifyOptions {
                read_data_percent: Some(100),
            })
            .await
            .unwrap();
        assert!(report.is_ok(), "scenario {scenario}: {:?}", report.problems);
    }
    // With room again, the next backup works and prune clears the leftovers.
    let repo = Repo::open(Backend::local(&path).unwrap(), None)
        .await
        .unwrap();
    repo.remove_stale_locks().await.unwrap();
    let (m, _) = backup(&repo, &[b"after the disk was freed".to_vec()]).await;
    assert!(repo.list_backups().await.unwrap().contains(&m.id));
    repo.prune(None, false).await.unwrap();
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(
        report.is_ok() && report.unindexed_packs.is_empty(),
        "{report:?}"
    );
}
