//! One backend test suite, run against memory, local disk, S3 (moto), Azure (Azurite) and
//! GCS (fake-gcs-server).

use std::time::Duration;

use taosbackup_core::{Repository, RepositoryErrorKind};
use taosbackup_sink::{
    Backend, Error, Forget, KdfParams, LockMode, Password, Repo, RetentionPolicy, VerifyOptions,
};

use crate::common::*;

/// Runs every repository operation against an empty `backend`.
async fn backend_suite(backend: Backend) {
    let pw = password();
    let repo = init(backend.clone(), true).await;
    assert!(matches!(
        Repo::init(backend.clone(), fast_options(true), Some(&pw)).await,
        Err(Error::AlreadyInitialized { .. })
    ));

    // Store: dedup, multi-pack, a multipart-sized blob, reads before commit.
    let session = repo.session("backup").await.unwrap();
    let mut datas: Vec<Vec<u8>> = (0..40u64)
        .map(|i| noise(i, 5_000 + (i as usize) * 700))
        .collect();
    datas.push(vec![0u8; 300_000]); // compressible
    datas.push(noise(99, 9 * 1024 * 1024)); // > multipart threshold
    let mut ids = Vec::new();
    for d in &datas {
        ids.push(session.store_blob(d).await.unwrap());
    }
    let stored = session.bytes_stored();
    assert_eq!(
        session.store_blob(&datas[3]).await.unwrap(),
        ids[3],
        "same data, same id"
    );
    assert_eq!(session.bytes_stored(), stored, "dedup writes nothing");
    for (d, id) in datas.iter().zip(&ids) {
        assert_eq!(
            &session.read_blob(id).await.unwrap(),
            d,
            "read before commit"
        );
    }
    let full_id = random_backup_id();
    let full = make_snapshot(&session, full_id, None, full_id, &ids).await;
    session.commit_snapshot(&full).await.unwrap();
    let dup = session.commit_snapshot(&full).await.unwrap_err();
    assert_eq!(dup.kind(), RepositoryErrorKind::AlreadyExists);
    let bogus_blob = repo.blob_id(b"never stored");
    let other = random_backup_id();
    let mut bogus = full.clone();
    (bogus.id, bogus.chain, bogus.tree) = (other, other, bogus_blob);
    let err = session.commit_snapshot(&bogus).await.unwrap_err();
    assert_eq!(err.kind(), RepositoryErrorKind::InvalidInput);
    session.finish().await.unwrap();

    // The core trait is object safe: the engine can hold a `dyn Repository`.
    let restore = repo.session("restore").await.unwrap();
    let dyn_repo: &dyn Repository = &restore;
    let listed: Vec<_> = dyn_repo
        .list_snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![full_id]);
    assert_eq!(dyn_repo.read_blob(&ids[1]).await.unwrap(), datas[1]);
    restore.finish().await.unwrap();

    // Reopen: list, load, read back.
    let repo = Repo::open(backend.clone(), Some(&pw)).await.unwrap();
    assert_eq!(repo.list_backups().await.unwrap(), vec![full_id]);
    assert_eq!(repo.load_snapshot(&full_id).await.unwrap(), full);
    for (d, id) in datas.iter().zip(&ids) {
        assert_eq!(&repo.read_blob(id).await.unwrap(), d);
    }

    // Incremental on top, reusing most blobs.
    let session = repo.session("backup").await.unwrap();
    let new_blob = session.store_blob(b"changed block").await.unwrap();
    let mut inc_ids = ids[..10].to_vec();
    inc_ids.push(new_blob);
    let inc_id = random_backup_id();
    let inc = make_snapshot(&session, inc_id, Some(full_id), full_id, &inc_ids).await;
    session.commit_snapshot(&inc).await.unwrap();
    assert_eq!(
        session.load_snapshot(&inc_id).await.unwrap().parent,
        Some(full_id)
    );
    session.finish().await.unwrap();

    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 2);
    // Data blobs, plus the tree objects: full (shard, tree node, tree root, catalog),
    // incremental (its own shard, node and root; the same catalog).
    assert_eq!(report.tree_objects, 7);
    assert_eq!(report.blobs_read, ids.len() + 1 + 7);
    assert!(report.unindexed_packs.is_empty());

    // Keys: add, open with it, change password, remove.
    let pw2 = Password::new("second").unwrap();
    let key2 = repo
        .add_key(&pw2, KdfParams::insecure_for_tests())
        .await
        .unwrap();
    let repo2 = Repo::open(backend.clone(), Some(&pw2)).await.unwrap();
    assert!(
        repo2
            .list_keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.id == key2 && k.current)
    );
    assert!(matches!(
        repo2.remove_key(&key2).await,
        Err(Error::KeyRefused { .. })
    ));
    let pw3 = Password::new("third").unwrap();
    repo2
        .change_password(&pw3, KdfParams::insecure_for_tests())
        .await
        .unwrap();
    assert!(matches!(
        Repo::open(backend.clone(), Some(&pw2)).await,
        Err(Error::WrongPassword { tried: 2 })
    ));
    let repo3 = Repo::open(backend.clone(), Some(&pw3)).await.unwrap();
    let first_key = repo3
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| !k.current)
        .unwrap();
    repo3.remove_key(&first_key.id).await.unwrap();
    assert!(matches!(
        Repo::open(backend.clone(), Some(&pw)).await,
        Err(Error::WrongPassword { tried: 1 })
    ));
    let repo = repo3;

    // Locks: a shared session blocks prune.
    let holder = repo.session("backup").await.unwrap();
    match repo.prune(None, false).await {
        Err(Error::Locked { holder, .. }) => assert!(holder.contains("`backup`"), "{holder}"),
        other => panic!("prune ran under a backup lock: {other:?}"),
    }
    holder.finish().await.unwrap();

    // A second chain, then keep only the newest chain and prune.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, second_ids) = backup(&repo, &[b"x".to_vec(), datas[0].clone()]).await;
    let policy = RetentionPolicy {
        keep_chains: Some(1),
        ..RetentionPolicy::default()
    };
    let policy = Forget::Policy(policy);
    let dry = repo.forget(&policy, true).await.unwrap();
    assert_eq!(dry.forgotten.len(), 2);
    assert_eq!(
        repo.list_backups().await.unwrap().len(),
        3,
        "dry run deletes nothing"
    );
    let done = repo.forget(&policy, false).await.unwrap();
    assert_eq!(
        done.kept.keys().copied().collect::<Vec<_>>(),
        vec![second.id]
    );
    let plan = repo.prune(None, true).await.unwrap();
    assert!(plan.blobs_removed > 0);
    let pruned = repo.prune(None, false).await.unwrap();
    assert_eq!(pruned.blobs_removed, plan.blobs_removed);
    let repo = Repo::open(backend.clone(), Some(&pw3)).await.unwrap();
    for id in &second_ids {
        repo.read_blob(id).await.unwrap();
    }
    assert!(matches!(
        repo.read_blob(&ids[5]).await,
        Err(Error::MissingBlob { .. })
    ));
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Its two data blobs and its four tree objects (shard, tree node, tree root, catalog).
    assert_eq!(report.tree_objects, 4);
    assert_eq!(report.blobs_read, 2 + 4);
    assert!(
        repo.lock(LockMode::Exclusive, "check")
            .await
            .unwrap()
            .release()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn suite_memory() {
    backend_suite(Backend::memory()).await;
}

#[tokio::test]
async fn suite_local() {
    let dir = tempfile::tempdir().unwrap();
    backend_suite(Backend::local(dir.path().join("repo")).unwrap()).await;
    backend_suite(
        Backend::from_url(&format!("file://{}", dir.path().join("repo2").display())).unwrap(),
    )
    .await;
}

/// The suite on one emulated cloud service, through the production backend builder.
async fn suite_on(service: Service) {
    let server = StorageServer::start(service, "taosbackup-test");
    backend_suite(remote(&server, &server.endpoint(), "some/prefix", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_s3_moto() {
    suite_on(Service::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_azure_azurite() {
    suite_on(Service::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_gcs_fake_gcs_server() {
    suite_on(Service::Gcs).await;
}

#[test]
fn urls_pick_backends() {
    use taosbackup_sink::Scheme;
    assert_eq!(Scheme::of("/var/backups").unwrap(), Scheme::Local);
    assert_eq!(Scheme::of("file:///x").unwrap(), Scheme::Local);
    assert_eq!(Scheme::of("s3://b/p").unwrap(), Scheme::S3);
    assert_eq!(Scheme::of("gs://b/p").unwrap(), Scheme::Gcs);
    assert_eq!(Scheme::of("az://c/p").unwrap(), Scheme::Azure);
    assert_eq!(Scheme::of("memory://").unwrap(), Scheme::Memory);
    assert!(matches!(
        Scheme::of("ftp://x"),
        Err(Error::InvalidUrl { .. })
    ));
    // gs and az backends are built by object_store's builders from URL + options.
    let err = Backend::from_url_with_options(
        "gs://bucket/prefix",
        [("google_service_account", "/nonexistent/sa.json")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("gs://bucket/prefix"), "{err}");
    let az = Backend::from_url_with_options(
        "az://container/prefix",
        [
            ("azure_storage_account_name", "acct"),
            ("azure_storage_account_key", "a2V5"),
        ],
    )
    .unwrap();
    assert_eq!(az.location(), "az://container/prefix");
    assert!(Backend::from_url_with_options("s3://b/p", [("no_such_key", "1")]).is_err());
    assert!(Backend::from_url_with_options("/tmp/x", [("aws_region", "x")]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_share_a_session() {
    let backend = Backend::memory();
    let repo = init(backend.clone(), true).await;
    let session = std::sync::Arc::new(repo.session("backup").await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                // Overlapping seeds across tasks: concurrent dedup of equal blobs.
                ids.push(session.put_blob(&noise(t * 10 + i, 12_000)).await.unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let id = random_backup_id();
    session
        .commit(&make_snapshot(&session, id, None, id, &ids).await)
        .await
        .unwrap();
    std::sync::Arc::into_inner(session)
        .unwrap()
        .finish()
        .await
        .unwrap();
    let repo = Repo::open(backend, Some(&password())).await.unwrap();
    for (n, blob) in ids.iter().enumerate() {
        let (t, i) = (n as u64 / 25, n as u64 % 25);
        assert_eq!(
            repo.read_blob(blob).await.unwrap(),
            noise(t * 10 + i, 12_000)
        );
    }
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
