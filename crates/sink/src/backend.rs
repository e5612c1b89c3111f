//! Storage backends: an `object_store` store plus a prefix, chosen by URL.

mod retry;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutPayload, RetryConfig,
};

use self::retry::{Clock, Counters, ObservingConnector, PartRetry, observe, retryable, unobserved};
pub use self::retry::{StorageRetry, StorageStats};
use crate::error::{Error, Result};

/// Objects at least this large are uploaded with multipart upload (S3), a block list (Azure)
/// or a multipart upload of GCS's XML API: parts are retried one by one, and nothing is
/// visible under the name until the upload completes.
pub(crate) const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// Part size of multipart uploads.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// Pack uploads in flight at once per backup session by default: one per core, at least 2
/// and at most 8 (each holds a pack of up to `pack_size` bytes in memory).
pub fn default_upload_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 8)
}

/// The kind of backend a repository URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// A bare path or `file:///path`: local disk (writes are fsynced, files and
    /// directories).
    Local,
    /// `memory://`: a fresh in-memory store (tests).
    Memory,
    /// `s3://bucket/prefix`: Amazon S3 or an S3-compatible store.
    S3,
    /// `gs://bucket/prefix`: Google Cloud Storage.
    Gcs,
    /// `az://container/prefix` (or `azure://`, `abfs://`): Azure Blob Storage.
    Azure,
}

impl Scheme {
    /// The scheme of `url`; anything without `scheme://` is a local path.
    pub fn of(url: &str) -> Result<Scheme> {
        let Some((scheme, _)) = url.split_once("://") else {
            return Ok(Scheme::Local);
        };
        match scheme {
            "file" => Ok(Scheme::Local),
            "memory" => Ok(Scheme::Memory),
            "s3" | "s3a" => Ok(Scheme::S3),
            "gs" => Ok(Scheme::Gcs),
            "az" | "azure" | "abfs" | "abfss" => Ok(Scheme::Azure),
            other => Err(Error::InvalidUrl {
                url: url.into(),
                reason: format!(
                    "unknown scheme {other:?} (use a path, file://, s3://, gs:// or az://)"
                ),
            }),
        }
    }
}

/// Where a repository lives: an object store and a prefix inside it. Cheap to clone; clones
/// share the storage counters.
///
/// Cloud backends read credentials, region and endpoint from the standard environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …) and from
/// explicit options ([`Backend::from_url_with_options`]). Every operation is retried on
/// throttling, 5xx answers and dropped or timed-out connections by [`StorageRetry`] (its
/// module docs say why this layer and not object_store's), and counted ([`StorageStats`]).
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    /// The directory of a local repository (for file permissions).
    local_root: Option<std::path::PathBuf>,
    retry: StorageRetry,
    counters: Arc<Counters>,
    upload_concurrency: usize,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("location", &self.location)
            .finish()
    }
}

/// Our own keys among the options of [`Backend::from_url_with_options`] (object_store has
/// no configuration keys for retries).
const RETRY_KEYS: [&str; 4] = [
    "retry_max_retries",
    "retry_initial_backoff",
    "retry_max_backoff",
    "retry_timeout",
];

/// A duration option: `250ms`, `2s`, `5m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

