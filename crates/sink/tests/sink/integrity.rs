//! Wrong passwords, damaged objects, crashes mid-backup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use taosbackup_sink::{Backend, Error, OpenOptions, Password, Repo, VerifyOptions};

use crate::common::*;

const READ_ALL: VerifyOptions = VerifyOptions {
    read_data_percent: Some(100),
};

async fn snapshot(store: &InMemory) -> BTreeMap<String, Vec<u8>> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.to_string(), bytes.to_vec());
    }
    out
}

#[tokio::test]
async fn wrong_password_is_an_error_that_writes_nothing() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://test").unwrap();
    let repo = init(backend.clone(), true).await;
    backup(&repo, &[b"data".to_vec()]).await;
    let before = snapshot(&store).await;
    let wrong = Password::new("wrong").unwrap();
    assert!(matches!(
        Repo::open(backend.clone(), Some(&wrong)).await,
        Err(Error::WrongPassword { tried: 1 })
    ));
    assert!(matches!(
        Repo::open(backend.clone(), None).await,
        Err(Error::PasswordRequired)
    ));
    assert_eq!(snapshot(&store).await, before);
    assert!(matches!(
        Repo::open(Backend::memory(), Some(&wrong)).await,
        Err(Error::NotARepository { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let missing = Backend::local(dir.path().join("no/such/repo")).unwrap();
    assert!(matches!(
        Repo::open(missing, Some(&wrong)).await,
        Err(Error::NotARepository { .. })
    ));
    assert!(!dir.path().join("no").exists(), "open created directories");
}

#[tokio::test]
async fn unknown_version_and_non_repository_fail_clearly() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://test").unwrap();
    init(backend.clone(), false).await;
    let path = object_store::path::Path::from("config");
    let text = String::from_utf8(
        store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let v4 = text.replace("\"version\": 3", "\"version\": 4");
    store
        .put(&path, PutPayload::from(v4.into_bytes()))
        .await
        .unwrap();
    match Repo::open(backend.clone(), None).await {
        Err(Error::UnsupportedVersion {
            found: 4,
            supported: 3,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A format-1 repository (an intact config of version 1) names the way to migrate.
    let v1 = text.replace("\"version\": 3", "\"version\": 1");
    let check = blake3::hash(v1.as_bytes()).to_hex().to_string();
    store
        .put(&path, PutPayload::from(v1.into_bytes()))
        .await
        .unwrap();
    store
        .put(
            &object_store::path::Path::from("config.check"),
            PutPayload::from(check.into_bytes()),
        )
        .await
        .unwrap();
    match Repo::open(backend.clone(), None).await {
        Err(e @ Error::Format1Repository { .. }) => {
            assert!(
                e.to_string()
                    .contains("taosbackup migrate --repo memory://test"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    store
        .put(&path, PutPayload::from(b"\x00garbage".to_vec()))
        .await
        .unwrap();
    assert!(matches!(
        Repo::open(backend, None).await,
        Err(Error::Corrupt { .. })
    ));
}

fn files_under(dir: &Path, sub: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join(sub), &mut out);
    out.sort();
    out
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

async fn local_repo_with_backup(
    encryption: bool,
) -> (
    tempfile::TempDir,
    Backend,
    taosbackup_core::BackupSnapshot,
    Vec<taosbackup_core::BlobId>,
) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path()).unwrap();
    let repo = init(backend.clone(), encryption).await;
    let datas: Vec<Vec<u8>> = (0..6).map(|i| noise(i, 3000)).collect();
    let (m, ids) = backup(&repo, &datas).await;
    (dir, backend, m, ids)
}

fn open_pw(encryption: bool) -> Option<Password> {
    encryption.then(password)
}

#[tokio::test]
async fn corrupted_blob_is_detected_by_read_and_verify() {
    for enc in [true, false] {
        let (dir, backend, _, ids) = local_repo_with_backup(enc).await;
        let pack = files_under(dir.path(), "data").remove(0);
        flip(&pack, |_| 10); // inside the first blob
        let repo = Repo::open(backend.clone(), open_pw(enc).as_ref())
            .await
            .unwrap();
        let mut failed = 0;
        for id in &ids {
            if let Err(e) = repo.read_blob(id).await {
                assert!(matches!(e, Error::Corrupt { .. }), "{e}");
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        let structure = repo.verify(VerifyOptions::default()).await.unwrap();
        assert!(
            structure.is_ok(),
            "a flipped byte keeps the size: structure passes"
        );
        let report = repo.verify(READ_ALL).await.unwrap();
        let pack_name = pack.file_name().unwrap().to_str().unwrap();
        assert!(
            report.problems.iter().any(|p| p.object.contains(pack_name)),
            "{:?}",
            report.problems
        );
    }
}

#[tokio::test]
async fn corrupted_pack_header_and_truncated_pack_are_detected() {
    let (dir, backend, _, _) = local_repo_with_backup(true).await;
    let pack = files_under(dir.path(), "data").remove(0);
    flip(&pack, |len| len - 20); // inside the sealed header
    let repo = Repo::open(backend.clone(), Some(&password()))
        .await
        .unwrap();
    let report = repo.verify(READ_ALL).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("corrupt")),
        "{:?}",
        report.problems
    );
    // Length field pointing far outside the pack.
    let mut bytes = std::fs::read(&pack).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes.truncate(n - 100);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&pack, bytes).unwrap();
    let report = repo.verify(VerifyOptions::default()).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("index says")),
        "{:?}",
        report.problems
    );
    // A pack of the wrong size is reported and not downloaded (its header is not trusted).
    let report = repo.verify(READ_ALL).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.packs_read, 0);
}

#[tokio::test]
async fn corrupted_index_is_detected_by_open_and_verify() {
    let (dir, backend, m, ids) = local_repo_with_backup(true).await;
    let index = files_under(dir.path(), "index").remove(0);
    flip(&index, |len| len / 2);
    match Repo::open(backend.clone(), Some(&password())).await {
        Err(Error::Corrupt { path, .. }) => assert!(path.starts_with("index/"), "{path}"),
        other => panic!("{other:?}"),
    }
    let options = OpenOptions {
        allow_damaged_index: true,
        ..OpenOptions::default()
    };
    let repo = Repo::open_with(backend, Some(&password()), options)
        .await
        .unwrap();
    assert_eq!(repo.index_problems().len(), 1);
    assert!(matches!(
        repo.read_blob(&ids[0]).await,
        Err(Error::MissingBlob { .. })
    ));
    let report = repo.verify(VerifyOptions::default()).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object.starts_with("index/")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object.contains(&m.id.to_hex())),
        "the backup whose objects the index listed is named: {:?}",
        report.problems
    );
}

#[tokio::test]
async fn corrupted_snapshot_is_detected_by_load_and_verify() {
    for enc in [true, false] {
        let (dir, backend, m, _) = local_repo_with_backup(enc).await;
        let file = files_under(dir.path(), "snapshots").remove(0);
        flip(&file, |len| len / 3);
        let repo = Repo::open(backend, open_pw(enc).as_ref()).await.unwrap();
        assert!(matches!(
            repo.load_snapshot(&m.id).await,
            Err(Error::Corrupt { .. })
        ));
        let report = repo.verify(VerifyOptions::default()).await.unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].object, format!("snapshots/{}", m.id));
    }
}

