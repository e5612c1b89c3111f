//! Shared test harness: the emulator, a source, a memory repository and an oracle feed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};
use taosbackup_core::BackupKind;
use taosbackup_core::{
    BucketWidth, ChangeBatch, ChangeEvent, ChangeFeed, FeedStart, NoProgress, Positions, Source,
    SourceError, SourceInfo, TableEvent,
};
use taosbackup_engine::{
    BackupPoint, BackupRequest, CancellationToken, ChangeTracking, EngineError, EngineKind, OnGap,
    RestoreRequest, TrackingConfig,
};
use taosbackup_sink::{Backend, Forget, InitOptions, KdfParams, Repo, RetentionPolicy, Session};
use taosbackup_source::{
    CatalogResolver, ConnectOptions, TaosSource, TmqFeed, TmqFeedOptions, WalFeed, WalFeedOptions,
};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle};

pub const DB: &str = "sc";
/// Rows live on a grid of whole seconds over ten minutes: ten one-minute buckets per table,
/// and random inserts overwrite existing rows often.
pub const BASE: i64 = 1_760_000_040_000;
pub const SLOTS: i64 = 600;

/// A change feed that reports exactly what the test did.
#[derive(Clone, Default)]
pub struct OracleFeed {
    queue: Arc<Mutex<Vec<ChangeEvent>>>,
    delivered: Arc<Mutex<i64>>,
    committed: Arc<Mutex<Option<Positions>>>,
}

impl OracleFeed {
    pub fn push(&self, e: ChangeEvent) {
        self.queue.lock().unwrap().push(e);
    }
}

#[async_trait]
impl ChangeFeed for OracleFeed {
    fn name(&self) -> &'static str {
        "oracle"
    }

    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError> {
        let delivered = *self.delivered.lock().unwrap();
        Ok(match committed.get("all") {
            Some(&p) if p == delivered => FeedStart::Continued,
            Some(&p) => FeedStart::Gap {
                reason: format!("committed {p}, feed at {delivered}"),
            },
            None => FeedStart::Fresh {
                reason: "no positions".into(),
            },
        })
    }

    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
        let events: Vec<ChangeEvent> = std::mem::take(&mut *self.queue.lock().unwrap());
        if events.is_empty() {
            return Ok(None);
        }
        let mut d = self.delivered.lock().unwrap();
        *d += events.len() as i64;
        Ok(Some(ChangeBatch {
            events,
            positions: [("all".to_string(), *d)].into(),
        }))
    }

    fn positions(&self) -> Positions {
        [("all".to_string(), *self.delivered.lock().unwrap())].into()
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError> {
        *self.committed.lock().unwrap() = Some(positions.clone());
        Ok(())
    }
}

pub struct Harness {
    pub emu: EmulatorHandle,
    pub taos: Taos,
    pub source: Arc<TaosSource>,
    pub repo: Repo,
    pub width: BucketWidth,
}

/// A plain connector connection to `emu` with Nagle's algorithm off, as the tool makes its
/// own (taosbackup_core::net): taos-ws opens the socket at the first request, then the
/// option is set.
pub async fn connect(emu: &EmulatorHandle) -> Taos {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    taos.exec("SELECT SERVER_VERSION()").await.unwrap();
    taosbackup_core::net::disable_nagle().expect("TCP_NODELAY on the test's sockets");
    taos
}

pub async fn harness() -> Harness {
    harness_with(taosbackup_sink::REPO_VERSION).await
}

/// [`harness`] with a repository of format `format_version` (2: JSON shards, as builds before
/// format 3 wrote them).
pub async fn harness_with(format_version: u32) -> Harness {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let taos = connect(&emu).await;
    let mut o = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    o.pool_size = 4;
    o.request_timeout = Duration::from_secs(10);
    let source = Arc::new(TaosSource::connect(o).expect("source"));
    let width = BucketWidth::from_seconds(60).unwrap();
    let repo = Repo::init(
        Backend::from_url("memory://").unwrap(),
        InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            bucket_width: width,
            pack_size: 256 * 1024,
            format_version,
            ..InitOptions::default()
        },
        None,
    )
    .await
    .unwrap();
    Harness {
        emu,
        taos,
        source,
        repo,
        width,
    }
}

