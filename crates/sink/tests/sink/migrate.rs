//! `migrate`: a format-1 repository becomes format 3 without rewriting data packs; every
//! backup describes what its format-1 chain folded to; interrupted runs finish on rerun. A
//! format-2 repository switches to format 3 (its config alone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use taosbackup_core::{
    BackupId, BackupKind, BackupStats, BlobId, BlockRecord, BlockRef, BucketWidth, CatalogRoot,
    CatalogSnapshot, DatabaseDef, DatabaseState, MANIFEST_VERSION, Manifest, Precision, Shard,
    ShardEncoding, SourceInfo, SuperTableDef, SuperTablePart, TableDef, TableKind, TableRecord,
    TagValue, Tree, Value, chain_of, fold,
};
use taosbackup_sink::{
    Backend, Error, FORMAT1_VERSION, FORMAT2_VERSION, InitOptions, KdfParams, OpenOptions,
    REPO_VERSION, Repo, VerifyOptions,
};

use crate::common::*;
use crate::faults::Faulty;

fn catalog(db: &str, children: &[(&str, i32)], normal: &[&str]) -> CatalogSnapshot {
    let mut tables: Vec<TableDef> = children
        .iter()
        .map(|(name, tag)| TableDef {
            name: (*name).into(),
            kind: TableKind::Child,
            super_table: Some("meters".into()),
            tags: vec![TagValue {
                name: "g".into(),
                value: Value::Int(*tag),
            }],
            comment: None,
            ttl: None,
            columns: vec![],
        })
        .collect();
    tables.extend(normal.iter().map(|name| TableDef {
        name: (*name).into(),
        kind: TableKind::Normal,
        super_table: None,
        tags: vec![],
        comment: Some("n".into()),
        ttl: None,
        columns: vec![],
    }));
    CatalogSnapshot {
        database: DatabaseDef {
            name: db.into(),
            precision: Precision::Ms,
            ddl: format!("CREATE DATABASE `{db}`"),
        },
        super_tables: vec![SuperTableDef {
            name: "meters".into(),
            columns: vec![],
            tags: vec![],
            ddl: "CREATE STABLE `meters` (ts TIMESTAMP, v INT) TAGS (g INT)".into(),
        }],
        skipped: vec![],
        tables,
    }
}

fn data(blob: BlobId, bucket: i64) -> BlockRecord {
    BlockRecord::Data(BlockRef {
        blob,
        rows: 3,
        min_ts: bucket * 86_400_000,
        max_ts: bucket * 86_400_000 + 2,
    })
}

#[allow(clippy::too_many_arguments)]
fn manifest(
    id: u8,
    parent: Option<u8>,
    chain: u8,
    db: &str,
    at: i64,
    catalog: CatalogSnapshot,
    tables: Vec<(&str, TableRecord)>,
) -> Manifest {
    let bid = |n: u8| BackupId::from_bytes([n; 16]);
    let t = DateTime::<Utc>::from_timestamp(1_800_000_000 + at, 0).unwrap_or_default();
    Manifest {
        version: MANIFEST_VERSION,
        id: bid(id),
        parent: parent.map(bid),
        chain: bid(chain),
        database: db.into(),
        kind: if parent.is_some() {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        },
        engine: "bitmap".into(),
        started_at: t,
        finished_at: t,
        source: SourceInfo::default(),
        bucket_width: BucketWidth::DAY,
        catalog,
        tables: tables
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect(),
        feed_positions: None,
        stats: BackupStats::default(),
    }
}

fn present(blocks: Vec<(i64, BlockRecord)>) -> TableRecord {
    TableRecord::Present {
        blocks: blocks.into_iter().collect(),
    }
}

