//! `migrate`: a format-1 repository (one manifest per backup) becomes a format-3 one
//! (snapshot trees, binary shards), without uploading any data pack again
//! (`docs/format.md` §12). A format-2 repository only switches its config (step 3): its
//! JSON shards stay readable, and new ones are written binary from then on.
//!
//! Steps for format 1, each safe to interrupt and repeat:
//!
//! 1. For every manifest (oldest first) fold its chain and write the snapshot tree of the
//!    state it describes: shards, tree, catalog parts (new blobs in new packs; consecutive
//!    backups share most shards, which are stored once). Then one index file.
//! 2. Write each snapshot object (`snapshots/<same id>`), skipping those that exist. A
//!    format-1 reader ignores them.
//! 3. Switch the config to version 3 — the commit point — through the stage object
//!    [`STAGE`]: write the stage (the new config, the key file ids), a new key file binding
//!    the new config for the password in use, `config.check`, then `config`; then delete the
//!    old key file and the stage. A crash in the middle is finished by the next `migrate`
//!    ([`Repo::resume_migration`]); other commands say so.
//! 4. Delete the manifests.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, CatalogRoot, DatabaseState, Manifest, SNAPSHOT_VERSION,
    ShardEncoding, SuperTablePart, SuperTableRef, Tree, TreeObject, chain_of, fold,
};

use crate::backend::Backend;
use crate::config::{
    CONFIG_CHECK, FORMAT1_VERSION, FORMAT2_VERSION, REPO_VERSION, RepoConfig, config_check,
};
use crate::error::{Error, Result};
use crate::key::{KeyFile, Password};
use crate::lock::LockMode;
use crate::repo::{Repo, key_binding, manifest_path, snapshot_path};
use crate::session::Session;

/// The stage object of the config switch (plaintext JSON).
pub(crate) const STAGE: &str = "config.migrate";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stage {
    version: u32,
    /// The new config's exact text.
    config: String,
    /// The key file in use before the switch (deleted after it).
    old_key: Option<String>,
    /// The key file written for the new config.
    new_key: Option<String>,
}

/// What [`Repo::migrate`] did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// The format version the repository had (1, 2 or 3).
    pub from_version: u32,
    /// The repository was already format 3 (only leftovers were cleaned up).
    pub already_migrated: bool,
    /// Format-1 manifests found.
    pub manifests: usize,
    /// Snapshot objects written (or to write).
    pub snapshots_written: usize,
    /// Snapshot objects that already existed (an earlier, interrupted run).
    pub snapshots_existing: usize,
    /// New tree objects (shards, trees, catalog parts) stored (deduplicated).
    pub tree_objects_new: usize,
    /// Their plaintext bytes.
    pub tree_bytes: u64,
    /// Bytes written to the repository (packs, index, snapshots).
    pub bytes_written: u64,
    /// Manifests deleted (or to delete).
    pub manifests_deleted: usize,
}