impl Harness {
    pub async fn exec(&self, sql: &str) {
        self.taos
            .exec(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn rows(&self, sql: &str) -> Vec<String> {
        let mut rs = self
            .taos
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let recs = rs.to_records().await.unwrap();
        recs.into_iter().map(|r| format!("{r:?}")).collect()
    }

    pub async fn session(&self) -> Session {
        self.repo.session("test").await.unwrap()
    }

    /// Every table of `db` → its rows in timestamp order; plus the tags of every table.
    pub async fn contents(&self, db: &str) -> BTreeMap<String, Vec<String>> {
        let cat = self.source.catalog(db).await.unwrap();
        let mut out = BTreeMap::new();
        for t in &cat.tables {
            let mut rows = self
                .rows(&format!("SELECT * FROM {db}.{} ORDER BY ts", t.name))
                .await;
            rows.push(format!("tags {:?}", t.tags));
            out.insert(t.name.clone(), rows);
        }
        for s in &cat.super_tables {
            out.insert(
                format!("stable {}", s.name),
                vec![format!("{:?} {:?}", s.columns, s.tags)],
            );
        }
        out
    }

    /// The request the tests start from.
    pub fn request(&self, engine: EngineKind) -> BackupRequest {
        BackupRequest {
            database: DB.into(),
            engine,
            force_full: false,
            on_gap: OnGap::Full,
            parallel: 4,
            tables_per_query: taosbackup_engine::DEFAULT_TABLES_PER_QUERY,
            bucket_width: self.width,
            dictionaries: true,
            source_info: SourceInfo::default(),
        }
    }

    pub async fn backup(
        &self,
        engine: EngineKind,
        tracking: Option<&mut ChangeTracking>,
    ) -> Result<taosbackup_engine::BackupReport, EngineError> {
        self.backup_with(&self.request(engine), tracking, &CancellationToken::new())
            .await
    }

    pub async fn backup_with(
        &self,
        req: &BackupRequest,
        tracking: Option<&mut ChangeTracking>,
        cancel: &CancellationToken,
    ) -> Result<taosbackup_engine::BackupReport, EngineError> {
        let session = Arc::new(self.session().await);
        let r = taosbackup_engine::backup(
            self.source.clone(),
            session.clone(),
            tracking,
            req,
            Arc::new(NoProgress),
            cancel,
        )
        .await;
        // The engine has joined its export tasks: the session is this test's alone again.
        let Ok(session) = Arc::try_unwrap(session) else {
            panic!("a task of the backup still holds the session after it returned");
        };
        session.finish().await.unwrap();
        r
    }

    /// The restore request the tests start from.
    pub fn restore_request(&self, point: BackupPoint, target: &str) -> RestoreRequest {
        RestoreRequest {
            point,
            database: Some(DB.into()),
            target_database: Some(target.into()),
            tables: vec![],
            stables: vec![],
            into_existing: false,
            keep_override_days: None,
            dry_run: false,
            parallel: 4,
        }
    }

    pub async fn restore_with(
        &self,
        req: &RestoreRequest,
    ) -> Result<taosbackup_engine::RestoreReport, EngineError> {
        let session = self.session().await;
        let r = taosbackup_engine::restore(
            &*self.source,
            &session,
            req,
            &NoProgress,
            &CancellationToken::new(),
        )
        .await;
        session.finish().await.unwrap();
        r
    }

    pub async fn restore(
        &self,
        point: BackupPoint,
        target: &str,
    ) -> taosbackup_engine::RestoreReport {
        self.restore_with(&self.restore_request(point, target))
            .await
            .unwrap_or_else(|e| panic!("restore into {target}: {e}"))
    }
}

/// The database the scenarios start from.
pub async fn setup(h: &Harness, feed: &OracleFeed) -> Vec<String> {
    h.exec(&format!("CREATE DATABASE {DB} PRECISION 'ms' VGROUPS 2"))
        .await;
    h.exec(&format!(
        "CREATE STABLE {DB}.meters (ts TIMESTAMP, current FLOAT, voltage INT, note VARCHAR(16)) \
         TAGS (location VARCHAR(24), groupid INT)"
    ))
    .await;
    let mut tables = Vec::new();
    for i in 0..4 {
        let name = format!("d{i}");
        h.exec(&format!(
            "CREATE TABLE {DB}.{name} USING {DB}.meters TAGS ('loc{i}', {i})"
        ))
        .await;
        feed.push(ChangeEvent::Table {
            table: name.clone(),
            event: TableEvent::Created,
        });
        tables.push(name);
    }
    h.exec(&format!(
        "CREATE TABLE {DB}.n1 (ts TIMESTAMP, v BIGINT, s NCHAR(8))"
    ))
    .await;
    feed.push(ChangeEvent::Table {
        table: "n1".into(),
        event: TableEvent::Created,
    });
    tables.push("n1".into());
    tables
}

/// Which change feed drives the bitmap engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Oracle,
    Tmq,
    /// The `wal` feed over the emulator's TDengine-format WAL files under `dir/tdengine`
    /// (turned on by the first `open_tracking`, so they start after `setup`).
    Wal,
}

pub async fn open_tracking(
    h: &Harness,
    oracle: &OracleFeed,
    kind: Feed,
    dir: &Path,
) -> ChangeTracking {
    let feed: Box<dyn taosbackup_core::ChangeFeed> = match kind {
        Feed::Oracle => Box::new(oracle.clone()),
        Feed::Tmq => {
            let o = ConnectOptions::new(h.emu.dsn()).with_credentials("root", "taosdata");
            Box::new(TmqFeed::new(o, TmqFeedOptions::new("scenario-repo", DB)).unwrap())
        }
        Feed::Wal => {
            let wal_dir = dir.join("tdengine");
            h.emu.store().enable_wal_files(&wal_dir).unwrap();
            let o = ConnectOptions::new(h.emu.dsn()).with_credentials("root", "taosdata");
            let resolver = CatalogResolver::connect(&o, DB).unwrap();
            let opts = WalFeedOptions::new(&wal_dir, DB, dir.join("wal-feed.state"));
            Box::new(WalFeed::new(opts, Box::new(resolver)))
        }
    };
    ChangeTracking::open(
        feed,
        TrackingConfig::new(dir.join("tracker.state")),
        h.width,
    )
    .await
    .unwrap()
}

fn is_normal(t: &str) -> bool {
    t.starts_with('n')
}

/// One random step; reports its changes to `feed`.
async fn step(
    h: &Harness,
    rng: &mut StdRng,
    tables: &mut Vec<String>,
    next: &mut u32,
    extra: &mut u32,
    feed: &OracleFeed,
) -> String {
    let pick =
        |rng: &mut StdRng, tables: &Vec<String>| tables[rng.random_range(0..tables.len())].clone();
    let op = rng.random_range(0..100);
    if tables.is_empty() || op < 45 {
        if tables.is_empty() {
            return create_child(h, tables, next, feed).await;
        }
        // Inserts: new rows, late rows and overwrites all come from the shared grid.
        let t = pick(rng, tables);
        let n = rng.random_range(1..20);
        let mut ts = Vec::new();
        let mut values = String::new();
        for _ in 0..n {
            let k = rng.random_range(0..SLOTS);
            let x = BASE + k * 1000;
            ts.push(x);
            let v = rng.random_range(-1000..1000);
            if is_normal(&t) {
                values.push_str(&format!(" ({x}, {v}, 'n{v}')"));
            } else {
                values.push_str(&format!(" ({x}, {v}.5, {v}, 'v{v}')"));
            }
        }
        let cols = if is_normal(&t) {
            "(ts, v, s)"
        } else {
            "(ts, current, voltage, note)"
        };
        h.exec(&format!("INSERT INTO {DB}.{t} {cols} VALUES{values}"))
            .await;
        feed.push(ChangeEvent::Rows {
            table: t.clone(),
            timestamps: ts,
        });
        return format!("insert {n} into {t}");
    }
    if op < 60 {
        let t = pick(rng, tables);
        let a = BASE + rng.random_range(0..SLOTS) * 1000;
        let b = a + rng.random_range(0..120) * 1000;
        h.exec(&format!(
            "DELETE FROM {DB}.{t} WHERE ts >= {a} AND ts <= {b}"
        ))
        .await;
        feed.push(ChangeEvent::Delete {
            table: t.clone(),
            start: a,
            end: b,
        });
        return format!("delete {t} [{a}, {b}]");
    }
    if op < 70 {
        return create_child(h, tables, next, feed).await;
    }
    if op < 78 {
        let t = pick(rng, tables);
        h.exec(&format!("DROP TABLE {DB}.{t}")).await;
        feed.push(ChangeEvent::Table {
            table: t.clone(),
            event: TableEvent::Dropped,
        });
        tables.retain(|x| x != &t);
        if rng.random_bool(0.5) && !is_normal(&t) {
            // Re-create under the same name.
            let g = rng.random_range(100..200);
            h.exec(&format!(
                "CREATE TABLE {DB}.{t} USING {DB}.meters TAGS ('again', {g})"
            ))
            .await;
            feed.push(ChangeEvent::Table {
                table: t.clone(),
                event: TableEvent::Created,
            });
            tables.push(t.clone());
            return format!("drop and re-create {t}");
        }
        return format!("drop {t}");
    }
    if op < 84 {
        *extra += 1;
        let c = format!("x{extra}");
        if rng.random_bool(0.5) {
            h.exec(&format!("ALTER STABLE {DB}.meters ADD COLUMN {c} INT"))
                .await;
            for t in tables.iter().filter(|t| !is_normal(t)) {
                feed.push(ChangeEvent::Table {
                    table: t.clone(),
                    event: TableEvent::SchemaChanged,
                });
            }
            return format!("add column {c} to meters");
        }
        if tables.iter().any(|t| t == "n1") {
            h.exec(&format!("ALTER TABLE {DB}.n1 ADD COLUMN {c} DOUBLE"))
                .await;
            feed.push(ChangeEvent::Table {
                table: "n1".into(),
                event: TableEvent::SchemaChanged,
            });
            return format!("add column {c} to n1");
        }
        return "nothing".into();
    }
    let children: Vec<&String> = tables.iter().filter(|t| !is_normal(t)).collect();
    if children.is_empty() {
        return "nothing".into();
    }
    let t = children[rng.random_range(0..children.len())].clone();
    let g = rng.random_range(0..1000);
    h.exec(&format!("ALTER TABLE {DB}.{t} SET TAG groupid = {g}"))
        .await;
    feed.push(ChangeEvent::Table {
        table: t.clone(),
        event: TableEvent::TagsChanged,
    });
    format!("set tag of {t}")
}

async fn create_child(
    h: &Harness,
    tables: &mut Vec<String>,
    next: &mut u32,
    feed: &OracleFeed,
) -> String {
    *next += 1;
    let t = format!("e{next}");
    h.exec(&format!(
        "CREATE TABLE {DB}.{t} USING {DB}.meters TAGS ('new', {next})"
    ))
    .await;
    feed.push(ChangeEvent::Table {
        table: t.clone(),
        event: TableEvent::Created,
    });
    tables.push(t.clone());
    format!("create {t}")
}

/// A format-2 repository switched to format 3 by `migrate` (the config alone), reopened and
/// verified.
pub async fn through_format2_switch(repo: &Repo) -> Repo {
    let report = repo.migrate(None, false).await.unwrap();
    assert_eq!(report.from_version, taosbackup_sink::FORMAT2_VERSION);
    let migrated = Repo::open(repo.backend().clone(), None).await.unwrap();
    assert_eq!(migrated.config().version, taosbackup_sink::REPO_VERSION);
    let verified = migrated.verify(Default::default()).await.unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    migrated
}

/// `repo` rewritten as a format-1 repository — one full manifest per backup, with the
/// backup's id, metadata and state and the same data blobs — and migrated to format 3
/// as `taosbackup migrate` does: what a format-1 user's repository becomes.
pub async fn through_format1(repo: &Repo, width: BucketWidth) -> Repo {
    let f1 = Repo::init(
        Backend::from_url("memory://").unwrap(),
        InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            bucket_width: width,
            pack_size: 256 * 1024,
            format_version: taosbackup_sink::FORMAT1_VERSION,
            ..InitOptions::default()
        },
        None,
    )
    .await
    .unwrap();
    let reader = repo.session("migrate test").await.unwrap();
    let writer = f1.session("backup").await.unwrap();
    let mut manifests = Vec::new();
    for s in repo.snapshots().await.unwrap() {
        let (state, _) = taosbackup_engine::load_state(&reader, &s, &[], &[])
            .await
            .unwrap();
        let mut tables = BTreeMap::new();
        for (name, blocks) in state.tables {
            for b in blocks.values() {
                if !writer.holds(&b.blob) {
                    let data = repo.read_blob(&b.blob).await.unwrap();
                    assert_eq!(writer.put_blob(&data).await.unwrap(), b.blob);
                }
            }
            let blocks = blocks
                .into_iter()
                .map(|(k, r)| (k, taosbackup_core::BlockRecord::Data(r)))
                .collect();
            tables.insert(name, taosbackup_core::TableRecord::Present { blocks });
        }
        manifests.push(taosbackup_core::Manifest {
            version: taosbackup_core::MANIFEST_VERSION,
            id: s.id,
            parent: None,
            chain: s.id,
            database: s.database,
            kind: BackupKind::Full,
            engine: s.engine,
            started_at: s.started_at,
            finished_at: s.finished_at,
            source: s.source,
            bucket_width: s.bucket_width,
            catalog: state.catalog,
            tables,
            feed_positions: s.feed_positions,
            stats: s.stats,
        });
    }
    reader.finish().await.unwrap();
    writer.flush_index().await.unwrap();
    writer.finish().await.unwrap();
    for m in &manifests {
        f1.put_manifest(m).await.unwrap();
    }
    let report = f1.migrate(None, false).await.unwrap();
    assert_eq!(report.snapshots_written, manifests.len());
    let migrated = Repo::open(f1.backend().clone(), None).await.unwrap();
    let verified = migrated.verify(Default::default()).await.unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    migrated
}