/// A format-1 repository: two chains of `power` (a drop, a delete, a tag change, a new
/// table) and one backup of `other`.
async fn format1_repo(backend: Backend) -> (Repo, Vec<Manifest>) {
    let pw = password();
    let options = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        pack_size: 64 * 1024,
        format_version: FORMAT1_VERSION,
        ..InitOptions::default()
    };
    let repo = Repo::init(backend, options, Some(&pw)).await.unwrap();
    let session = repo.session("backup").await.unwrap();
    let mut b = Vec::new();
    for i in 0..12 {
        b.push(session.put_blob(&noise(500 + i, 3000)).await.unwrap());
    }
    session.flush_index().await.unwrap();
    session.finish().await.unwrap();
    let kids = [("d1", 1), ("d2", 2), ("d3", 3)];
    let f1 = manifest(
        1,
        None,
        1,
        "power",
        0,
        catalog("power", &kids, &["log"]),
        vec![
            ("d1", present(vec![(1, data(b[0], 1)), (2, data(b[1], 2))])),
            ("d2", present(vec![(1, data(b[2], 1)), (2, data(b[3], 2))])),
            ("d3", present(vec![(1, data(b[4], 1))])),
            ("log", present(vec![])),
        ],
    );
    let i1 = manifest(
        2,
        Some(1),
        1,
        "power",
        10,
        catalog("power", &[("d1", 1), ("d2", 2), ("d6", 6)], &["log"]),
        vec![
            ("d1", present(vec![(3, data(b[5], 3))])),
            ("d2", present(vec![(2, BlockRecord::Deleted)])),
            ("d3", TableRecord::Dropped),
            ("d6", present(vec![(1, data(b[6], 1))])),
        ],
    );
    let i2 = manifest(
        3,
        Some(2),
        1,
        "power",
        20,
        catalog("power", &[("d1", 1), ("d2", 22), ("d6", 6)], &["log"]),
        vec![
            ("d1", present(vec![(1, data(b[7], 1))])),
            ("log", present(vec![(5, data(b[8], 5))])),
        ],
    );
    let f2 = manifest(
        4,
        None,
        4,
        "power",
        30,
        catalog("power", &[("d1", 1), ("d6", 6)], &[]),
        vec![
            ("d1", present(vec![(1, data(b[7], 1))])),
            ("d6", present(vec![(1, data(b[9], 1))])),
        ],
    );
    let o1 = manifest(
        5,
        None,
        5,
        "other",
        5,
        catalog("other", &[("x", 1)], &[]),
        vec![("x", present(vec![(9, data(b[10], 9))]))],
    );
    let all = vec![f1, i1, i2, f2, o1];
    for m in &all {
        repo.put_manifest(m).await.unwrap();
    }
    (repo, all)
}

/// The state snapshot `id` describes, read through its tree, shards and catalog.
async fn state_of(repo: &Repo, id: &BackupId) -> DatabaseState {
    let s = repo.load_snapshot(id).await.unwrap();
    let root = CatalogRoot::decode(&repo.read_blob(&s.catalog).await.unwrap(), "c").unwrap();
    let mut super_tables = Vec::new();
    for st in root.super_tables {
        let part = SuperTablePart::decode(&repo.read_blob(&st.def).await.unwrap(), "p").unwrap();
        super_tables.push(part.def);
    }
    let (tree, _) = Tree::read(
        s.tree,
        "of a migrated backup",
        async |id, _| repo.read_blob(&id).await,
        |e| panic!("{e}"),
    )
    .await
    .unwrap();
    let (mut tables, mut blocks) = (Vec::new(), BTreeMap::new());
    for e in &tree.shards {
        let bytes = repo.read_blob(&e.shard).await.unwrap();
        assert!(bytes.starts_with(b"TBSH"), "migrate writes binary shards");
        let shard = Shard::decode(&bytes, "s").unwrap();
        shard.check_against(e, "s").unwrap();
        for t in shard.tables {
            blocks.insert(t.def.name.clone(), t.blocks);
            tables.push(t.def);
        }
    }
    DatabaseState {
        catalog: CatalogSnapshot {
            database: root.database,
            super_tables,
            skipped: root.skipped,
            tables,
        },
        tables: blocks,
    }
}