impl Repo {
    /// Finishes a config switch a crashed `migrate` left half done: when [`STAGE`] exists
    /// and `config.check` already holds the staged config's hash, writes the staged config.
    /// Needs no key (the staged config is the one `config.check` vouches for). Returns
    /// whether it wrote anything.
    pub async fn resume_migration(backend: &Backend) -> Result<bool> {
        let Ok(stage) = backend.get(STAGE).await else {
            return Ok(false);
        };
        let stage: Stage =
            serde_json::from_slice(&stage).map_err(|e| Error::corrupt(STAGE, e.to_string()))?;
        let config = backend.get("config").await?;
        let check = backend.get(CONFIG_CHECK).await?;
        let staged = stage.config.as_bytes();
        if *config != *staged && *check == *config_check(staged).as_bytes() {
            backend.put("config", staged.to_vec().into()).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Migrates this format-1 repository (opened with `allow_format1`), or this format-2
    /// one, to format 3; see the
    /// module documentation. `password` must be the one this handle was opened with (a key
    /// file binding the new config is written for it). Refuses encrypted repositories with
    /// more than one key file: the others cannot be re-bound without their passwords.
    pub async fn migrate(
        &self,
        password: Option<&Password>,
        dry_run: bool,
    ) -> Result<MigrateReport> {
        let lock = self.lock(LockMode::Exclusive, "migrate").await?;
        let session = self.session_with(lock);
        let result = self.migrate_locked(&session, password, dry_run).await;
        let released = session.finish().await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn migrate_locked(
        &self,
        session: &Session,
        password: Option<&Password>,
        dry_run: bool,
    ) -> Result<MigrateReport> {
        let inner = &self.inner;
        let mut report = MigrateReport {
            dry_run,
            from_version: inner.config.version,
            ..MigrateReport::default()
        };
        let ids = self.list_manifests().await?;
        report.manifests = ids.len();
        if inner.config.version == FORMAT2_VERSION {
            // Format 3 differs only in how new shards are written: the config switch alone.
            self.refuse_other_keys().await?;
            if !dry_run {
                self.discard_stale_stage().await?;
                self.switch_config(password).await?;
            }
            report.manifests_deleted = self.delete_manifests(&ids, dry_run).await?;
            return Ok(report);
        }
        if inner.config.version == REPO_VERSION {
            report.already_migrated = true;
            if !dry_run {
                self.finish_stage().await?;
            }
            report.manifests_deleted = self.delete_manifests(&ids, dry_run).await?;
            return Ok(report);
        }
        if inner.config.version != FORMAT1_VERSION {
            return Err(Error::UnsupportedVersion {
                path: "config".into(),
                found: inner.config.version,
                supported: REPO_VERSION,
            });
        }
        self.refuse_other_keys().await?;
        if !dry_run {
            // A stale stage from a run that crashed before switching: undo its key file.
            self.discard_stale_stage().await?;
        }
        let mut manifests: Vec<Manifest> = Vec::with_capacity(ids.len());
        for id in &ids {
            let m = self
                .load_manifest(id)
                .await
                .map_err(|e| Error::MigrateRefused {
                    reason: format!(
                        "the manifest of backup {id} does not load ({e}); run `taosbackup verify`"
                    ),
                })?;
            manifests.push(m);
        }
        manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        let before = session.blob_bytes();
        let mut planned: HashSet<BlobId> = HashSet::new();
        let mut snapshots = Vec::with_capacity(manifests.len());
        for m in &manifests {
            let chain = chain_of(&manifests, m).map_err(|e| Error::MigrateRefused {
                reason: format!("{e}; run `taosbackup verify`"),
            })?;
            let state = fold(&chain).map_err(|e| Error::MigrateRefused {
                reason: e.to_string(),
            })?;
            for blocks in state.tables.values() {
                for b in blocks.values() {
                    if !self.has_blob(&b.blob) {
                        return Err(Error::MigrateRefused {
                            reason: format!(
                                "backup {} needs blob {}, which no index lists; run `taosbackup verify`",
                                m.id, b.blob
                            ),
                        });
                    }
                }
            }
            let mut writer = Writer {
                repo: self,
                session,
                dry_run,
                planned: &mut planned,
                report: &mut report,
            };
            let (tree, catalog) = self.store_state(&mut writer, &state).await?;
            snapshots.push(BackupSnapshot {
                version: SNAPSHOT_VERSION,
                id: m.id,
                database: m.database.clone(),
                kind: m.kind,
                engine: m.engine.clone(),
                parent: m.parent,
                chain: m.chain,
                started_at: m.started_at,
                finished_at: m.finished_at,
                source: m.source.clone(),
                bucket_width: m.bucket_width,
                precision: m.catalog.database.precision,
                tree,
                catalog,
                feed_positions: m.feed_positions.clone(),
                stats: m.stats,
            });
        }
        for s in &snapshots {
            if inner.backend.exists(&snapshot_path(&s.id)).await? {
                report.snapshots_existing += 1;
            } else {
                report.snapshots_written += 1;
            }
        }
        if dry_run {
            report.manifests_deleted = ids.len();
            return Ok(report);
        }
        session.flush_index().await?;
        report.bytes_written = session.bytes_stored().max(session.blob_bytes() - before);
        for s in &snapshots {
            let path = snapshot_path(&s.id);
            if !inner.backend.exists(&path).await? {
                let body = self.encode_snapshot(s)?;
                report.bytes_written += body.len() as u64;
                inner.backend.put(&path, body.into()).await?;
            }
        }
        self.switch_config(password).await?;
        report.manifests_deleted = self.delete_manifests(&ids, false).await?;
        Ok(report)
    }

    /// Stores the snapshot tree of `state` (or, in a dry run, only counts what is new);
    /// returns the tree and catalog blob ids.
    async fn store_state(
        &self,
        writer: &mut Writer<'_>,
        state: &DatabaseState,
    ) -> Result<(BlobId, BlobId)> {
        let mut entries = Vec::new();
        for shard in state.shards() {
            let entry = shard.entry(BlobId::from_bytes([0; 32]));
            let id = writer.put(TreeObject::Shard(shard)).await?;
            if let Some(mut e) = entry {
                e.shard = id;
                entries.push(e);
            }
        }
        let (tree, _) = Tree::store(entries, None, async |obj| writer.put(obj).await).await?;
        let mut parts = Vec::new();
        for st in &state.catalog.super_tables {
            let id = writer
                .put(TreeObject::SuperTable(SuperTablePart {
                    version: SNAPSHOT_VERSION,
                    def: st.clone(),
                }))
                .await?;
            parts.push(SuperTableRef {
                name: st.name.clone(),
                def: id,
                dictionary: None,
            });
        }
        let catalog = writer
            .put(TreeObject::Catalog(CatalogRoot {
                version: SNAPSHOT_VERSION,
                database: state.catalog.database.clone(),
                super_tables: parts,
                skipped: state.catalog.skipped.clone(),
                dictionaries: Vec::new(),
            }))
            .await?;
        Ok((tree, catalog))
    }

    /// Refuses a repository with more than one key file: the config switch re-binds only
    /// the password in use.
    async fn refuse_other_keys(&self) -> Result<()> {
        let keys = self.inner.backend.list("keys").await?;
        if keys.len() > 1 {
            return Err(Error::MigrateRefused {
                reason: format!(
                    "the repository has {} key files; migrate re-binds only the password in use \
                     (key files bind the config, which changes). Remove the other keys first \
                     (`taosbackup key list`, `taosbackup key remove ID`) and add them again after \
                     migrating (`taosbackup key add`)",
                    keys.len()
                ),
            });
        }
        Ok(())
    }

    /// The crash-safe config switch (module documentation, step 3).
    async fn switch_config(&self, password: Option<&Password>) -> Result<()> {
        let inner = &self.inner;
        let mut config: RepoConfig = inner.config.clone();
        config.version = REPO_VERSION;
        let body = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::corrupt("config", e.to_string()))?;
        let binding = key_binding(&config.id, &body);
        let old_key = self.key_in_use();
        let new_key = match (&inner.master, &old_key) {
            (Some(master), Some(old)) => {
                let pw = password.ok_or(Error::PasswordRequired)?;
                let old_file =
                    crate::repo::read_key(&inner.backend, &format!("keys/{old}")).await?;
                let kf = KeyFile::create(master, pw, &old_file.kdf.params, &binding)?;
                // The key must open with the new binding before anything depends on it.
                if kf.unwrap("new key", pw, &binding)?.is_none() {
                    return Err(Error::MigrateRefused {
                        reason: "the new key file does not open with the password given; give \
                                 the password the repository was opened with"
                            .into(),
                    });
                }
                let bytes = serde_json::to_vec_pretty(&kf)
                    .map_err(|e| Error::corrupt("keys", e.to_string()))?;
                Some((blake3::hash(&bytes).to_hex().to_string(), bytes))
            }
            _ => None,
        };
        let text =
            String::from_utf8(body.clone()).map_err(|e| Error::corrupt("config", e.to_string()))?;
        let stage = Stage {
            version: 1,
            config: text,
            old_key: old_key.clone(),
            new_key: new_key.as_ref().map(|(id, _)| id.clone()),
        };
        let stage_bytes =
            serde_json::to_vec_pretty(&stage).map_err(|e| Error::corrupt(STAGE, e.to_string()))?;
        inner.backend.put(STAGE, stage_bytes.into()).await?;
        if let Some((id, bytes)) = &new_key {
            inner
                .backend
                .put_private(&format!("keys/{id}"), bytes.clone().into())
                .await?;
        }
        inner
            .backend
            .put(CONFIG_CHECK, config_check(&body).into_bytes().into())
            .await?;
        inner.backend.put("config", body.into()).await?;
        self.finish_stage().await
    }

    /// After the switch: deletes the old key file and the stage.
    async fn finish_stage(&self) -> Result<()> {
        let backend = &self.inner.backend;
        let Ok(bytes) = backend.get(STAGE).await else {
            return Ok(());
        };
        let stage: Stage =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(STAGE, e.to_string()))?;
        let config = backend.get("config").await?;
        if *config != *stage.config.as_bytes() {
            return Err(Error::MigrationInterrupted {
                location: backend.location().into(),
            });
        }
        if let Some(old) = &stage.old_key {
            if stage.new_key.as_deref() != Some(old.as_str()) {
                backend.delete(&format!("keys/{old}")).await?;
            }
        }
        backend.delete(STAGE).await
    }

    /// Before a new switch: a stage whose config was never switched in is undone (its key
    /// file binds a config that does not exist).
    async fn discard_stale_stage(&self) -> Result<()> {
        let backend = &self.inner.backend;
        let Ok(bytes) = backend.get(STAGE).await else {
            return Ok(());
        };
        let stage: Stage =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(STAGE, e.to_string()))?;
        if let Some(new) = &stage.new_key {
            if stage.old_key.as_deref() != Some(new.as_str()) {
                backend.delete(&format!("keys/{new}")).await?;
            }
        }
        backend.delete(STAGE).await
    }

