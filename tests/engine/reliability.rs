//! Reliability at the engine level, against the emulator with a local repository:
//! corruption of every kind of repository object is named by `verify` and refused by
//! `restore` (never restored silently wrong); an encrypted repository holds no plaintext
//! of the data or the table names; key files and the tracker state are private (0600);
//! and the tracker state decoder replays its fuzz corpus.
//!
//! Figures (cases, detections, refusals) are printed with `--nocapture`.

#[allow(dead_code)]
#[path = "../../crates/sink/tests/sink/fuzz_tracker.rs"]
mod fuzz_tracker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::*;
use taosbackup_core::{CatalogRoot, NoProgress, TreeNode, TreeRoot};
use taosbackup_engine::{
    BackupPoint, CancellationToken, ChangeTracking, EngineError, EngineKind, TrackingConfig,
};
use taosbackup_sink::{
    Backend, Error, InitOptions, KdfParams, OpenOptions, Password, Repo, Session, VerifyOptions,
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
    let r = restore_in(h, &session, point, target).await;
    session.finish().await.unwrap();
    r
}

/// [`restore`] through an open session (one session serves many restores: it caches no
/// blob, every read goes to the repository's files).
async fn restore_in(
    h: &Harness,
    session: &Session,
    point: BackupPoint,
    target: &str,
) -> Result<(), String> {
    let r = taosbackup_engine::restore(
        &*h.source,
        session,
        &h.restore_request(point, target),
        &NoProgress,
        &CancellationToken::new(),
    )
    .await;
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

/// Where one blob's stored (sealed) bytes lie: its pack object and the byte range in it.
struct Stored {
    pack: String,
    offset: usize,
    length: usize,
}

/// Opens a sealed object as docs/format.md §3 specifies (`key`: the AES-256 key of an
/// encrypted repository), panicking if it does not open: the tests read pristine objects.
fn open_sealed(key: Option<&[u8; 32]>, aad: &[u8], sealed: &[u8]) -> Vec<u8> {
    match key {
        Some(key) => {
            use aes_gcm::aead::{Aead, KeyInit, Payload};
            let cipher = aes_gcm::Aes256Gcm::new(key.into());
            let (nonce, msg) = sealed.split_at(12);
            cipher
                .decrypt(aes_gcm::Nonce::from_slice(nonce), Payload { msg, aad })
                .expect("a pristine object opens")
        }
        None => {
            let (body, check) = sealed.split_at(sealed.len() - 32);
            let mut h = blake3::Hasher::new();
            h.update(&(aad.len() as u64).to_le_bytes());
            h.update(aad);
            h.update(body);
            assert_eq!(h.finalize().as_bytes(), check, "a pristine object's check");
            body.to_vec()
        }
    }
}

/// The AES-256 part of the master key, unwrapped from the repository's key file with
/// `password` (docs/format.md §4).
fn aes_key(root: &Path, password: &str) -> [u8; 32] {
    let config = std::fs::read(root.join("config")).unwrap();
    let id = serde_json::from_slice::<serde_json::Value>(&config).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let aad = format!("taosbackup key v1 {id} {}", blake3::hash(&config).to_hex());
    let key = objects(root)
        .into_iter()
        .find(|p| p.starts_with("keys/"))
        .unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(key)).unwrap()).unwrap();
    let kdf = &file["kdf"];
    let num = |k: &str| kdf[k].as_u64().unwrap() as u32;
    let params = argon2::Params::new(
        num("memory_kib"),
        num("iterations"),
        num("parallelism"),
        Some(32),
    )
    .unwrap();
    let hex = |k: &serde_json::Value| taosbackup_core::from_hex(k.as_str().unwrap()).unwrap();
    let mut kek = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &hex(&kdf["salt"]), &mut kek)
        .unwrap();
    let master = open_sealed(Some(&kek), aad.as_bytes(), &hex(&file["data"]));
    master[..32].try_into().unwrap()
}

