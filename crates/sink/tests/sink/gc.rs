//! Garbage collection never deletes what a kept backup needs (property test).

use std::collections::HashMap;

use proptest::prelude::*;
use taosbackup_core::{BackupId, BlobId};
use taosbackup_sink::{Backend, Forget, RetentionPolicy, VerifyOptions};

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    /// A backup of these blob seeds (an incremental names the previous backup as parent).
    Backup { full: bool, seeds: Vec<u8> },
    /// Forget by policy: keep the newest `keep` backups (and the pinned ones).
    Retain { keep: usize },
    /// Forget the backup at this position (any of them: snapshots are self-contained).
    ForgetOne { at: usize },
    /// Pin or unpin the backup at this position.
    Pin { at: usize, pin: bool },
    /// Garbage-collect (`dry` first: it must predict the real run's figures).
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop::collection::vec(0u8..24, 1..8)).prop_map(|(full, seeds)| Op::Backup { full, seeds }),
        1 => (1usize..3).prop_map(|keep| Op::Retain { keep }),
        2 => (0usize..8).prop_map(|at| Op::ForgetOne { at }),
        1 => (0usize..8, any::<bool>()).prop_map(|(at, pin)| Op::Pin { at, pin }),
        2 => Just(Op::Prune),
    ]
}

async fn run(ops: Vec<Op>) {
    let repo = init(Backend::memory(), true).await;
    // Model: backup id → seeds, in creation order; pins.
    let mut backups: Vec<(BackupId, Vec<u8>)> = Vec::new();
    let mut forgotten: Vec<(BackupId, Vec<u8>)> = Vec::new();
    let mut pins: HashMap<BackupId, ()> = HashMap::new();
    for op in ops {
        match op {
            Op::Backup { full, seeds } => {
                let session = repo.session("backup").await.unwrap();
                let mut ids: Vec<BlobId> = Vec::new();
                for s in &seeds {
                    ids.push(
                        session
                            .put_blob(&noise(u64::from(*s), 20_000))
                            .await
                            .unwrap(),
                    );
                }
                let id = random_backup_id();
                let parent = backups.last().map(|b| b.0).filter(|_| !full);
                let snap = make_snapshot(&session, id, parent, parent.unwrap_or(id), &ids).await;
                session.commit(&snap).await.unwrap();
                session.finish().await.unwrap();
                backups.push((id, seeds));
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Op::Retain { keep } => {
                let policy = RetentionPolicy {
                    keep_last: Some(keep),
                    ..RetentionPolicy::default()
                };
                let report = repo.forget(&Forget::Policy(policy), false).await.unwrap();
                let gone: HashMap<BackupId, ()> =
                    report.forgotten.iter().map(|id| (*id, ())).collect();
                let n = backups.len();
                for (i, (id, _)) in backups.iter().enumerate() {
                    let expect_kept = i + keep >= n || pins.contains_key(id);
                    assert_eq!(!gone.contains_key(id), expect_kept, "backup {i} of {n}");
                }
                forgotten.extend(backups.iter().filter(|b| gone.contains_key(&b.0)).cloned());
                backups.retain(|b| !gone.contains_key(&b.0));
            }
            Op::ForgetOne { at } => {
                let Some((id, _)) = backups.get(at % backups.len().max(1)).cloned() else {
                    continue;
                };
                let r = repo.forget(&Forget::Ids(vec![id]), false).await;
                if pins.contains_key(&id) {
                    assert!(r.unwrap_err().to_string().contains("unpin"));
                    continue;
                }
                r.unwrap();
                forgotten.extend(backups.iter().filter(|b| b.0 == id).cloned());
                backups.retain(|b| b.0 != id);
            }
            Op::Pin { at, pin } => {
                let Some((id, _)) = backups.get(at % backups.len().max(1)).cloned() else {
                    continue;
                };
                if pin {
                    repo.pin(&id).await.unwrap();
                    pins.insert(id, ());
                } else {
                    repo.unpin(&id).await.unwrap();
                    pins.remove(&id);
                }
            }
            Op::Prune => {
                let dry = repo.prune(None, true).await.unwrap();
                let real = repo.prune(None, false).await.unwrap();
                assert_eq!(dry.blobs_removed, real.blobs_removed);
                assert_eq!(dry.bytes_freed, real.bytes_freed, "the dry run predicts");
                for (_, seeds) in &backups {
                    for s in seeds {
                        let data = noise(u64::from(*s), 20_000);
                        let id = repo.blob_id(&data);
                        assert_eq!(
                            repo.read_blob(&id).await.unwrap(),
                            data,
                            "prune lost a kept blob"
                        );
                    }
                }
                // The data only forgotten backups used is gone.
                for (_, seeds) in &forgotten {
                    for s in seeds {
                        if backups.iter().any(|b| b.1.contains(s)) {
                            continue;
                        }
                        let id = repo.blob_id(&noise(u64::from(*s), 20_000));
                        assert!(!repo.has_blob(&id), "seed {s} outlived its backups");
                    }
                }
            }
        }
    }
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, backups.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn gc_never_deletes_a_blob_a_kept_backup_needs(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}

/// Regression: a handle opened before a prune must not deduplicate against blobs the prune
/// deleted (its session reloads the index).
#[tokio::test]
async fn stale_handle_does_not_reference_pruned_blobs() {
    let backend = Backend::memory();
    let repo = init(backend.clone(), true).await;
    let data = noise(1, 10_000);
    let (m, _) = backup(&repo, std::slice::from_ref(&data)).await;
    let old_handle = taosbackup_sink::Repo::open(backend.clone(), Some(&password()))
        .await
        .unwrap();
    repo.forget(&Forget::Ids(vec![m.id]), false).await.unwrap();
    assert!(
        repo.list_backups().await.unwrap().is_empty(),
        "{m:?} should be forgotten"
    );
    repo.prune(None, false).await.unwrap();
    let (_, ids) = backup(&old_handle, std::slice::from_ref(&data)).await;
    assert_eq!(old_handle.read_blob(&ids[0]).await.unwrap(), data);
    let report = old_handle
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
