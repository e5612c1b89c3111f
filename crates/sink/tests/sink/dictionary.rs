//! Shared zstd dictionaries (docs/format.md §5.3): a blob compressed with one is readable on
//! its own (pending, committed, through a freshly opened handle), `verify` decodes it, and
//! `prune` keeps the dictionary while a snapshot's catalog lists it.

use taosbackup_core::{
    BackupSnapshot, BlobId, CatalogRoot, DatabaseDef, Precision, SNAPSHOT_VERSION, TreeObject,
};
use taosbackup_sink::{Backend, Forget, Repo, Session};

use crate::common::*;

/// Meters-like CSV rows: alike across blocks, so a dictionary pays.
fn block(i: u64) -> Vec<u8> {
    (0..200u64)
        .map(|k| {
            let h = (i * 7919 + k * 104_729) % 97;
            format!(
                "{},{}.{:02},{},ok\n",
                1_761_955_200_000 + k * 60_000,
                10 + h % 3,
                h,
                218 + h % 5
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// A snapshot naming `blobs` whose catalog lists `dictionaries`.
async fn snapshot(
    session: &Session,
    blobs: &[BlobId],
    dictionaries: Vec<BlobId>,
) -> BackupSnapshot {
    let id = random_backup_id();
    let mut s = make_snapshot(session, id, None, id, blobs).await;
    let catalog = TreeObject::Catalog(CatalogRoot {
        version: SNAPSHOT_VERSION,
        database: DatabaseDef {
            name: "power".into(),
            precision: Precision::Ms,
            ddl: "CREATE DATABASE `power` PRECISION 'ms'".into(),
        },
        super_tables: vec![],
        skipped: vec![],
        dictionaries,
    });
    s.catalog = session.put_blob(&catalog.encode()).await.unwrap();
    s
}

#[tokio::test]
async fn dictionary_blobs_read_alone_verify_and_keep_their_dictionary_through_prune() {
    for encryption in [false, true] {
        let backend = Backend::memory();
        let repo = init(backend.clone(), encryption).await;
        let session = repo.session("backup").await.unwrap();
        let samples: Vec<Vec<u8>> = (0..64).map(block).collect();
        let samples: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
        let dict = session
            .train_dictionary(&samples)
            .await
            .unwrap()
            .expect("64 alike samples train a dictionary");
        let data = block(1000);
        let b0 = session.blob_bytes();
        let with = session
            .put_blob_with_dictionary(&data, &dict)
            .await
            .unwrap();
        let b1 = session.blob_bytes();
        let plain = session.put_blob(&data).await.unwrap();
        let b2 = session.blob_bytes();
        assert_ne!(with, plain, "the id depends on the dictionary");
        assert!(
            b1 - b0 < b2 - b1,
            "the dictionary pays: {} vs {}",
            b1 - b0,
            b2 - b1
        );
        assert_eq!(session.get_blob(&with).await.unwrap(), data, "pending");
        let a = snapshot(&session, &[with], vec![dict]).await;
        session.commit(&a).await.unwrap();
        session.finish().await.unwrap();

        // A second backup naming the same blob, then the first is forgotten and pruned:
        // only the second catalog keeps the dictionary reachable.
        let session = repo.session("backup").await.unwrap();
        let again = session
            .put_blob_with_dictionary(&data, &dict)
            .await
            .unwrap();
        assert_eq!(again, with, "deduplicated");
        let b = snapshot(&session, &[with], vec![dict]).await;
        session.commit(&b).await.unwrap();
        session.finish().await.unwrap();
        repo.forget(&Forget::Ids(vec![a.id]), false).await.unwrap();
        repo.prune(None, false).await.unwrap();

        let fresh = Repo::open(backend, encryption.then(password).as_ref())
            .await
            .unwrap();
        assert!(fresh.has_blob(&dict), "the catalog keeps the dictionary");
        assert!(!fresh.has_blob(&plain), "no snapshot names the plain copy");
        assert_eq!(fresh.read_blob(&with).await.unwrap(), data);
        assert_verifies_whole(&fresh).await;
    }
}