/// Runs `steps` random steps with a backup after each, then restores every point and
/// compares it with the database as it was.
pub async fn scenario(seed: u64, steps: usize, engine: EngineKind, kind: Feed, dir: &Path) {
    // Every other scenario starts on a format-2 repository (JSON shards), which its
    // migration switches to format 3; the others go through format 1.
    let format = if seed % 2 == 1 {
        taosbackup_sink::FORMAT2_VERSION
    } else {
        taosbackup_sink::REPO_VERSION
    };
    let mut h = harness_with(format).await;
    let feed = OracleFeed::default();
    let mut tables = setup(&h, &feed).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tracking = if engine == EngineKind::Bitmap {
        Some(open_tracking(&h, &feed, kind, dir).await)
    } else {
        None
    };
    let (mut next, mut extra) = (0u32, 0u32);
    let mut points = Vec::new();
    let mut forgotten = std::collections::BTreeSet::new();
    let mut log = Vec::new();
    for i in 0..steps {
        if i > 0 && i % 4 == 0 && tracking.is_some() {
            // A restart: the persisted tracker and the committed feed positions carry on.
            drop(tracking.take());
            tracking = Some(open_tracking(&h, &feed, kind, dir).await);
            log.push("restart".into());
        }
        if i > 0 {
            let n = rng.random_range(1..4);
            for _ in 0..n {
                log.push(step(&h, &mut rng, &mut tables, &mut next, &mut extra, &feed).await);
            }
        }
        let report = h.backup(engine, tracking.as_mut()).await.unwrap();
        let expected_kind = if i == 0 || engine == EngineKind::Full {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        assert_eq!(
            report.snapshot.kind, expected_kind,
            "seed {seed} step {i}: {:?}",
            report.full_reason
        );
        log.push(format!(
            "backup {i}: {:?} {} blocks {} tombstones",
            report.snapshot.kind, report.snapshot.stats.blocks, report.snapshot.stats.tombstones
        ));
        if i == 0 {
            assert_eq!(
                crate::common::first_shard_is_binary(&h.repo, &report.snapshot).await,
                format == taosbackup_sink::REPO_VERSION,
                "seed {seed}: shards as the repository's format says"
            );
        }
        points.push((report.snapshot.id, h.contents(DB).await));
        // Any backup but the newest (the one the tracker covers) may be forgotten alone: the
        // others are self-contained snapshots. Prune now and then.
        if i >= 2 && rng.random_range(0..3) == 0 {
            let kept: Vec<usize> = (0..points.len() - 1)
                .filter(|k| !forgotten.contains(k))
                .collect();
            if !kept.is_empty() {
                let k = kept[rng.random_range(0..kept.len())];
                h.repo
                    .forget(&Forget::Ids(vec![points[k].0]), false)
                    .await
                    .unwrap();
                forgotten.insert(k);
                log.push(format!("forget backup {k}"));
            }
        }
        if rng.random_range(0..4) == 0 {
            h.repo.prune(None, false).await.unwrap();
            log.push("prune".into());
        }
        // Once per scenario (its own generator: the other choices stay as they were), the
        // repository so far goes through format 1 and `migrate`; the scenario goes on on
        // the migrated repository, and its points must still restore exactly.
        if i == StdRng::seed_from_u64(seed ^ 0x6d69).random_range(0..steps - 1) {
            if h.repo.config().version == taosbackup_sink::FORMAT2_VERSION {
                h.repo = through_format2_switch(&h.repo).await;
                log.push("migrate 2 to 3".into());
            } else {
                h.repo = through_format1(&h.repo, h.width).await;
                log.push("migrate".into());
            }
        }
    }
    // Retention: the newest three and a pinned one stay; a dry run predicts the prune.
    let pinned = rng.random_range(0..points.len());
    if !forgotten.contains(&pinned) {
        h.repo.pin(&points[pinned].0).await.unwrap();
    }
    let policy = Forget::Policy(RetentionPolicy {
        keep_last: Some(3),
        ..RetentionPolicy::default()
    });
    let dry = h.repo.prune(Some(&policy), true).await.unwrap();
    let done = h.repo.prune(Some(&policy), false).await.unwrap();
    assert_eq!(
        dry.bytes_freed, done.bytes_freed,
        "seed {seed}: the dry run predicts"
    );
    for id in done.forget.iter().flat_map(|f| f.forgotten.iter()) {
        let k = points.iter().position(|p| p.0 == *id).unwrap();
        forgotten.insert(k);
    }
    let after = h.repo.prune(None, true).await.unwrap();
    assert_eq!(
        after.blobs_removed, 0,
        "seed {seed}: prune left unreachable blobs"
    );
    for (i, (id, expected)) in points.iter().enumerate() {
        let target = format!("r{i}");
        if forgotten.contains(&i) {
            let session = h.session().await;
            let r = taosbackup_engine::restore(
                &*h.source,
                &session,
                &h.restore_request(BackupPoint::Id(id.to_hex()), &target),
                &NoProgress,
                &CancellationToken::new(),
            )
            .await;
            session.finish().await.unwrap();
            assert!(
                matches!(r, Err(EngineError::NoBackup { .. })),
                "seed {seed}: forgotten point {i} restored"
            );
            continue;
        }
        let report = h.restore(BackupPoint::Id(id.to_hex()), &target).await;
        assert!(
            report.count_mismatches.is_empty(),
            "seed {seed} point {i}: {:?}\n{}",
            report.count_mismatches,
            log.join("\n")
        );
        let got = h.contents(&target).await;
        if &got != expected {
            let mut diff = String::new();
            for (k, v) in expected {
                if got.get(k) != Some(v) {
                    diff.push_str(&format!("{k}: expected {v:?}\n   got {:?}\n", got.get(k)));
                }
            }
            for k in got.keys().filter(|k| !expected.contains_key(*k)) {
                diff.push_str(&format!("{k}: unexpected\n"));
            }
            panic!(
                "seed {seed} ({engine}) point {i} differs:\n{diff}\nsteps:\n{}",
                log.join("\n")
            );
        }
    }
    let _ = h.emu;
}
