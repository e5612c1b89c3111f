//! Storage that refuses deletes: moto with IAM enforced and credentials without
//! `s3:DeleteObject` (moto's server checks IAM policies once `INITIAL_NO_AUTH_ACTION_COUNT`
//! requests have passed: a real refusal, 403 AccessDenied, not a stand-in). Backups work
//! (their locks, which cannot be deleted, are left stale); forget and prune refuse before
//! changing anything and say what they would delete.

use taosbackup_sink::{Error, Forget, Repo, RetentionPolicy, VerifyOptions};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delete_permission_backups_work_and_prune_explains() {
    let (server, key, secret) = StorageServer::s3_without_delete("immutable");
    let creds = [
        ("aws_access_key_id", key.as_str()),
        ("aws_secret_access_key", secret.as_str()),
    ];
    let backend = remote(&server, &server.endpoint(), "repo", &creds);
    let repo = init(backend.clone(), true).await;
    // Two chains; each backup's lock release is refused and left stale instead.
    let (first, _) = backup(&repo, &[noise(1, 12_000), noise(2, 12_000)]).await;
    let (second, ids) = backup(&repo, &[noise(3, 12_000), noise(2, 12_000)]).await;
    // An interrupted backup's leftovers: a pack no index lists.
    let session = repo.session("backup").await.unwrap();
    for i in 10..20 {
        session.put_blob(&noise(i, 12_000)).await.unwrap();
    }
    session.flush().await.unwrap();
    session.finish().await.unwrap();

    let before = repo.verify(VerifyOptions::default()).await.unwrap();
    assert!(before.is_ok(), "{:?}", before.problems);
    assert!(!before.unindexed_packs.is_empty());

    // forget: refused before deleting any snapshot, naming the backups.
    let keep = Forget::Policy(RetentionPolicy {
        keep_chains: Some(1),
        ..RetentionPolicy::default()
    });
    let dry = repo.forget(&keep, true).await.unwrap();
    assert_eq!(dry.forgotten, vec![first.id]);
    let err = repo.forget(&keep, false).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::DeleteDenied { .. }), "{text}");
    assert!(text.contains(&first.id.to_string()), "{text}");
    println!("forget without delete permission: {text}");
    let mut listed = repo.list_backups().await.unwrap();
    listed.sort();
    let mut both = vec![first.id, second.id];
    both.sort();
    assert_eq!(listed, both, "forget changed nothing");

    // prune: the dry run reports, the real run refuses before writing anything.
    let plan = repo.prune(None, true).await.unwrap();
    assert!(!plan.unindexed_packs_deleted.is_empty(), "{plan:?}");
    let err = repo.prune(None, false).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::DeleteDenied { .. }), "{text}");
    assert!(text.contains(&plan.unindexed_packs_deleted[0]), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    println!("prune without delete permission: {text}");
    let after = repo.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(
        after.index_files, before.index_files,
        "prune wrote no index"
    );
    assert_eq!(
        after.unindexed_packs, before.unindexed_packs,
        "prune wrote no pack"
    );

    // Every lock was left stale: a backup and an exclusive operation still run.
    let (third, _) = backup(&repo, &[noise(4, 12_000)]).await;
    let repo = Repo::open(backend, Some(&password())).await.unwrap();
    assert_eq!(repo.list_backups().await.unwrap().len(), 3);
    assert_eq!(repo.load_snapshot(&third.id).await.unwrap(), third);
    for id in &ids {
        repo.read_blob(id).await.unwrap();
    }
    assert!(
        repo.prune(None, true).await.is_ok(),
        "dry runs take the exclusive lock"
    );
}
