//! Locks: shared vs exclusive, holders named, stale locks.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use taosbackup_sink::{Backend, Error, LockMode, OpenOptions, Repo};

use crate::common::*;

fn foreign_lock(exclusive: bool, age: chrono::Duration) -> Vec<u8> {
    let t = (Utc::now() - age).to_rfc3339();
    format!(
        r#"{{"version":1,"exclusive":{exclusive},"hostname":"other-host","pid":4242,"command":"prune","created":"{t}","refreshed":"{t}"}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn concurrent_writers_are_blocked_by_locks() {
    let repo = init(Backend::memory(), true).await;
    // Shared locks coexist: two backups at once.
    let a = repo.session("backup").await.unwrap();
    let b = repo.session("restore").await.unwrap();
    // Exclusive operations are refused while they run, naming a holder.
    for result in [
        repo.prune(None, false).await.map(|_| ()),
        repo.lock(LockMode::Exclusive, "prune").await.map(|_| ()),
    ] {
        match result {
            Err(e @ Error::Locked { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("pid {}", std::process::id())),
                    "{text}"
                );
                assert!(e.is_retryable());
            }
            other => panic!("exclusive lock granted under shared locks: {other:?}"),
        }
    }
    a.finish().await.unwrap();
    b.finish().await.unwrap();
    // An exclusive holder blocks backups and other exclusive holders.
    let ex = repo.lock(LockMode::Exclusive, "prune").await.unwrap();
    match repo.session("backup").await {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains("exclusive lock of `prune`"), "{holder}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        repo.lock(LockMode::Exclusive, "prune").await,
        Err(Error::Locked { .. })
    ));
    ex.release().await.unwrap();
    repo.session("backup")
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
}

#[tokio::test]
async fn foreign_locks_block_until_stale() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://locks").unwrap();
    init(backend.clone(), false).await;
    let options = OpenOptions {
        lock_stale_after: Duration::from_secs(60),
        ..OpenOptions::default()
    };
    let repo = Repo::open_with(backend.clone(), None, options)
        .await
        .unwrap();
    let path = object_store::path::Path::from("locks/0123");
    store
        .put(
            &path,
            PutPayload::from(foreign_lock(true, chrono::Duration::seconds(1))),
        )
        .await
        .unwrap();
    match repo.session("backup").await {
        Err(Error::Locked { holder, path, .. }) => {
            assert!(
                holder.contains("other-host") && holder.contains("4242"),
                "{holder}"
            );
            assert_eq!(path, "locks/0123");
        }
        other => panic!("{other:?}"),
    }
    assert!(repo.remove_stale_locks().await.unwrap().is_empty());
    store
        .put(
            &path,
            PutPayload::from(foreign_lock(true, chrono::Duration::minutes(5))),
        )
        .await
        .unwrap();
    repo.session("backup")
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(
        repo.remove_stale_locks().await.unwrap(),
        vec!["locks/0123".to_owned()]
    );
    // A hostile lock object is an error, not a panic.
    store
        .put(&path, PutPayload::from(b"{\"version\":99}".to_vec()))
        .await
        .unwrap();
    assert!(repo.session("backup").await.is_err());
}

#[tokio::test]
async fn held_locks_are_refreshed() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://refresh").unwrap();
    init(backend.clone(), false).await;
    let options = OpenOptions {
        lock_stale_after: Duration::from_millis(300),
        ..OpenOptions::default()
    };
    let repo = Repo::open_with(backend.clone(), None, options.clone())
        .await
        .unwrap();
    let session = repo.session("backup").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Still fresh for another process thanks to the refresher.
    let other = Repo::open_with(backend, None, options).await.unwrap();
    assert!(matches!(
        other.lock(LockMode::Exclusive, "prune").await,
        Err(Error::Locked { .. })
    ));
    session.finish().await.unwrap();
    other
        .lock(LockMode::Exclusive, "prune")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// Scoped shared locks: the same scope conflicts (two backups of one database), other
/// scopes and unscoped shared locks do not; stale scoped locks do not block.
#[tokio::test]
async fn scoped_shared_locks_exclude_the_same_scope_only() {
    let store = Arc::new(InMemory::new());
    let backend = Backend::from_store(store.clone(), "", "memory://scoped").unwrap();
    init(backend.clone(), false).await;
    let repo = Repo::open(backend.clone(), None).await.unwrap();
    let power = repo
        .session_scoped("backup", Some("database power"))
        .await
        .unwrap();
    match repo.session_scoped("backup", Some("database power")).await {
        Err(e @ Error::Locked { .. }) => {
            let text = e.to_string();
            assert!(text.contains("`backup` for database power"), "{text}");
            assert!(
                text.contains(&format!("pid {}", std::process::id())),
                "{text}"
            );
            assert!(e.is_retryable());
        }
        other => panic!("a second backup of one database was let in: {other:?}"),
    }
    // The refused taker left no lock behind: only the holder's remains.
    let locks: Vec<_> = store
        .list(Some(&object_store::path::Path::from("locks")))
        .collect::<Vec<_>>()
        .await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    // Another database, and unscoped shared holders (restore, verify), run alongside.
    let water = repo
        .session_scoped("backup", Some("database water"))
        .await
        .unwrap();
    let restore = repo.session("restore").await.unwrap();
    // Exclusive locks still conflict with scoped ones.
    assert!(matches!(
        repo.lock(LockMode::Exclusive, "prune").await,
        Err(Error::Locked { .. })
    ));
    for s in [power, water, restore] {
        s.finish().await.unwrap();
    }
    repo.session_scoped("backup", Some("database power"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();

    // A backup lock of another host for database power, last refreshed `age` ago.
    let foreign_backup = |name: &str, age: chrono::Duration| {
        let t = (Utc::now() - age).to_rfc3339();
        let body = format!(
            r#"{{"version":1,"exclusive":false,"hostname":"other-host","pid":4242,"command":"backup","created":"{t}","refreshed":"{t}","scope":"database power"}}"#
        );
        let store = store.clone();
        let path = object_store::path::Path::from(format!("locks/{name}"));
        async move {
            store
                .put(&path, PutPayload::from(body.into_bytes()))
                .await
                .unwrap()
        }
    };
    // A stale scoped lock of a vanished process does not block.
    foreign_backup("stale", chrono::Duration::hours(2)).await;
    repo.session_scoped("backup", Some("database power"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    // A fresh one of another host does, and is named.
    foreign_backup("fresh", chrono::Duration::zero()).await;
    match repo.session_scoped("backup", Some("database power")).await {
        Err(Error::Locked { holder, path, .. }) => {
            assert!(
                holder.contains("other-host") && holder.contains("4242"),
                "{holder}"
            );
            assert_eq!(path, "locks/fresh");
        }
        other => panic!("{other:?}"),
    }
}
