//! Storage backends: an `object_store` store plus a prefix, chosen by URL.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::error::{Error, Result};

/// Objects at least this large are uploaded with multipart upload.
pub(crate) const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// Part size of multipart uploads.
const PART_SIZE: usize = 8 * 1024 * 1024;

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
                    "unknown scheme {other:?} (use a path, file://, s3://, gs://, az:// or memory://)"
                ),
            }),
        }
    }
}

/// Where a repository lives: an object store and a prefix inside it. Cheap to clone.
///
/// Cloud backends read credentials, region and endpoint from the standard environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …) and from
/// explicit options ([`Backend::from_url_with_options`]); requests are retried with
/// exponential back-off on throttling and 5xx answers (object_store's `RetryConfig`).
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    /// The directory of a local repository (for file permissions).
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("location", &self.location)
            .finish()
    }
}

impl Backend {
    /// The backend named by `url`, configured from the environment.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with_options(url, std::iter::empty::<(String, String)>())
    }

    /// The backend named by `url`, configured from the environment and then from
    /// `options` (object_store configuration keys such as `aws_endpoint`,
    /// `aws_allow_http`, `aws_virtual_hosted_style_request`, `google_service_account`,
    /// `azure_storage_account_name`). Unknown keys are an error.
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
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
            .collect();
        if matches!(scheme, Scheme::Local | Scheme::Memory) && !options.is_empty() {
            return Err(invalid(
                "options are only accepted for cloud backends".into(),
            ));
        }
        match scheme {
            Scheme::Local => {
                let raw = url.strip_prefix("file://").unwrap_or(url);
                Self::local(raw)
            }
            Scheme::Memory => Ok(Self::memory()),
            Scheme::S3 | Scheme::Gcs | Scheme::Azure => {
                let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
                let prefix = Path::parse(parsed.path().trim_start_matches('/'))
                    .map_err(|e| invalid(e.to_string()))?;
                let store: Arc<dyn ObjectStore> = match scheme {
                    Scheme::S3 => {
                        let mut b = AmazonS3Builder::from_env().with_url(url);
                        for (k, v) in options {
                            let key: AmazonS3ConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                    Scheme::Gcs => {
                        let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
                        for (k, v) in options {
                            let key: GoogleConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                    _ => {
                        let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
                        for (k, v) in options {
                            let key: AzureConfigKey = k
                                .parse()
                                .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                            b = b.with_config(key, v);
                        }
                        Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
                    }
                };
                Ok(Backend {
                    store,
                    prefix,
                    location: url.to_owned(),
                    local_root: None,
                })
            }
        }
    }

    /// A fresh, empty in-memory backend (clones share it).
    pub fn memory() -> Self {
        Backend {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
            location: "memory://".into(),
            local_root: None,
        }
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
        Ok(Backend {
            store: Arc::new(LocalFileSystem::new().with_fsync(true)),
            prefix,
            location: absolute.display().to_string(),
            local_root: Some(absolute),
        })
    }

    /// Any object store (for adapters such as fault injection in tests).
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
        Ok(Backend {
            store,
            prefix,
            location,
            local_root: None,
        })
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

    pub(crate) async fn get(&self, rel: &str) -> Result<Bytes> {
        let r = self
            .store
            .get(&self.path(rel))
            .await
            .map_err(|e| Error::backend("read", rel, e))?;
        r.bytes().await.map_err(|e| Error::backend("read", rel, e))
    }

    pub(crate) async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path(rel), range)
            .await
            .map_err(|e| Error::backend("read", rel, e))
    }

    pub(crate) async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        let path = self.path(rel);
        if data.len() >= MULTIPART_THRESHOLD {
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| Error::backend("write", rel, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            w.put(data);
            w.finish()
                .await
                .map_err(|e| Error::backend("write", rel, e))?;
        } else {
            self.store
                .put(&path, PutPayload::from_bytes(data))
                .await
                .map_err(|e| Error::backend("write", rel, e))?;
        }
        Ok(())
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
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::backend("read", rel, e)),
        }
    }

    /// Deletes `rel`; deleting a missing object is not an error.
    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::backend("delete", rel, e)),
        }
    }

    /// Lists the objects under directory `dir`, as (path relative to the repository, size).
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let base = self.path(dir);
        let metas: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| Error::backend("list", dir, e))?;
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
