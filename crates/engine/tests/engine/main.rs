//! Integration tests of the engine, compiled into one binary. They run against the in-memory
//! fakes of `taosbackup_testkit::fake` and need no emulator; the engine's tests through the
//! emulator and the real source and sink are end-to-end tests (`tests/engine/` at the root).

/// `impl Repository for $t`: the methods given, and the snapshots, `has_blob` and
/// `bytes_stored` from its `inner` repository.
macro_rules! repository_over_inner {
    ($t:ty, { $($methods:tt)* }) => {
        #[async_trait::async_trait]
        impl taosbackup_core::Repository for $t {
            $($methods)*

            fn shard_encoding(&self) -> taosbackup_core::ShardEncoding {
                self.inner.shard_encoding()
            }

            fn has_blob(&self, id: &taosbackup_core::BlobId) -> bool {
                self.inner.has_blob(id)
            }

            async fn commit_snapshot(
                &self,
                snapshot: &taosbackup_core::BackupSnapshot,
            ) -> Result<(), taosbackup_core::RepositoryError> {
                self.inner.commit_snapshot(snapshot).await
            }

            fn bytes_stored(&self) -> u64 {
                self.inner.bytes_stored()
            }

            async fn list_snapshots(
                &self,
            ) -> Result<Vec<taosbackup_core::BackupSnapshot>, taosbackup_core::RepositoryError>
            {
                self.inner.list_snapshots().await
            }

            async fn load_snapshot(
                &self,
                id: &taosbackup_core::BackupId,
            ) -> Result<taosbackup_core::BackupSnapshot, taosbackup_core::RepositoryError> {
                self.inner.load_snapshot(id).await
            }
        }
    };
}

mod commit;
mod dictionaries;
mod groups;
mod load_state;
mod model;
mod overlap;
mod restore_blocks;
mod tracker_model;
