//! `verify`: structure checks and, optionally, reading back pack data.

use std::collections::{BTreeMap, HashMap};

use crate::error::Result;
use crate::lock::LockMode;
use crate::pack::{PackId, pack_path, read_header};
use crate::repo::{Repo, load_index};

/// What [`Repo::verify`] checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Also download this percentage (1..=100) of the packs and check every blob in
    /// them (decrypt, decompress, rehash). `None`: structure only.
    pub read_data_percent: Option<u8>,
}

/// One damaged or missing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object path (and blob, where relevant).
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// The outcome of [`Repo::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Problems found; empty means the repository is sound.
    pub problems: Vec<Problem>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct tree objects (trees, shards, catalog parts) read and checked.
    pub tree_objects: usize,
    /// Distinct data blobs the snapshots reference.
    pub data_blobs: usize,
    /// Index files checked.
    pub index_files: usize,
    /// Packs listed by the index.
    pub packs: usize,
    /// Packs downloaded and checked.
    pub packs_read: usize,
    /// Blobs decrypted and rehashed.
    pub blobs_read: usize,
    /// Bytes downloaded for data checks.
    pub bytes_read: u64,
    /// Packs not listed by any index (left by interrupted backups; `prune` removes them).
    pub unindexed_packs: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Repo {
    /// Checks the repository under a shared lock: every index file opens; every indexed
    /// pack exists with the recorded size; every snapshot opens and validates; every tree
    /// object it reaches (tree, shards, catalog parts) reads, parses and matches what names
    /// it; every data blob a shard references is indexed; and with `read_data_percent`, the
    /// chosen packs hash to their names, their headers match the index, and every blob
    /// decrypts, decompresses and rehashes to its id. Each bad object is reported by name.
    pub async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        let lock = self.lock(LockMode::Shared, "verify").await?;
        let result = self.verify_locked(options).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    /// [`Repo::verify`] without taking a lock, for a repository that cannot be written
    /// (read-only media or credentials) or when the caller asks for no lock: a prune
    /// running meanwhile may make objects it deletes look missing.
    pub async fn verify_without_lock(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.verify_locked(options).await
    }

    async fn verify_locked(&self, options: VerifyOptions) -> Result<VerifyReport> {
        let inner = &self.inner;
        let mut report = VerifyReport::default();
        let problem = |object: String, message: String| Problem { object, message };
        let (index, bad_index) = load_index(&inner.backend, &inner.crypto).await?;
        report.index_files = index.files.len() + bad_index.len();
        for (path, reason) in bad_index {
            report.problems.push(problem(path, reason));
        }
        let listed: HashMap<String, u64> = inner.backend.list("data").await?.into_iter().collect();
        let mut indexed_paths = BTreeMap::new();
        for (id, info) in &index.packs {
            let path = pack_path(id);
            match listed.get(&path) {
                None => report.problems.push(problem(
                    path.clone(),
                    "pack listed in the index is missing".into(),
                )),
                Some(size) if *size != info.size => report.problems.push(problem(
                    path.clone(),
                    format!("pack has {size} bytes, the index says {}", info.size),
                )),
                Some(_) => {}
            }
            indexed_paths.insert(path, *id);
        }
        report.packs = index.packs.len();
        for path in listed.keys() {
            if !indexed_paths.contains_key(path) {
                report.unindexed_packs.push(path.clone());
            }
        }
        report.unindexed_packs.sort();
        let (snapshots, bad) = self.load_all_snapshots().await?;
        report.snapshots = snapshots.len() + bad.len();
        for (object, message) in bad {
            report.problems.push(problem(object, message));
        }
        let reach = self.reach(&snapshots).await?;
        report.tree_objects = reach.tree_blobs.len();
        report.data_blobs = reach.data_blobs.len();
        for (object, message) in reach.problems {
            report.problems.push(problem(object, message));
        }
        let mut missing: Vec<_> = reach
            .data_blobs
            .iter()
            .filter(|b| !index.blobs.contains_key(b))
            .collect();
        missing.sort();
        for blob in missing {
            report.problems.push(problem(
                format!("blob {blob}"),
                "a snapshot's shard references it, but no index lists it".into(),
            ));
        }
        if let Some(percent) = options.read_data_percent {
            let percent = usize::from(percent.clamp(1, 100));
            let mut packs: Vec<(&String, &PackId)> = indexed_paths.iter().collect();
            let take = (packs.len() * percent).div_ceil(100);
            if take < packs.len() {
                use rand::seq::SliceRandom;
                packs.shuffle(&mut rand::rng());
                packs.truncate(take);
            }
            for (path, id) in packs {
                let expected_size = index.packs.get(id).map(|p| p.size);
                if listed.get(path.as_str()).copied() != expected_size {
                    continue; // already reported missing or of the wrong size; not downloaded
                }
                let bytes = match inner.backend.get(path).await {
                    Ok(b) => b,
                    Err(e) => {
                        report.problems.push(problem(path.clone(), e.to_string()));
                        continue;
                    }
                };
                report.packs_read += 1;
                report.bytes_read += bytes.len() as u64;
                if blake3::hash(&bytes).as_bytes() != id {
                    report.problems.push(problem(
                        path.clone(),
                        "content does not hash to the pack id".into(),
                    ));
                }
                let entries = match read_header(path, &bytes, &inner.crypto) {
                    Ok(e) => e,
                    Err(e) => {
                        report.problems.push(problem(path.clone(), e.to_string()));
                        continue;
                    }
                };
                let expected = index
                    .packs
                    .get(id)
                    .map(|p| p.blobs.clone())
                    .unwrap_or_default();
                if entries != expected {
                    report.problems.push(problem(
                        path.clone(),
                        "pack header does not match the index".into(),
                    ));
                }
                for e in entries {
                    let start = e.offset as usize;
                    let end = start + e.length as usize;
                    let Some(stored) = bytes.get(start..end) else {
                        report.problems.push(problem(
                            path.clone(),
                            format!("blob {} out of bounds", e.id),
                        ));
                        continue;
                    };
                    report.blobs_read += 1;
                    if let Err(err) = self.decode_stored(path, &e.id, stored, e.raw_length).await {
                        report
                            .problems
                            .push(problem(format!("{path} blob {}", e.id), err.to_string()));
                    }
                }
            }
        }
        Ok(report)
    }
}
