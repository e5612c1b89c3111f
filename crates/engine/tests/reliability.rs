//! Reliability at the engine level, against the emulator with a local repository:
//! corruption of every kind of repository object is named by `verify` and refused by
//! `restore` (never restored silently wrong); an encrypted repository holds no plaintext
//! of the data or the table names; key files and the tracker state are private (0600);
//! and the tracker state decoder replays its fuzz corpus.
//!
//! Figures (cases, detections, refusals) are printed with `--nocapture`.

mod common;

#[allow(dead_code)]
#[path = "../../sink/tests/sink/fuzz_tracker.rs"]
mod fuzz_tracker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use taosbackup_core::NoProgress;
use taosbackup_engine::{
    BackupPoint, CancellationToken, ChangeTracking, EngineError, EngineKind, TrackingConfig,
};
use taosbackup_sink::{
    Backend, InitOptions, KdfParams, OpenOptions, Password, Repo, VerifyOptions,
};

fn init_options(h: &Harness, encryption: bool) -> InitOptions {
    InitOptions {
        encryption,
        kdf: KdfParams::insecure_for_tests(),
        bucket_width: h.width,
        pack_size: 64 * 1024,
        ..InitOptions::default()
    }
}

/// Inserts `n` rows per table, with distinct values.
async fn fill(h: &Harness, tables: &[String], from: i64, n: i64) {
    for t in tables {
        let values: String = (from..from + n)
            .map(|k| {
                if t == "n1" {
                    format!(" ({}, {k}, 'v{k}')", BASE + k * 1000)
                } else {
                    format!(" ({}, {k}.25, {k}, 'n{k}')", BASE + k * 1000)
                }
            })
            .collect();
        h.exec(&format!("INSERT INTO {DB}.{t} VALUES{values}"))
            .await;
    }
}

/// Every file under `root`, as paths relative to it (`data/ab/abcd…`), sorted.
fn objects(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for rel in objects(from) {
        let dest = to.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), dest).unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

/// Applies `damage` to `file`; `seed` picks the position. Returns a description.
fn damage(file: &Path, how: Damage, seed: u64) -> String {
    let mut bytes = std::fs::read(file).unwrap();
    let pos = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % bytes.len().max(1);
    match how {
        Damage::Flip => {
            bytes[pos] ^= 0x40;
            std::fs::write(file, &bytes).unwrap();
            format!("bit 6 of byte {pos} of {} flipped", bytes.len())
        }
        Damage::Truncate => {
            bytes.truncate(pos);
            std::fs::write(file, &bytes).unwrap();
            format!("truncated to {pos} bytes")
        }
        Damage::Delete => {
            std::fs::remove_file(file).unwrap();
            "deleted".into()
        }
    }
}

async fn restore(h: &Harness, repo: &Repo, point: BackupPoint, target: &str) -> Result<(), String> {
    let session = repo.session("restore").await.map_err(|e| e.to_string())?;
    let r = taosbackup_engine::restore(
        &h.source,
        &session,
        &h.restore_request(point, target),
        &NoProgress,
        &CancellationToken::new(),
    )
    .await;
    session.finish().await.unwrap();
    match r {
        Ok(report) => {
            assert!(
                report.count_mismatches.is_empty(),
                "restore reported row-count mismatches: {:?}",
                report.count_mismatches
            );
            Ok(())
        }
        Err(e) => Err(clear_error(&e)),
    }
}

