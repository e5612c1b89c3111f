//! Storage faults: a loopback HTTP proxy (`tests/common/storage.rs`) in front of moto (S3),
//! Azurite (Azure) and fake-gcs-server (GCS) that answers 500s, 503 `SlowDown` and 429 with
//! `Retry-After`, stalls past the client timeout, and resets connections before or after the
//! request reached the store; and a full disk (a child process with a file-size limit) under
//! a local repository.
//!
//! What must hold: at a 10% fault rate full and incremental backups, reads (what a restore
//! does), verify with every pack read, forget and prune complete through the backend's
//! retries, every injected fault costs exactly one counted retry, and the repository read
//! straight from the store (no proxy) holds exactly what was written; when faults persist an
//! operation fails with an error naming the object, the attempts and the last HTTP status,
//! and no backup appears; a multipart upload whose parts fail is aborted and leaves no
//! object; a disk that fills up fails the backup cleanly.
//!
//! Needs the three emulators (installed by `cargo xtask ci`). Figures (faults injected per
//! kind, retries) are printed with `--nocapture`.

use std::process::Command;
use std::time::Duration;

use crate::common::{
    Fault, FaultPolicy, FaultProxy, Service, StorageServer, backup, init, make_snapshot, noise,
    password, random_backup_id, remote,
};
use taosbackup_sink::{Backend, Error, Forget, Repo, RetentionPolicy, VerifyOptions};

/// The client timeout through the proxy; stalls last longer.
const CLIENT_TIMEOUT: &str = "2s";
const STALL: Duration = Duration::from_millis(2500);

/// Short back-offs so a run takes seconds (production: 100 ms doubling to 15 s).
const FAST_RETRY: [(&str, &str); 4] = [
    ("timeout", CLIENT_TIMEOUT),
    ("retry_initial_backoff", "20ms"),
    ("retry_max_backoff", "200ms"),
    ("retry_timeout", "60s"),
];

fn read_all() -> VerifyOptions {
    VerifyOptions {
        read_data_percent: Some(100),
    }
}