/// Every indexed blob (hex id) → where it is stored, read from the index files the way an
/// independent reader would (docs/format.md §7): the sink keeps its index private.
fn stored_blobs(root: &Path, password: Option<&str>) -> BTreeMap<String, Stored> {
    let key = password.map(|pw| aes_key(root, pw));
    let mut out = BTreeMap::new();
    for rel in objects(root).iter().filter(|p| p.starts_with("index/")) {
        let sealed = std::fs::read(root.join(rel)).unwrap();
        let json = open_sealed(key.as_ref(), b"taosbackup index v1", &sealed);
        let file: serde_json::Value =
            serde_json::from_slice(&zstd::decode_all(json.as_slice()).unwrap()).unwrap();
        for pack in file["packs"].as_array().unwrap() {
            let id = pack["id"].as_str().unwrap();
            for b in pack["blobs"].as_array().unwrap() {
                out.insert(
                    b["id"].as_str().unwrap().to_string(),
                    Stored {
                        pack: format!("data/{}/{id}", &id[..2]),
                        offset: b["offset"].as_u64().unwrap() as usize,
                        length: b["length"].as_u64().unwrap() as usize,
                    },
                );
            }
        }
    }
    out
}

/// The positions of a sealed object of `len` bytes that go through the whole check (both
/// verify modes and the restores; each such case costs ~20 ms, so every byte of every
/// object would take minutes): the first and last byte, both sides of the nonce/ciphertext
/// boundary of an encrypted object (bytes 11, 12), both sides of where the 16-byte GCM tag
/// and the 32-byte BLAKE3 check of an unencrypted object begin, and the middle. Every byte
/// goes through the read both of them start with (see the test).
fn sampled_positions(len: usize) -> Vec<usize> {
    let mut out = vec![
        0,
        11,
        12,
        len / 2,
        len - 33,
        len - 32,
        len - 17,
        len - 16,
        len - 1,
    ];
    out.sort_unstable();
    out.dedup();
    out
}

/// A file whose bytes can be flipped in place, one bit at a time.
struct Flipper {
    file: std::fs::File,
    bytes: Vec<u8>,
}

impl Flipper {
    fn new(path: &Path) -> Flipper {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let bytes = std::fs::read(path).unwrap();
        Flipper { file, bytes }
    }

    /// Flips bit `at % 8` of byte `at`; a second call undoes it.
    fn flip(&mut self, at: usize) {
        use std::os::unix::fs::FileExt;
        self.bytes[at] ^= 1 << (at % 8);
        self.file.write_at(&self.bytes[at..=at], at as u64).unwrap();
    }
}

async fn database_exists(h: &Harness, name: &str) -> bool {
    h.rows("SHOW DATABASES")
        .await
        .iter()
        .any(|r| r.contains(&format!("\"{name}\"")))
}