/// A restore error must say which block (table, bucket, blob) or which object failed.
fn clear_error(e: &EngineError) -> String {
    let text = e.to_string();
    let names_block = text.contains("bucket") && text.contains("block");
    let names_object = [
        "data/",
        "index/",
        "snapshots/",
        // A tree object: "reading the tree|shard|catalog <blob> of backup <id>".
        " of backup ",
        "config",
        "no backup matches",
    ]
    .iter()
    .any(|s| text.contains(s));
    let names_snapshot = matches!(e, EngineError::DamagedSnapshot { .. });
    assert!(
        names_block || names_object || names_snapshot,
        "restore error names neither a block nor an object: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_of_every_object_kind_is_named_by_verify_and_refused_by_restore() {
    let mut h = harness().await;
    let feed = OracleFeed::default();
    let tables = setup(&h, &feed).await;
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    h.repo = Repo::init(
        Backend::local(&pristine).unwrap(),
        init_options(&h, false),
        None,
    )
    .await
    .unwrap();
    // A full backup and an incremental on top of it (the time engine): each is a
    // self-contained snapshot, so losing the parent's snapshot object loses only the parent.
    fill(&h, &tables, 0, 300).await;
    let full = h.backup(EngineKind::Full, None).await.unwrap().snapshot;
    fill(&h, &tables, 300, 200).await;
    let incr = h.backup(EngineKind::Time, None).await.unwrap().snapshot;
    assert_eq!(incr.parent, Some(full.id));
    let expected = h.contents(DB).await;
    h.repo.remove_stale_locks().await.unwrap();

    let all = objects(&pristine);
    let pick = |prefix: &str, n: usize| -> Vec<String> {
        all.iter()
            .filter(|p| p.starts_with(prefix))
            .take(n)
            .cloned()
            .collect()
    };
    let mut targets = pick("data/", 3);
    targets.extend(pick("index/", 2));
    targets.extend(pick("snapshots/", 2));
    targets.extend(["config".to_string(), "config.check".to_string()]);
    assert!(targets.len() >= 8, "{all:?}");

    let mut cases = 0;
    let mut named = 0;
    let mut refused = 0;
    let mut restored_intact = 0;
    let mut deleted_snapshots = 0;
    for (i, object) in targets.iter().enumerate() {
        for (j, how) in [Damage::Flip, Damage::Truncate, Damage::Delete]
            .into_iter()
            .enumerate()
        {
            if object == "config" && !matches!(how, Damage::Flip) {
                continue;
            }
            cases += 1;
            let work = dir.path().join(format!("case{i}-{j}"));
            copy_dir(&pristine, &work);
            let what = damage(&work.join(object), how, (i * 3 + j) as u64 + 1);
            let label = format!("{object} {what}");
            let backend = Backend::local(&work).unwrap();
            let tolerant = OpenOptions {
                allow_damaged_index: true,
                ..OpenOptions::default()
            };
            let repo = match Repo::open_with(backend, None, tolerant).await {
                Ok(r) => r,
                Err(e) => {
                    // Only a damaged config (or its check) may stop the repository from
                    // opening.
                    assert!(object.starts_with("config"), "{label}: open failed: {e}");
                    assert!(e.to_string().contains("config"), "{label}: {e}");
                    named += 1;
                    refused += 1;
                    continue;
                }
            };
            let report = repo
                .verify(VerifyOptions {
                    read_data_percent: Some(100),
                })
                .await
                .unwrap();
            let name = object.rsplit('/').next().unwrap_or_default();
            let snapshot_deleted =
                matches!(how, Damage::Delete) && object.starts_with("snapshots/");
            if snapshot_deleted {
                // Deleting a snapshot object is indistinguishable from forgetting that
                // backup: nothing references it (not even its child, which is
                // self-contained). It is gone, not wrong.
                assert!(report.is_ok(), "{label}: {:?}", report.problems);
                let listed = repo.list_backups().await.unwrap();
                assert!(
                    !listed.iter().any(|id| object.ends_with(&id.to_hex())),
                    "{label}"
                );
                deleted_snapshots += 1;
            } else if report
                .problems
                .iter()
                .any(|p| p.object.contains(object.as_str()) || p.message.contains(name))
            {
                named += 1;
            } else if matches!(how, Damage::Delete)
                && object.starts_with("index/")
                && report.problems.iter().any(|p| {
                    p.message.contains("no index lists")
                        || p.message.contains("is not in the repository")
                })
            {
                // Nothing records index file names: a deleted index shows as the blobs it
                // listed, named with the snapshots that reference them.
                named += 1;
            } else {
                panic!("{label}: verify did not name it: {:?}", report.problems);
            }
            // Restore the newest backup (by id): refused with a clear error, or exact.
            let target = format!("r{i}x{j}");
            let point = BackupPoint::Id(incr.id.to_hex());
            match restore(&h, &repo, point, &target).await {
                Err(e) => {
                    refused += 1;
                    println!("{label}: restore refused: {e}");
                }
                Ok(()) => {
                    assert_eq!(
                        h.contents(&target).await,
                        expected,
                        "{label}: restore succeeded with wrong contents"
                    );
                    restored_intact += 1;
                    println!("{label}: restore unaffected (damage outside the data read)");
                }
            }
        }
    }
    println!(
        "corruption: {cases} cases, {named} named by verify, {refused} restores refused, \
         {restored_intact} restores exact"
    );
    assert_eq!(cases, refused + restored_intact);
    // Every damage is named, except deleted snapshot objects (forgotten backups, see above).
    assert_eq!(deleted_snapshots, 2);
    assert_eq!(named, cases - deleted_snapshots);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_objects_hold_no_plaintext_and_keys_and_tracker_state_are_private() {
    let mut h = harness().await;
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    let secret_table = "zebra_confidential_meter";
    let secret_column = "quasar_reading";
    let secret_value = "canary-plaintext-7f3a";
    h.exec(&format!(
        "CREATE TABLE {DB}.{secret_table} (ts TIMESTAMP, {secret_column} INT, note VARCHAR(32))"
    ))
    .await;
    let values: String = (0..50)
        .map(|k| format!(" ({}, {k}, '{secret_value}')", BASE + k * 1000))
        .collect();
    h.exec(&format!("INSERT INTO {DB}.{secret_table} VALUES{values}"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let pw = Password::new("a repository password").unwrap();
    h.repo = Repo::init(
        Backend::local(&root).unwrap(),
        init_options(&h, true),
        Some(&pw),
    )
    .await
    .unwrap();
    let state = dir.path().join("state").join("tracker.state");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let mut tracking =
        ChangeTracking::open(Box::new(feed.clone()), TrackingConfig::new(&state), h.width)
            .await
            .unwrap();
    h.backup(EngineKind::Bitmap, Some(&mut tracking))
        .await
        .unwrap();
    drop(tracking);

    let needles: [&[u8]; 4] = [
        secret_table.as_bytes(),
        secret_column.as_bytes(),
        secret_value.as_bytes(),
        b"CREATE TABLE",
    ];
    let all = objects(&root);
    let mut scanned = 0u64;
    for rel in &all {
        let bytes = std::fs::read(root.join(rel)).unwrap();
        scanned += bytes.len() as u64;
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{rel} contains {:?} in plaintext",
                String::from_utf8_lossy(n)
            );
        }
    }
    println!(
        "security: {} objects, {scanned} bytes scanned for {} strings",
        all.len(),
        needles.len()
    );
    assert!(all.iter().any(|p| p.starts_with("data/")));

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keys: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.starts_with("keys/"))
        .map(|p| root.join(p))
        .collect();
    assert!(!keys.is_empty());
    for k in &keys {
        assert_eq!(mode(k), 0o600, "key file {} is not private", k.display());
    }
    assert_eq!(mode(&state), 0o600, "tracker state is not private");
}

fn tracker_corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sink/tests/fuzz_corpus/tracker_state")
}

