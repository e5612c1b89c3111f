//! Garbage collection never deletes what a kept backup needs (property test).

use std::collections::HashMap;

use proptest::prelude::*;
use taosbackup_core::{BackupId, BlobId};
use taosbackup_sink::{Backend, RetentionPolicy, VerifyOptions};

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    /// A backup of these blob seeds; a full one starts a new chain.
    Backup { full: bool, seeds: Vec<u8> },
    /// Forget all but the newest `keep` chains.
    Forget { keep: usize, pin_oldest: bool },
    /// Garbage-collect.
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop::collection::vec(0u8..24, 1..8)).prop_map(|(full, seeds)| Op::Backup { full, seeds }),
        2 => (1usize..3, any::<bool>()).prop_map(|(keep, pin_oldest)| Op::Forget { keep, pin_oldest }),
        2 => Just(Op::Prune),
    ]
}

async fn run(ops: Vec<Op>) {
    let repo = init(Backend::memory(), true).await;
    // Model: backup id → (chain, seeds), in creation order.
    let mut backups: Vec<(BackupId, BackupId, Vec<u8>)> = Vec::new();
    let mut tip: Option<(BackupId, BackupId)> = None; // (last id, chain)
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
                let (parent, chain) = match (full, tip) {
                    (false, Some((last, chain))) if backups.iter().any(|b| b.0 == last) => {
                        (Some(last), chain)
                    }
                    _ => (None, id),
                };
                session
                    .commit(&manifest(id, parent, chain, &ids))
                    .await
                    .unwrap();
                session.finish().await.unwrap();
                backups.push((id, chain, seeds));
                tip = Some((id, chain));
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Op::Forget { keep, pin_oldest } => {
                let mut policy = RetentionPolicy {
                    keep_last_chains: Some(keep),
                    ..RetentionPolicy::default()
                };
                if pin_oldest {
                    if let Some(b) = backups.first() {
                        policy.pinned.insert(b.0);
                    }
                }
                let report = repo.forget(&policy, false).await.unwrap();
                // Chains go whole: no kept backup's chain lost its full.
                let gone: HashMap<BackupId, ()> =
                    report.forgotten.iter().map(|id| (*id, ())).collect();
                for (id, chain, _) in &backups {
                    if !gone.contains_key(id) {
                        assert!(
                            !gone.contains_key(chain),
                            "kept {id} but forgot its full {chain}"
                        );
                    }
                }
                backups.retain(|b| !gone.contains_key(&b.0));
            }
            Op::Prune => {
                repo.prune(false).await.unwrap();
                for (_, _, seeds) in &backups {
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
    assert_eq!(report.manifests, backups.len());
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
    repo.forget(
        &RetentionPolicy {
            keep_within: Some(std::time::Duration::ZERO),
            ..Default::default()
        },
        false,
    )
    .await
    .unwrap();
    assert!(
        repo.list_backups().await.unwrap().is_empty(),
        "{m:?} should be forgotten"
    );
    repo.prune(false).await.unwrap();
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