/// A full backup and an incremental that shares the full backup's unchanged shard, catalog
/// and super table part, in an unencrypted and an encrypted repository. Every tree object
/// (root trees, shards, catalogs, super table parts) is found inside its pack through the
/// index files and has every byte of its stored, sealed form flipped in turn (one bit); so
/// do the snapshot objects. Every flip must make the read that `verify` and `restore` start
/// with (`Repo::read_blob`, `Repo::load_snapshot`) fail as corrupt, naming the pack or the
/// snapshot object. At the [`sampled_positions`] the flip must also be named by `verify`,
/// structure only and with every pack read, and every backup that references the object
/// must refuse to restore, naming the object, before it creates the target database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_of_snapshot_tree_and_shard_objects_is_refused() {
    let mut h = harness().await;
    let tables = setup(&h, &OracleFeed::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let password = "flip password";
    let pw = Password::new(password).unwrap();
    let mut repos = Vec::new();
    for enc in [false, true] {
        let root = dir.path().join(if enc { "encrypted" } else { "plain" });
        let repo = Repo::init(
            Backend::local(&root).unwrap(),
            init_options(&h, enc),
            enc.then_some(&pw),
        )
        .await
        .unwrap();
        repos.push((enc, root, repo));
    }
    // The incremental adds rows to the normal table only: the super table's shard, the
    // catalog and the super table part are shared with the full backup.
    fill(&h, &tables, 0, 300).await;
    let mut fulls = Vec::new();
    for (_, _, repo) in &repos {
        h.repo = repo.clone();
        fulls.push(h.backup(EngineKind::Full, None).await.unwrap().snapshot);
    }
    let expected_full = h.contents(DB).await;
    fill(&h, &["n1".to_string()], 300, 100).await;
    let mut incrs = Vec::new();
    for (_, _, repo) in &repos {
        h.repo = repo.clone();
        incrs.push(h.backup(EngineKind::Time, None).await.unwrap().snapshot);
        repo.remove_stale_locks().await.unwrap();
    }
    let expected_incr = h.contents(DB).await;

    let structure = VerifyOptions::default();
    let read_all = VerifyOptions {
        read_data_percent: Some(100),
    };
    let (mut cases, mut objects_flipped, mut restores_refused, mut restores_exact) = (0, 0, 0, 0);
    let mut target_n = 0;
    let mut others_refused = 0;
    let mut bytes_flipped = 0;
    let started = std::time::Instant::now();
    for (((enc, root, repo), full), incr) in repos.iter().zip(&fulls).zip(&incrs) {
        let (enc, root) = (*enc, root.as_path());
        let pw = enc.then(|| Password::new(password).unwrap());
        let backend = Backend::local(root).unwrap();
        let stored = stored_blobs(root, enc.then_some(password));
        // One handle and one restore session for every flip: the index (which no flip
        // touches) is read at open, and neither caches a blob or a snapshot object, so
        // each verify and restore reads the damaged bytes from the files. Verify runs
        // without its lock (the same checks) to keep the many cases fast.
        let opened = Repo::open(backend.clone(), pw.as_ref()).await.unwrap();
        let session = opened.session("restore").await.unwrap();
        let backups = [(full, &expected_full), (incr, &expected_incr)];
        // Blob → (what it is, the backups that reference it).
        let mut tree_objects: BTreeMap<taosbackup_core::BlobId, (String, Vec<usize>)> =
            BTreeMap::new();
        for (b, (s, _)) in backups.iter().enumerate() {
            let mut add = |id: taosbackup_core::BlobId, role: &str| {
                tree_objects
                    .entry(id)
                    .or_insert_with(|| (role.to_string(), Vec::new()))
                    .1
                    .push(b);
            };
            add(s.tree, "tree");
            add(s.catalog, "catalog");
            let tree = repo.read_blob(&s.tree).await.unwrap();
            for n in TreeRoot::decode(&tree, "tree").unwrap().nodes {
                add(n.node, "tree node");
                let node = repo.read_blob(&n.node).await.unwrap();
                for e in TreeNode::decode(&node, "tree node").unwrap().shards {
                    add(e.shard, "shard");
                }
            }
            let catalog = repo.read_blob(&s.catalog).await.unwrap();
            for st in CatalogRoot::decode(&catalog, "catalog")
                .unwrap()
                .super_tables
            {
                add(st.def, "super table");
            }
        }
        let shared = |role: &str| {
            tree_objects
                .values()
                .any(|(r, by)| r == role && by.len() == 2)
        };
        assert!(
            shared("shard")
                && shared("catalog")
                && shared("super table")
                && !shared("tree")
                && !shared("tree node")
                && tree_objects.values().any(|(r, _)| r == "tree node"),
            "the incremental shares the unchanged objects: {tree_objects:?}"
        );

        for (id, (role, by)) in &tree_objects {
            let loc = &stored[&id.to_hex()];
            let mut pack = Flipper::new(&root.join(&loc.pack));
            let pack_name = loc.pack.rsplit('/').next().unwrap();
            let sampled = sampled_positions(loc.length);
            objects_flipped += 1;
            for pos in 0..loc.length {
                let label = format!(
                    "{role} {id} (encrypted: {enc}), byte {pos} of its {} stored bytes \
                     at {} + {}",
                    loc.length, loc.pack, loc.offset
                );
                pack.flip(loc.offset + pos);
                bytes_flipped += 1;
                match opened.read_blob(id).await {
                    Err(e @ Error::Corrupt { .. }) if e.to_string().contains(pack_name) => {}
                    other => panic!("{label}: read gave {other:?}"),
                }
                let Some(n) = sampled.iter().position(|&p| p == pos) else {
                    pack.flip(loc.offset + pos);
                    continue;
                };
                cases += 1;
                for options in [structure, read_all] {
                    let report = opened.verify_without_lock(options).await.unwrap();
                    assert!(
                        report.problems.iter().any(|p| {
                            let text = format!("{} {}", p.object, p.message);
                            text.contains(&id.to_hex()) && text.contains(pack_name)
                        }),
                        "{label}: verify {options:?} did not name it: {:?}",
                        report.problems
                    );
                }
                for (b, (s, expected)) in backups.iter().enumerate() {
                    // Restores of a backup that does not reference the object are checked
                    // once per object (they read nothing of it); references every time.
                    if !by.contains(&b) && n > 0 {
                        continue;
                    }
                    target_n += 1;
                    let target = format!("flip{target_n}");
                    let point = BackupPoint::Id(s.id.to_hex());
                    match restore_in(&h, &session, point, &target).await {
                        Err(e) if by.contains(&b) => {
                            assert!(e.contains(&id.to_hex()), "{label}: {e}");
                            assert!(
                                !database_exists(&h, &target).await,
                                "{label}: a refused restore created {target}"
                            );
                            restores_refused += 1;
                        }
                        Err(e) => panic!("{label}: restore of unaffected {} failed: {e}", s.id),
                        Ok(()) if by.contains(&b) => {
                            panic!("{label}: restore of {} succeeded", s.id)
                        }
                        Ok(()) => {
                            assert_eq!(&h.contents(&target).await, *expected, "{label}");
                            // The check a refused restore passes sees this one.
                            assert!(database_exists(&h, &target).await, "{label}");
                            restores_exact += 1;
                        }
                    }
                }
                pack.flip(loc.offset + pos);
            }
        }

        for (b, (s, _)) in backups.iter().enumerate() {
            let name = format!("snapshots/{}", s.id);
            let mut file = Flipper::new(&root.join(&name));
            let len = file.bytes.len();
            let sampled = sampled_positions(len);
            objects_flipped += 1;
            for pos in 0..len {
                let label = format!("{name} (encrypted: {enc}), byte {pos} of {len}");
                file.flip(pos);
                bytes_flipped += 1;
                match opened.load_snapshot(&s.id).await {
                    Err(Error::Corrupt { path, .. }) if path == name => {}
                    other => panic!("{label}: load gave {other:?}"),
                }
                let Some(n) = sampled.iter().position(|&p| p == pos) else {
                    file.flip(pos);
                    continue;
                };
                cases += 1;
                for options in [structure, read_all] {
                    let report = opened.verify_without_lock(options).await.unwrap();
                    assert!(
                        report.problems.iter().any(|p| p.object == name),
                        "{label}: verify {options:?} did not name it: {:?}",
                        report.problems
                    );
                }
                target_n += 1;
                let target = format!("flip{target_n}");
                match restore_in(&h, &session, BackupPoint::Id(s.id.to_hex()), &target).await {
                    Err(e) => {
                        assert!(e.contains(&s.id.to_hex()), "{label}: {e}");
                        assert!(!database_exists(&h, &target).await, "{label}");
                        restores_refused += 1;
                    }
                    Ok(()) => panic!("{label}: restore succeeded"),
                }
                if n == 0 {
                    // The other backup does not depend on this snapshot object: named by its
                    // id it restores exactly, though the listing meets the damaged object.
                    let (other, other_expected) = backups[1 - b];
                    target_n += 1;
                    let target = format!("flip{target_n}");
                    let point = BackupPoint::Id(other.id.to_hex());
                    match restore_in(&h, &session, point, &target).await {
                        Err(e) => panic!("{label}: restore of {} refused: {e}", other.id),
                        Ok(()) => {
                            assert_eq!(&h.contents(&target).await, other_expected, "{label}");
                            restores_exact += 1;
                        }
                    }
                    // `latest` could be the damaged one: refused, naming it.
                    target_n += 1;
                    let target = format!("flip{target_n}");
                    match restore_in(&h, &session, BackupPoint::Latest, &target).await {
                        Err(e) => {
                            assert!(e.contains(&s.id.to_hex()), "{label}: latest: {e}");
                            assert!(!database_exists(&h, &target).await, "{label}");
                            others_refused += 1;
                        }
                        Ok(()) => panic!("{label}: latest restored past a damaged snapshot"),
                    }
                }
                file.flip(pos);
            }
        }
        session.finish().await.unwrap();
        // A fresh handle (index reread) sees the repository whole again.
        let report = Repo::open(backend, pw.as_ref())
            .await
            .unwrap()
            .verify(read_all)
            .await
            .unwrap();
        assert!(report.is_ok(), "undone flips: {:?}", report.problems);
    }
    println!(
        "flips: {objects_flipped} objects, {bytes_flipped} bytes flipped, each read refused; \
         {cases} of them named by verify (structure and read-data), \
         {restores_refused} restores refused, {restores_exact} \
         restores of unaffected backups exact, {others_refused} restores of `latest` \
         refused for a damaged snapshot object; {:.1} s",
        started.elapsed().as_secs_f64()
    );
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