/// Replays the tracker-state fuzz corpus (seeds and fuzz findings); the seeds must be in
/// it (`TAOSBACKUP_WRITE_FUZZ_SEEDS=1` writes them) and the valid one must load.
#[test]
fn tracker_state_fuzz_corpus_replays_without_panics() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = fuzz_tracker::seeds(dir.path());
    let write = std::env::var_os("TAOSBACKUP_WRITE_FUZZ_SEEDS").is_some();
    for seed in &seeds {
        let path = tracker_corpus().join(blake3::hash(seed).to_hex().as_str());
        if write {
            std::fs::create_dir_all(tracker_corpus()).unwrap();
            std::fs::write(&path, seed).unwrap();
        }
        assert!(
            path.exists(),
            "seed {} missing from the corpus",
            path.display()
        );
    }
    assert!(
        fuzz_tracker::run(dir.path(), &seeds[0]),
        "valid enveloped seed refused"
    );
    assert!(
        fuzz_tracker::run(dir.path(), &seeds[1]),
        "valid raw seed refused"
    );
    let mut counts = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(tracker_corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let loaded = std::panic::catch_unwind(|| fuzz_tracker::run(dir.path(), &data))
            .unwrap_or_else(|_| panic!("tracker_state panicked on {}", f.display()));
        *counts.entry(loaded).or_insert(0) += 1;
    }
    println!(
        "tracker_state: {} inputs, loaded/refused {counts:?}",
        files.len()
    );
}