impl Backend {
    /// The backend named by `url`, configured from the environment.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with_options(url, std::iter::empty::<(String, String)>())
    }

    /// The backend named by `url`, configured from the environment and then from
    /// `options`: object_store configuration keys such as `aws_endpoint`,
    /// `aws_allow_http`, `aws_virtual_hosted_style_request`, `google_service_account`,
    /// `google_base_url`, `azure_storage_account_name`, `timeout`, and our retry keys
    /// `retry_max_retries`, `retry_initial_backoff`, `retry_max_backoff`, `retry_timeout`
    /// ([`StorageRetry`]; durations as `250ms`, `15s`, `5m`). Unknown keys are an error.
    pub fn from_url_with_options<K, V>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.into(),
            reason,
        };
        let scheme = Scheme::of(url)?;
        let mut retry = StorageRetry::default();
        let mut store_options: Vec<(String, String)> = Vec::new();
        for (k, v) in options_iter(options) {
            if !RETRY_KEYS.contains(&k.as_str()) {
                store_options.push((k, v));
                continue;
            }
            let bad = || {
                invalid(format!(
                    "option {k} = {v:?}: expected a duration or a count"
                ))
            };
            match k.as_str() {
                "retry_max_retries" => retry.max_retries = v.trim().parse().map_err(|_| bad())?,
                "retry_initial_backoff" => {
                    retry.initial_backoff = parse_duration(&v).ok_or_else(bad)?
                }
                "retry_max_backoff" => retry.max_backoff = parse_duration(&v).ok_or_else(bad)?,
                _ => retry.timeout = parse_duration(&v).ok_or_else(bad)?,
            }
        }
        let options = store_options;
        if matches!(scheme, Scheme::Local | Scheme::Memory) && !options.is_empty() {
            return Err(invalid(
                "options are only accepted for cloud backends".into(),
            ));
        }
        // Requests are not retried inside object_store: `retry` does it (module docs).
        let no_retries = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: retry.timeout,
        };
        let backend = match scheme {
            Scheme::Local => {
                let raw = url.strip_prefix("file://").unwrap_or(url);
                Self::local(raw)?
            }
            Scheme::Memory => Self::memory(),
            Scheme::S3 | Scheme::Gcs | Scheme::Azure => {
                let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
                let prefix = Path::parse(parsed.path().trim_start_matches('/'))
                    .map_err(|e| invalid(e.to_string()))?;
                let store: Arc<dyn ObjectStore> = match scheme {
                    Scheme::S3 => {
                        let mut b = AmazonS3Builder::from_env()
                            .with_url(url)
                            .with_retry(no_retries)
                            .with_http_connector(ObservingConnector);
                        for (k, v) in options {
                            let key: AmazonS3ConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                    Scheme::Gcs => {
                        let mut b = GoogleCloudStorageBuilder::from_env()
                            .with_url(url)
                            .with_retry(no_retries)
                            .with_http_connector(ObservingConnector);
                        for (k, v) in options {
                            let key: GoogleConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                    _ => {
                        let mut b = MicrosoftAzureBuilder::from_env()
                            .with_url(url)
                            .with_retry(no_retries)
                            .with_http_connector(ObservingConnector);
                        for (k, v) in options {
                            let key: AzureConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                };
                Self::new(store, prefix, url.to_owned(), None)
            }
        };
        Ok(backend.with_retry(retry))
    }

    fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        location: String,
        local_root: Option<std::path::PathBuf>,
    ) -> Self {
        Backend {
            store,
            prefix,
            location,
            local_root,
            retry: StorageRetry::default(),
            counters: Arc::default(),
            upload_concurrency: default_upload_concurrency(),
        }
    }

    /// A fresh, empty in-memory backend (clones share it).
    pub fn memory() -> Self {
        Self::new(
            Arc::new(InMemory::new()),
            Path::default(),
            "memory://".into(),
            None,
        )
    }

    /// A directory on local disk (it need not exist yet; `init` creates it). Every write
    /// goes to a temporary file that is fsynced, renamed into place, and the directory is
    /// fsynced (object_store's `LocalFileSystem::with_fsync`).
    pub fn local(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let display = path.display().to_string();
        let absolute = std::path::absolute(path).map_err(|e| Error::InvalidUrl {
            url: display.clone(),
            reason: e.to_string(),
        })?;
        let prefix = Path::from_absolute_path(&absolute).map_err(|e| Error::InvalidUrl {
            url: display.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(
            Arc::new(LocalFileSystem::new().with_fsync(true)),
            prefix,
            absolute.display().to_string(),
            Some(absolute),
        ))
    }

    /// Any object store (for adapters such as fault injection in tests). Its own retries,
    /// if any, come on top of [`StorageRetry`]'s.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: impl Into<String>,
    ) -> Result<Self> {
        let location = location.into();
        let prefix = Path::parse(prefix).map_err(|e| Error::InvalidUrl {
            url: location.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(store, prefix, location, None))
    }

    /// This backend with another retry policy.
    pub fn with_retry(mut self, retry: StorageRetry) -> Self {
        self.retry = retry;
        self
    }

    /// This backend with at most `n` (at least 1) pack uploads in flight per backup session
    /// (default [`default_upload_concurrency`]).
    pub fn with_upload_concurrency(mut self, n: usize) -> Self {
        self.upload_concurrency = n.max(1);
        self
    }

    /// The retry policy.
    pub fn retry(&self) -> StorageRetry {
        self.retry
    }

    /// Pack uploads in flight at once per backup session.
    pub fn upload_concurrency(&self) -> usize {
        self.upload_concurrency
    }

    /// What the storage operations of this backend and its clones met so far.
    pub fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    /// A human-readable description of where the repository is.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/') {
            p = p.join(part);
        }
        p
    }

    /// Runs `attempt` until it succeeds, fails with an error no retry can help, or the
    /// retry policy is exhausted; the error then names `op`, `rel`, the attempts and the
    /// last HTTP status.
    async fn run<T, F, Fut>(&self, op: &'static str, rel: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.counters.operation();
        let clock = Clock::start();
        let mut retries = 0u32;
        loop {
            let (result, seen) = observe(attempt()).await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let elapsed = clock.elapsed();
            if !retryable(&err, seen) || !self.retry.allows(retries, elapsed) {
                if !matches!(err, object_store::Error::NotFound { .. }) {
                    self.counters.failure();
                }
                return Err(Error::backend_after(op, rel, err, retries + 1, seen.status));
            }
            retries += 1;
            self.counters.retry();
            tokio::time::sleep(self.retry.delay(retries, seen.retry_after, elapsed)).await;
        }
    }

    pub(crate) async fn get(&self, rel: &str) -> Result<Bytes> {
        let path = self.path(rel);
        self.run("read", rel, || async {
            self.store.get(&path).await?.bytes().await
        })
        .await
    }

    pub(crate) async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(rel);
        self.run("read", rel, || self.store.get_range(&path, range.clone()))
            .await
    }

    pub(crate) async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        let path = self.path(rel);
        if data.len() >= MULTIPART_THRESHOLD {
            return self
                .run("write", rel, || self.put_multipart(&path, data.clone()))
                .await;
        }
        self.run("write", rel, || async {
            self.store
                .put(&path, PutPayload::from_bytes(data.clone()))
                .await
                .map(|_| ())
        })
        .await
    }

    /// One multipart upload of `data`: parts (each retried by [`PartRetry`]), then the
    /// completion. On any failure the upload is aborted, so the store drops its parts;
    /// until completion nothing is visible under the name either way. (An abort that fails
    /// leaves invisible parts that the store's lifecycle rules remove, docs/operations.md.)
    async fn put_multipart(&self, path: &Path, data: Bytes) -> object_store::Result<()> {
        let opts = PutMultipartOptions::default().with_retry_policy(Arc::new(PartRetry {
            policy: self.retry,
            counters: self.counters.clone(),
        }));
        let mut upload = self.store.put_multipart_opts(path, opts).await?;
        let mut parts = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let chunk = rest.split_to(PART_SIZE.min(rest.len()));
            parts.push(upload.put_part(PutPayload::from_bytes(chunk)));
        }
        let uploaded: object_store::Result<Vec<()>> = futures::stream::iter(parts)
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await;
        let result = match uploaded {
            Ok(_) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // The upload's own error is what the caller needs; an abort that fails too only
            // leaves invisible parts behind.
            let _ = unobserved(upload.abort()).await;
        }
        result
    }

    /// Writes `rel` readable by its owner only, on local disk: its directory is created
    /// 0700 first (so the file is never reachable by others, even before it is made 0600),
    /// then the file is set to 0600. Key files go through here. Other backends: `put`.
    pub(crate) async fn put_private(&self, rel: &str, data: Bytes) -> Result<()> {
        #[cfg(unix)]
        if let Some(root) = &self.local_root {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            let file = rel.split('/').fold(root.clone(), |p, part| p.join(part));
            let io = |e: std::io::Error| {
                Error::backend(
                    "write",
                    rel,
                    object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                )
            };
            if let Some(dir) = file.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            self.put(rel, data).await?;
            return std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(io);
        }
        self.put(rel, data).await
    }

    pub(crate) async fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        match self.run("read", rel, || self.store.head(&path)).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `rel`; deleting a missing object is not an error.
    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match self.run("delete", rel, || self.store.delete(&path)).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the storage lets us delete: deletes a name that does not exist (stores check
    /// permission before existence: S3, Azure and GCS answer 403 to a caller without delete
    /// permission, 204/404 otherwise). A versioned S3 bucket records a delete marker for
    /// it, which no listing shows.
    pub(crate) async fn may_delete(&self) -> Result<bool> {
        let probe = format!("locks/delete-probe-{}", rand::random::<u64>());
        match self.delete(&probe).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_permission_denied() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lists the objects under directory `dir`, as (path relative to the repository, size).
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let base = self.path(dir);
        let metas: Vec<_> = self
            .run("list", dir, || self.store.list(Some(&base)).try_collect())
            .await?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let Some(rest) = meta.location.prefix_match(&self.prefix) else {
                continue;
            };
            let rel: Vec<String> = rest.map(|p| p.as_ref().to_owned()).collect();
            let rel = rel.join("/");
            // Skip temporary files of interrupted local writes (`name#suffix`).
            if rel.contains('#') {
                continue;
            }
            out.push((rel, meta.size));
        }
        Ok(out)
    }
}