/// Flips one byte at many positions of every object and requires each flip to be caught
/// by open, verify --read-data, or a read.
#[tokio::test]
async fn every_flipped_byte_is_detected() {
    for enc in [true, false] {
        let store = Arc::new(InMemory::new());
        let backend = Backend::from_store(store.clone(), "", "memory://flip").unwrap();
        let repo = init(backend.clone(), enc).await;
        let datas: Vec<Vec<u8>> = (0..3).map(|i| noise(i, 500)).collect();
        let (m, ids) = backup(&repo, &datas).await;
        let original = snapshot(&store).await;
        let pw = open_pw(enc);
        for (name, bytes) in &original {
            // Key file metadata (created, hostname) is informational and unauthenticated.
            // The config of either kind of repository is covered by `config.check`.
            if name.starts_with("keys/") {
                continue;
            }
            let stride = (bytes.len() / 40).max(1);
            for i in (0..bytes.len()).step_by(stride) {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                let path = object_store::path::Path::from(name.as_str());
                store.put(&path, PutPayload::from(bad)).await.unwrap();
                let caught = match Repo::open(backend.clone(), pw.as_ref()).await {
                    Err(_) => true,
                    Ok(r) => {
                        let report = r.verify(READ_ALL).await.unwrap();
                        let mut reads_fail = r.load_snapshot(&m.id).await.is_err();
                        for id in &ids {
                            reads_fail |= r.read_blob(id).await.is_err();
                        }
                        !report.is_ok() && (reads_fail || name.starts_with("data/"))
                    }
                };
                assert!(
                    caught,
                    "flip of byte {i} in {name} (encrypted: {enc}) went unnoticed"
                );
                store
                    .put(&path, PutPayload::from(bytes.clone()))
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn crash_between_packs_and_manifest_leaves_no_backup() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://crash").unwrap();
    let repo = init(backend.clone(), true).await;
    let session = repo.session("backup").await.unwrap();
    for i in 0..40 {
        session.put_blob(&noise(i, 8000)).await.unwrap(); // > 64 KiB: packs get uploaded
    }
    assert!(session.bytes_stored() > 0);
    drop(session); // the process "dies": no index, no manifest, a stale lock
    let repo = Repo::open(backend, Some(&password())).await.unwrap();
    assert!(repo.list_backups().await.unwrap().is_empty());
    let report = repo.verify(READ_ALL).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(!report.unindexed_packs.is_empty());
    // The dead session's lock is from this live process, so it is fresh: prune waits.
    assert!(matches!(
        repo.prune(None, false).await,
        Err(Error::Locked { .. })
    ));
    for (path, _) in snapshot(&store)
        .await
        .iter()
        .filter(|(p, _)| p.starts_with("locks/"))
    {
        store
            .delete(&object_store::path::Path::from(path.as_str()))
            .await
            .unwrap();
    }
    let pruned = repo.prune(None, false).await.unwrap();
    assert_eq!(
        pruned.unindexed_packs_deleted.len(),
        report.unindexed_packs.len()
    );
    assert!(
        snapshot(&store)
            .await
            .keys()
            .all(|k| !k.starts_with("data/"))
    );
}

const CHILD_ENV: &str = "TAOSBACKUP_SINK_TEST_CHILD_REPO";

/// Runs in the child process: writes backups in a loop until killed (bounded to 2 min).
async fn child_writer(repo_dir: &str) {
    let backend = Backend::local(repo_dir).unwrap();
    let repo = Repo::open(backend, Some(&password())).await.unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(120) {
        let datas: Vec<Vec<u8>> = (0..30).map(|i| noise(n * 1000 + i, 6000)).collect();
        backup(&repo, &datas).await;
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_write_leaves_no_partial_backup() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_writer(&dir).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path()).unwrap();
    init(backend.clone(), true).await;
    for round in 0..3u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "integrity::kill_during_write_leaves_no_partial_backup",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let manifests = |d: &Path| files_under(d, "snapshots").len();
        let start_count = manifests(dir.path());
        let deadline = Instant::now() + Duration::from_secs(90);
        while manifests(dir.path()) < start_count + 2 {
            assert!(Instant::now() < deadline, "child wrote no backups");
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(7 * round + 3));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let repo = Repo::open(backend.clone(), Some(&password()))
            .await
            .unwrap();
        for id in repo.list_backups().await.unwrap() {
            let m = repo.load_snapshot(&id).await.unwrap();
            for blob in snapshot_blobs(&repo, &m).await {
                repo.read_blob(&blob).await.unwrap();
            }
        }
        let report = repo.verify(READ_ALL).await.unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
    }
    // The killed writer's lock is stale (its pid is gone), so prune may run.
    let repo = Repo::open(backend.clone(), Some(&password()))
        .await
        .unwrap();
    repo.prune(None, false).await.unwrap();
    let report = repo.verify(READ_ALL).await.unwrap();
    assert!(
        report.is_ok() && report.unindexed_packs.is_empty(),
        "{report:?}"
    );
}

/// A restore's reads of blobs written one after another share one ranged read of their pack
/// (`read_blob_ahead`): once the first is read, its neighbours come from memory even with
/// the pack gone, still verified; plain `read_blob` (what `verify` walks with) always reads
/// storage, and so fails then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbouring_blobs_are_read_with_one_ranged_read() {
    let (dir, backend, datas, ids, reader) = forty_neighbours().await;
    assert_eq!(reader.read_blob_ahead(&ids[0]).await.unwrap(), datas[0]);
    let data_dir = dir.path().join("repo").join("data");
    let mut removed = 0;
    for entry in walkdir(&data_dir) {
        std::fs::remove_file(entry).unwrap();
        removed += 1;
    }
    assert!(removed > 0, "no pack files under {}", data_dir.display());
    assert!(
        reader.read_blob(&ids[1]).await.is_err(),
        "read_blob reads storage"
    );
    for (id, data) in ids.iter().zip(&datas).skip(1) {
        assert_eq!(&reader.read_blob_ahead(id).await.unwrap(), data);
    }
    let fresh = Repo::open(backend, Some(&password())).await.unwrap();
    assert!(
        fresh.read_blob_ahead(&ids[1]).await.is_err(),
        "the pack is gone"
    );
}

/// Readers that miss in one pack at the same time (a restore's `--parallel` blocks) wait for
/// one stretch instead of each reading its own: 40 neighbours read 8 at a time cost one
/// ranged read.
#[tokio::test]
async fn concurrent_neighbours_share_one_ranged_read() {
    let (_dir, backend, datas, ids, reader) = forty_neighbours().await;
    let before = backend.stats().operations;
    let read: Vec<Vec<u8>> = futures::stream::iter(ids.iter().map(|id| reader.read_blob_ahead(id)))
        .buffered(8)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read, datas);
    assert_eq!(backend.stats().operations - before, 1);
}

/// A local repository holding 40 blobs of 1 KiB backed up one after another (one pack: 64 KiB
/// packs in these tests, well under the read-ahead), and a fresh handle to read them.
async fn forty_neighbours() -> (
    tempfile::TempDir,
    Backend,
    Vec<Vec<u8>>,
    Vec<taosbackup_core::BlobId>,
    Repo,
) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path().join("repo")).unwrap();
    let repo = init(backend.clone(), true).await;
    let datas: Vec<Vec<u8>> = (0..40).map(|i| noise(i, 1024)).collect();
    let (_, ids) = backup(&repo, &datas).await;
    let reader = Repo::open(backend.clone(), Some(&password()))
        .await
        .unwrap();
    (dir, backend, datas, ids, reader)
}

/// Every file under `dir`, recursively.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