/// Full and incremental backups, reads, verify, forget and prune through a proxy that
/// faults 10% of the requests; then the repository straight from the store.
async fn ten_percent(service: Service) {
    let server = StorageServer::start(service, "faults");
    let proxy = FaultProxy::start(&server.address(), FaultPolicy::new(STALL));
    let policy = proxy.policy.clone();
    policy.set(100, "");
    let faulty = remote(&server, &proxy.endpoint, "ten-percent", &FAST_RETRY);
    let repo = init(faulty.clone(), true).await;
    // Per round a full backup (a new chain) of 20 incompressible 12 kB blobs (four 64 KiB
    // packs, an index, a manifest) and an incremental on it with 5 new blobs;
    // `cargo xtask soak` raises the rounds.
    let rounds: u64 = std::env::var("TAOSBACKUP_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut written = Vec::new();
    for round in 0..rounds {
        let datas: Vec<Vec<u8>> = (0..20).map(|i| noise(round * 100 + i, 12_000)).collect();
        let (full, ids) = backup(&repo, &datas).await;
        let session = repo.session("backup").await.unwrap();
        let mut inc_ids = ids[..15].to_vec();
        let mut inc_datas = datas[..15].to_vec();
        for i in 0..5 {
            let d = noise(round * 100 + 50 + i, 12_000);
            inc_ids.push(session.put_blob(&d).await.unwrap());
            inc_datas.push(d);
        }
        let inc_id = random_backup_id();
        session
            .commit(&make_snapshot(&session, inc_id, Some(full.id), full.id, &inc_ids).await)
            .await
            .unwrap();
        session.finish().await.unwrap();
        written.push((full.id, ids, datas));
        written.push((inc_id, inc_ids, inc_datas));
    }
    // Restore's reads and verify, through the faults.
    let reopened = Repo::open(faulty.clone(), Some(&password())).await.unwrap();
    for (_, ids, datas) in &written {
        for (id, data) in ids.iter().zip(datas) {
            assert_eq!(&reopened.read_blob(id).await.unwrap(), data);
        }
    }
    let report = reopened.verify(read_all()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Keep the newest chain: forget and prune delete the older chains' data.
    let keep = Forget::Policy(RetentionPolicy {
        keep_chains: Some(1),
        ..RetentionPolicy::default()
    });
    let forgotten = reopened.forget(&keep, false).await.unwrap();
    assert_eq!(forgotten.forgotten.len(), 2 * (rounds as usize - 1));
    let pruned = reopened.prune(None, false).await.unwrap();
    assert!(pruned.blobs_removed > 0, "{pruned:?}");
    let stats = faulty.stats();
    println!(
        "{service:?} at 10%: {}; backend: {} operations, {} retries, {} failures",
        policy.summary(),
        stats.operations,
        stats.retries,
        stats.failures
    );
    assert!(
        policy.total_injected() >= 10,
        "too few faults to mean anything: {}",
        policy.summary()
    );
    for kind in crate::common::storage::FAULTS {
        assert!(
            policy.injected(kind) > 0,
            "no {kind:?}: {}",
            policy.summary()
        );
    }
    assert_eq!(stats.failures, 0, "an operation failed for good: {stats:?}");
    assert_eq!(
        stats.retries,
        policy.total_injected(),
        "every injected fault costs exactly one retry"
    );

    // Straight from the store: the kept backups, every blob intact, nothing else.
    policy.set(0, "");
    let clean = Repo::open(
        remote(&server, &server.endpoint(), "ten-percent", &[]),
        Some(&password()),
    )
    .await
    .unwrap();
    let mut listed = clean.list_backups().await.unwrap();
    listed.sort();
    let kept = &written[written.len() - 2..];
    let mut expected: Vec<_> = kept.iter().map(|(id, _, _)| *id).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (_, ids, datas) in kept {
        for (id, data) in ids.iter().zip(datas) {
            assert_eq!(&clean.read_blob(id).await.unwrap(), data);
        }
    }
    let report = clean.verify(read_all()).await.unwrap();
    assert!(
        report.is_ok() && report.unindexed_packs.is_empty(),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_ten_percent_faults_every_operation_completes_exactly() {
    ten_percent(Service::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_ten_percent_faults_every_operation_completes_exactly() {
    ten_percent(Service::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_ten_percent_faults_every_operation_completes_exactly() {
    ten_percent(Service::Gcs).await;
}

/// The request (method and target fragment) of a multipart part upload on `service`.
fn part_request(service: Service) -> &'static str {
    match service {
        Service::S3 | Service::Gcs => "partNumber=",
        Service::Azure => "comp=block&",
    }
}

/// 100% faults: on pack uploads, on manifest writes, on multipart parts, on everything.
async fn persistent(service: Service) {
    let server = StorageServer::start(service, "faults");
    let proxy = FaultProxy::start(&server.address(), FaultPolicy::new(STALL));
    let policy = proxy.policy.clone();
    policy.kinds(&[Fault::ServerError]);
    let budget = [
        ("timeout", CLIENT_TIMEOUT),
        ("retry_max_retries", "3"),
        ("retry_initial_backoff", "10ms"),
        ("retry_max_backoff", "50ms"),
        ("retry_timeout", "20s"),
    ];
    let faulty = remote(&server, &proxy.endpoint, "persistent", &budget);
    let repo = init(faulty.clone(), true).await;
    let mut errors = Vec::new();

    // 1. Every pack upload fails: the commit fails naming the pack and the status.
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
    let text = err.to_string();
    assert!(matches!(err, Error::SessionFailed { .. }), "{text}");
    assert!(text.contains("data/"), "{text}");
    assert!(
        text.contains("after 4 attempts (last HTTP status 500)"),
        "{text}"
    );
    errors.push(text);
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
    assert!(text.contains("last HTTP status 500"), "{text}");
    errors.push(text);
    session.finish().await.unwrap();

    // 3. A pack over the multipart threshold whose parts all fail: aborted, no object.
    policy.set(1000, part_request(service));
    let session = repo.session("backup").await.unwrap();
    let big = noise(7, 9 * 1024 * 1024);
    // The snapshot's tree objects first, so that they share the big pack (a tree object
    // is a blob: stored after the big one, it would go into a small pack that uploads).
    let id3 = random_backup_id();
    let snap = make_snapshot(&session, id3, None, id3, &[repo.blob_id(&big)]).await;
    let big_id = session.put_blob(&big).await.unwrap();
    let committed = session.commit(&snap).await;
    let err = committed.map(|()| policy.summary()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("data/"), "{text}");
    errors.push(text);
    session.finish().await.unwrap();
    // The same upload with a part fault now and then: it completes.
    policy.set(300, part_request(service));
    let (big_backup, _) = backup(&repo, std::slice::from_ref(&big)).await;

    // 4. Everything fails: opening a session (the lock write) already fails.
    policy.set(1000, "");
    let err = repo.session("backup").await.unwrap_err();
    assert!(err.to_string().contains("locks"), "{err}");
    errors.push(err.to_string());

    for e in &errors {
        println!("{service:?} at 100%: error: {e}");
    }
    let stats = faulty.stats();
    println!(
        "{service:?} at 100%: {}; backend: {} operations, {} retries, {} failures",
        policy.summary(),
        stats.operations,
        stats.retries,
        stats.failures
    );

    // Nothing of the failed attempts is listed; what they left verifies and prunes clean.
    policy.set(0, "");
    let direct = remote(&server, &server.endpoint(), "persistent", &[]);
    let clean = Repo::open(direct.clone(), Some(&password())).await.unwrap();
    assert_eq!(clean.list_backups().await.unwrap(), vec![big_backup.id]);
    assert_eq!(clean.read_blob(&big_id).await.unwrap(), big);
    let report = clean.verify(read_all()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The aborted upload left no object under data/ (and the failed pack uploads none).
    assert!(report.unindexed_packs.is_empty(), "{report:?}");
    if service == Service::S3 {
        assert_eq!(
            s3_open_uploads(&server),
            0,
            "aborted multipart uploads remain"
        );
    }
    clean.remove_stale_locks().await.unwrap();
    clean.prune(None, false).await.unwrap();
    let report = clean.verify(read_all()).await.unwrap();
    assert!(
        report.is_ok() && report.unindexed_packs.is_empty(),
        "{report:?}"
    );
}

/// In-progress multipart uploads of the S3 bucket (`GET /bucket?uploads`, unsigned: moto
/// answers without credentials).
fn s3_open_uploads(server: &StorageServer) -> usize {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.address()).unwrap();
    write!(
        s,
        "GET /{}?uploads HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.bucket,
        server.address()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.matches("<Upload>").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_persistent_faults_fail_naming_object_and_status() {
    persistent(Service::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_persistent_faults_fail_naming_object_and_status() {
    persistent(Service::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_persistent_faults_fail_naming_object_and_status() {
    persistent(Service::Gcs).await;
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
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" --exact storage_faults::disk_full_leaves_no_partial_backup --nocapture",
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