/// Owned `(key, value)` pairs.
fn options_iter<K: AsRef<str>, V: Into<String>>(
    options: impl IntoIterator<Item = (K, V)>,
) -> impl Iterator<Item = (String, String)> {
    options
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_options_are_ours_and_checked() {
        let b = Backend::from_url_with_options(
            "s3://bucket/prefix",
            [
                ("aws_region", "us-east-1"),
                ("retry_max_retries", "3"),
                ("retry_initial_backoff", "20ms"),
                ("retry_max_backoff", "2s"),
                ("retry_timeout", "1m"),
            ],
        )
        .unwrap();
        assert_eq!(
            b.retry(),
            StorageRetry {
                max_retries: 3,
                initial_backoff: std::time::Duration::from_millis(20),
                max_backoff: std::time::Duration::from_secs(2),
                timeout: std::time::Duration::from_secs(60),
            }
        );
        let err =
            Backend::from_url_with_options("s3://b/p", [("retry_timeout", "soon")]).unwrap_err();
        assert!(err.to_string().contains("retry_timeout"), "{err}");
        assert_eq!(
            parse_duration("250ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_duration("7"), Some(std::time::Duration::from_secs(7)));
        assert_eq!(
            parse_duration("1h"),
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(parse_duration("3 weeks"), None);
        assert!(default_upload_concurrency() >= 2);
    }
}