    async fn delete_manifests(&self, ids: &[BackupId], dry_run: bool) -> Result<usize> {
        if !dry_run {
            for id in ids {
                // Only once its snapshot exists: nothing is lost if a manifest was added by
                // a format-1 build after the switch (it is then reported, not deleted).
                if self.inner.backend.exists(&snapshot_path(id)).await? {
                    self.inner.backend.delete(&manifest_path(id)).await?;
                }
            }
        }
        Ok(ids.len())
    }
}

/// Stores tree objects for a migration, or in a dry run only counts the new ones.
struct Writer<'a> {
    repo: &'a Repo,
    session: &'a Session,
    dry_run: bool,
    planned: &'a mut HashSet<BlobId>,
    report: &'a mut MigrateReport,
}

impl Writer<'_> {
    async fn put(&mut self, obj: TreeObject) -> Result<BlobId> {
        // The repository becomes format 3: its shards are binary.
        let bytes = obj.encode_as(ShardEncoding::Binary);
        let id = self.repo.blob_id(&bytes);
        if !self.session.holds(&id) && self.planned.insert(id) {
            self.report.tree_objects_new += 1;
            self.report.tree_bytes += bytes.len() as u64;
            if !self.dry_run {
                self.session.put_tree_object(&bytes).await?;
            }
        }
        Ok(id)
    }
}
