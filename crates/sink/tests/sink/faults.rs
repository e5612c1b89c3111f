//! A fault-injecting object store wrapper, and what failures leave behind.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use taosbackup_core::{Repository, RepositoryErrorKind};
use taosbackup_sink::{Backend, Error, Repo, VerifyOptions};

use crate::common::*;

/// Fails every write under a chosen prefix (or, for a prefix ending in `$`, to exactly that
/// name); delegates everything else.
#[derive(Debug)]
pub(crate) struct Faulty {
    inner: InMemory,
    fail_writes_under: Mutex<Option<String>>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    pub(crate) fn new() -> Faulty {
        Faulty {
            inner: InMemory::new(),
            fail_writes_under: Mutex::new(None),
        }
    }

    fn check(&self, location: &Path) -> object_store::Result<()> {
        let prefix = self.fail_writes_under.lock().unwrap().clone();
        let hit = |p: &str| match p.strip_suffix('$') {
            Some(exact) => location.as_ref() == exact,
            None => location.as_ref().starts_with(p),
        };
        match prefix {
            Some(p) if hit(&p) => Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected failure writing {location}").into(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn fail(&self, prefix: Option<&str>) {
        *self.fail_writes_under.lock().unwrap() = prefix.map(str::to_owned);
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn failed_uploads_leave_no_backup_and_a_sound_repository() {
    let store = Arc::new(Faulty {
        inner: InMemory::new(),
        fail_writes_under: Mutex::new(None),
    });
    let backend = Backend::from_store(store.clone(), "", "faulty://").unwrap();
    let repo = init(backend.clone(), true).await;

    // Pack uploads fail: the session reports it and cannot commit.
    store.fail(Some("data/"));
    let session = repo.session("backup").await.unwrap();
    let mut ids = Vec::new();
    let mut first_error = None;
    for i in 0..30 {
        match session.put_blob(&noise(i, 10_000)).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let id = random_backup_id();
    let commit = session
        .commit(&make_snapshot(&session, id, None, id, &ids).await)
        .await;
    assert!(
        first_error.is_some() || commit.is_err(),
        "a failed pack upload went unnoticed"
    );
    assert!(
        matches!(commit, Err(Error::SessionFailed { .. })),
        "{commit:?}"
    );
    session.finish().await.unwrap();
    assert!(repo.list_backups().await.unwrap().is_empty());

    // The snapshot write fails: a retryable backend error, and no backup.
    store.fail(Some("snapshots/"));
    let session = repo.session("backup").await.unwrap();
    let blob = session.store_blob(b"block").await.unwrap();
    let id = random_backup_id();
    let snap = make_snapshot(&session, id, None, id, &[blob]).await;
    let err = session.commit_snapshot(&snap).await.unwrap_err();
    assert_eq!(err.kind(), RepositoryErrorKind::Backend);
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains(&format!("snapshots/{id}")),
        "{err}"
    );
    session.finish().await.unwrap();
    assert!(repo.list_backups().await.unwrap().is_empty());

    // Healed: the repository verifies, a backup works, prune clears the leftovers.
    store.fail(None);
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let (m, _) = backup(&repo, &[b"after".to_vec()]).await;
    let pruned = repo.prune(None, false).await.unwrap();
    assert!(pruned.blobs_removed >= 1, "{pruned:?}");
    let repo = Repo::open(backend, Some(&password())).await.unwrap();
    assert_eq!(repo.list_backups().await.unwrap(), vec![m.id]);
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
