//! Compression levels: the snapshot tree's objects are stored at their own level
//! (`TREE_OBJECT_LEVEL`), with the ids plain blobs of the same bytes get.

use taosbackup_sink::{Backend, Repo};

use crate::common::*;

/// Shard-like JSON: table entries whose blocks name blobs by hex id.
fn tree_text() -> Vec<u8> {
    let tables: Vec<String> = (0..68u64)
        .map(|t| {
            let hex: String = (0..4u64)
                .map(|k| format!("{:016x}", (t * 4 + k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .collect();
            format!(
                "{{\"def\":{{\"name\":\"d{t}\",\"kind\":\"child\",\"super_table\":\"meters\"}},\
                 \"blocks\":{{\"20393\":{{\"blob\":\"{hex}\",\"rows\":1000,\"min_ts\":1,\"max_ts\":2}}}}}}"
            )
        })
        .collect();
    format!(
        "{{\"shard\":{{\"version\":2,\"tables\":[{}]}}}}",
        tables.join(",")
    )
    .into_bytes()
}

#[tokio::test]
async fn tree_objects_keep_the_ids_of_plain_blobs_at_their_own_level() {
    let text = tree_text();
    let mut stored = Vec::new();
    for as_tree_object in [false, true] {
        let backend = Backend::memory();
        let repo = init(backend.clone(), true).await;
        let session = repo.session("backup").await.unwrap();
        let id = if as_tree_object {
            session.put_tree_object(&text).await.unwrap()
        } else {
            session.put_blob(&text).await.unwrap()
        };
        assert_eq!(
            id,
            repo.blob_id(&text),
            "the id is the bytes' whatever the level"
        );
        stored.push(session.blob_bytes());
        assert_eq!(session.get_blob(&id).await.unwrap(), text, "pending");
        let b = random_backup_id();
        let s = make_snapshot(&session, b, None, b, &[id]).await;
        session.commit(&s).await.unwrap();
        session.finish().await.unwrap();
        let fresh = Repo::open(backend, Some(&password())).await.unwrap();
        assert_eq!(fresh.read_blob(&id).await.unwrap(), text);
        assert_verifies_whole(&fresh).await;
    }
    assert_ne!(
        stored[0], stored[1],
        "the repository's level (4) and the tree objects' (1) store other bytes"
    );
}