fn normalised(mut s: DatabaseState) -> DatabaseState {
    s.catalog.tables.sort_by(|a, b| a.name.cmp(&b.name));
    s.catalog.super_tables.sort_by(|a, b| a.name.cmp(&b.name));
    s
}

async fn names(store: &Faulty, prefix: &str) -> BTreeSet<String> {
    use futures::StreamExt;
    use object_store::ObjectStore;
    let mut out = BTreeSet::new();
    let mut list = store.list(None);
    while let Some(m) = list.next().await {
        let p = m.unwrap().location.to_string();
        if p.starts_with(prefix) {
            out.insert(p);
        }
    }
    out
}

#[tokio::test]
async fn migrate_converts_every_backup_resumes_when_interrupted_and_reuses_the_data() {
    let store = Arc::new(Faulty::new());
    let backend = Backend::from_store(store.clone(), "", "mem://m").unwrap();
    let (_, manifests) = format1_repo(backend.clone()).await;
    let pw = password();
    let format1 = OpenOptions {
        allow_format1: true,
        ..OpenOptions::default()
    };
    // Any other command names the way out.
    match Repo::open(backend.clone(), Some(&pw)).await {
        Err(e @ Error::Format1Repository { .. }) => {
            assert!(
                e.to_string().contains("taosbackup migrate --repo mem://m"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let packs_before = names(&store, "data/").await;
    let everything_before = names(&store, "").await;

    // Dry run: the report, and nothing written.
    let repo = Repo::open_with(backend.clone(), Some(&pw), format1.clone())
        .await
        .unwrap();
    let dry = repo.migrate(Some(&pw), true).await.unwrap();
    assert_eq!((dry.manifests, dry.snapshots_written), (5, 5), "{dry:?}");
    assert!(dry.tree_objects_new > 0);
    let mut after_dry = names(&store, "").await;
    after_dry.retain(|p| !p.starts_with("locks/"));
    assert_eq!(after_dry, everything_before, "a dry run writes nothing");

    // Interrupted before the config switch: still format 1; the snapshots are written.
    store.fail(Some("config.migrate$"));
    let e = repo.migrate(Some(&pw), false).await.unwrap_err();
    assert!(e.to_string().contains("config.migrate"), "{e}");
    store.fail(None);
    assert!(matches!(
        Repo::open(backend.clone(), Some(&pw)).await,
        Err(Error::Format1Repository { .. })
    ));
    assert_eq!(names(&store, "snapshots/").await.len(), 5);

    // Interrupted between config.check and config: other commands say so; migrate finishes.
    let repo = Repo::open_with(backend.clone(), Some(&pw), format1.clone())
        .await
        .unwrap();
    store.fail(Some("config$"));
    repo.migrate(Some(&pw), false).await.unwrap_err();
    store.fail(None);
    match Repo::open(backend.clone(), Some(&pw)).await {
        Err(e @ Error::MigrationInterrupted { .. }) => {
            assert!(e.to_string().contains("taosbackup migrate"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(Repo::resume_migration(&backend).await.unwrap());
    let repo = Repo::open_with(backend.clone(), Some(&pw), format1.clone())
        .await
        .unwrap();
    let done = repo.migrate(Some(&pw), false).await.unwrap();
    assert!(done.already_migrated, "{done:?}");
    assert_eq!(done.manifests_deleted, 5);

    // Format 3 now, with one key (bound to the new config) and no manifest left.
    let repo = Repo::open(backend.clone(), Some(&pw)).await.unwrap();
    assert_eq!(repo.config().version, REPO_VERSION);
    assert_eq!(names(&store, "keys/").await.len(), 1);
    assert!(names(&store, "manifests/").await.is_empty());
    assert!(names(&store, "config.migrate").await.is_empty());
    assert!(
        packs_before.is_subset(&names(&store, "data/").await),
        "no data pack was rewritten or deleted"
    );
    // Every backup describes what its format-1 chain folded to.
    for m in &manifests {
        let chain = chain_of(&manifests, m).unwrap();
        let want = normalised(fold(&chain).unwrap());
        let got = normalised(state_of(&repo, &m.id).await);
        assert_eq!(got, want, "backup {}", m.id);
        let s = repo.load_snapshot(&m.id).await.unwrap();
        assert_eq!((s.parent, s.chain, s.kind), (m.parent, m.chain, m.kind));
    }
    let report = repo
        .verify(VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 5);
    // Idempotent.
    let again = Repo::open_with(backend.clone(), Some(&pw), format1)
        .await
        .unwrap()
        .migrate(Some(&pw), false)
        .await
        .unwrap();
    assert!(
        again.already_migrated && again.manifests_deleted == 0,
        "{again:?}"
    );
}

#[tokio::test]
async fn migrate_refuses_several_key_files() {
    let backend = Backend::memory();
    let (repo, _) = format1_repo(backend.clone()).await;
    repo.add_key(
        &taosbackup_sink::Password::new("other").unwrap(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let e = repo.migrate(Some(&password()), false).await.unwrap_err();
    assert!(e.to_string().contains("key remove"), "{e}");
    assert!(matches!(
        Repo::open(backend, Some(&password())).await,
        Err(Error::Format1Repository { .. })
    ));
}

/// A format-2 repository (JSON shards) switches to format 3 by its config alone: a dry run
/// writes nothing, an interrupted switch is finished by a rerun, the key still opens it, and
/// new shards are binary from then on.
#[tokio::test]
async fn migrate_switches_a_format2_repository_to_format3() {
    let store = Arc::new(Faulty::new());
    let backend = Backend::from_store(store.clone(), "", "mem://m2").unwrap();
    let pw = password();
    let options = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        format_version: FORMAT2_VERSION,
        ..InitOptions::default()
    };
    let repo = Repo::init(backend.clone(), options, Some(&pw))
        .await
        .unwrap();
    assert_eq!(repo.shard_encoding(), ShardEncoding::Json);
    let session = repo.session("backup").await.unwrap();
    let blob = session.put_blob(&noise(7, 3000)).await.unwrap();
    session.flush_index().await.unwrap();
    session.finish().await.unwrap();
    let everything_before = names(&store, "").await;

    let dry = repo.migrate(Some(&pw), true).await.unwrap();
    assert_eq!(dry.from_version, FORMAT2_VERSION, "{dry:?}");
    let mut after_dry = names(&store, "").await;
    after_dry.retain(|p| !p.starts_with("locks/"));
    assert_eq!(after_dry, everything_before, "a dry run writes nothing");
    let repo = Repo::open(backend.clone(), Some(&pw)).await.unwrap();
    assert_eq!(repo.config().version, FORMAT2_VERSION);

    // Interrupted between config.check and config: other commands say so; a rerun ends it.
    store.fail(Some("config$"));
    repo.migrate(Some(&pw), false).await.unwrap_err();
    store.fail(None);
    assert!(matches!(
        Repo::open(backend.clone(), Some(&pw)).await,
        Err(Error::MigrationInterrupted { .. })
    ));
    assert!(Repo::resume_migration(&backend).await.unwrap());
    let repo = Repo::open(backend.clone(), Some(&pw)).await.unwrap();
    let done = repo.migrate(Some(&pw), false).await.unwrap();
    assert!(done.already_migrated, "{done:?}");

    let repo = Repo::open(backend.clone(), Some(&pw)).await.unwrap();
    assert_eq!(repo.config().version, REPO_VERSION);
    assert_eq!(repo.shard_encoding(), ShardEncoding::Binary);
    assert_eq!(names(&store, "keys/").await.len(), 1);
    assert!(names(&store, "config.migrate").await.is_empty());
    assert_eq!(repo.read_blob(&blob).await.unwrap(), noise(7, 3000));
}
