//! The engine's model test, against the in-memory fakes of `taosbackup_testkit::fake` (no
//! emulator, no socket): random workloads with a backup after every step, for each engine,
//! and every backup point still listed restores to exactly the database as it was.
//!
//! A case is one seed: a database of random precision with a super table, child tables and
//! a normal table; 3–8 steps of 1–3 random ops (inserts on a shared grid, so overwrites and
//! late rows are common; deletes; new, dropped and re-created tables; added columns; changed
//! tags), each followed by a backup; along the way, for the bitmap engine, restarts (the
//! persisted tracker and the committed feed positions carry on) and purged change logs (a gap:
//! the next backup must be full); for every engine, injected faults (the backup fails, commits
//! nothing, and the next one is whole) and forgotten backups (a forgotten point is gone, every
//! other still restores). The `time` engine is blind to late rows, overwrites and deletes
//! (docs/architecture.md), so its workloads only append.
//!
//! `TAOSBACKUP_MODEL_CASES` sets the number of cases (default 1,200, a third per engine);
//! `TAOSBACKUP_MODEL_SEED` runs one seed. A failure names the seed and the steps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taosbackup_core::{
    BackupKind, BucketWidth, ColumnDef, DataType, NoProgress, Precision, Repository, SourceInfo,
    Value,
};
use taosbackup_engine::{
    BackupPoint, BackupRequest, CancellationToken, ChangeTracking, EngineError, EngineKind, OnGap,
    RestoreRequest, TrackingConfig,
};
use taosbackup_testkit::fake::{
    DbDump, FakeDb, FakeFeed, FakeSource, FaultPoint, MemoryRepository, Op,
};

const DB: &str = "m";
/// Rows live on a grid of whole seconds over ten minutes: ten one-minute buckets per table.
const BASE_S: i64 = 1_760_000_040;
const SLOTS: i64 = 600;

struct World {
    db: FakeDb,
    source: Arc<FakeSource>,
    repo: Arc<MemoryRepository>,
    width: BucketWidth,
    unit: i64,
    engine: EngineKind,
    /// Shared dictionaries for the next backup (toggled at random: a chain mixes blocks
    /// compressed with and without them).
    dictionaries: bool,
    rng: StdRng,
    /// Live tables → whether a child table (else normal).
    tables: BTreeMap<String, bool>,
    /// Newest slot written per table (the time engine appends after it).
    max_slot: BTreeMap<String, i64>,
    stable_cols: Vec<String>,
    normal_cols: Vec<String>,
    next_table: u32,
    next_col: u32,
    log: Vec<String>,
}

fn col(name: &str, ty: DataType, len: Option<u32>) -> ColumnDef {
    ColumnDef::new(name, ty, len)
}

impl World {
    fn new(seed: u64, engine: EngineKind) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let precision = [Precision::Ms, Precision::Us, Precision::Ns][rng.random_range(0..3)];
        let db = FakeDb::new();
        db.create_database(DB, precision, rng.random_range(1..4))
            .unwrap();
        let mut source = FakeSource::new(db.clone());
        // Small chunks: a bucket is often several chunks.
        source.chunk_rows = rng.random_range(1..40);
        let mut w = World {
            db,
            source: Arc::new(source),
            repo: Arc::new(MemoryRepository::new()),
            width: BucketWidth::from_seconds(60).unwrap(),
            unit: precision.units_per_second(),
            engine,
            dictionaries: true,
            rng,
            tables: BTreeMap::new(),
            max_slot: BTreeMap::new(),
            stable_cols: vec!["current".into(), "voltage".into(), "note".into()],
            normal_cols: vec!["v".into(), "s".into()],
            next_table: 0,
            next_col: 0,
            log: Vec::new(),
        };
        let ts = col("ts", DataType::Timestamp, None);
        w.apply(Op::CreateStable {
            name: "meters".into(),
            columns: vec![
                ts.clone(),
                col("current", DataType::Float, None),
                col("voltage", DataType::Int, None),
                col("note", DataType::VarChar, Some(16)),
            ],
            tags: vec![
                col("location", DataType::VarChar, Some(24)),
                col("groupid", DataType::Int, None),
            ],
        });
        for _ in 0..3 {
            w.create_child();
        }
        w.apply(Op::CreateTable {
            name: "n1".into(),
            columns: vec![
                ts,
                col("v", DataType::BigInt, None),
                col("s", DataType::NChar, Some(8)),
            ],
        });
        w.tables.insert("n1".into(), false);
        w
    }

    fn apply(&mut self, op: Op) {
        self.db
            .apply(DB, &op)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }

    fn create_child(&mut self) -> String {
        self.next_table += 1;
        let name = format!("d{}", self.next_table);
        let g = self.next_table as i32;
        self.apply(Op::CreateChild {
            name: name.clone(),
            stable: "meters".into(),
            tags: vec![
                Value::VarChar(format!("loc{g}").into_bytes()),
                Value::Int(g),
            ],
        });
        self.tables.insert(name.clone(), true);
        format!("create {name}")
    }

    fn pick(&mut self) -> Option<String> {
        if self.tables.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.tables.len());
        self.tables.keys().nth(i).cloned()
    }

    fn value(&mut self, column: &str, k: i64) -> Value {
        if self.rng.random_range(0..10) == 0 {
            return Value::Null;
        }
        match column {
            "current" => Value::Float(k as f32 + 0.5),
            "voltage" => Value::Int(self.rng.random_range(-1000..1000)),
            "note" => Value::VarChar(format!("v{k}").into_bytes()),
            "v" => Value::BigInt(self.rng.random_range(-1_000_000..1_000_000)),
            "s" => Value::NChar(format!("n{}", k % 1000)),
            c if c.starts_with('x') => Value::Int(self.rng.random_range(0..100)),
            _ => Value::Double(k as f64 / 3.0),
        }
    }

    fn insert(&mut self, table: &str) -> String {
        let child = self.tables[table];
        let columns = if child {
            self.stable_cols.clone()
        } else {
            self.normal_cols.clone()
        };
        let n = self.rng.random_range(1..25);
        let append_only = self.engine == EngineKind::Time;
        let floor = self.max_slot.get(table).map_or(0, |m| m + 1);
        if append_only && floor >= SLOTS {
            return "nothing (table full)".into();
        }
        let mut rows = Vec::new();
        for _ in 0..n {
            let k = if append_only {
                self.rng.random_range(floor..SLOTS.min(floor + 90))
            } else {
                self.rng.random_range(0..SLOTS)
            };
            let values = columns.iter().map(|c| self.value(c, k)).collect();
            rows.push(((BASE_S + k) * self.unit, values));
            let m = self.max_slot.entry(table.to_string()).or_insert(k);
            *m = (*m).max(k);
        }
        self.apply(Op::Insert {
            table: table.to_string(),
            columns,
            rows,
        });
        format!("insert {n} into {table}")
    }

    /// One random op; the time engine's workload only appends.
    fn step(&mut self) -> String {
        let Some(t) = self.pick() else {
            return self.create_child();
        };
        let blind = self.engine == EngineKind::Time;
        match self.rng.random_range(0..100) {
            0..50 => self.insert(&t),
            50..62 if !blind => {
                let a = self.rng.random_range(0..SLOTS);
                let b = a + self.rng.random_range(0..120);
                let (start, end) = ((BASE_S + a) * self.unit, (BASE_S + b) * self.unit);
                self.apply(Op::Delete {
                    table: t.clone(),
                    start,
                    end,
                });
                format!("delete {t} [{a}, {b}]")
            }
            62..72 => self.create_child(),
            72..80 => {
                self.apply(Op::DropTable { table: t.clone() });
                self.tables.remove(&t);
                self.max_slot.remove(&t);
                // Re-created under the same name now and then (not for `time`, whose
                // workloads only append).
                if !blind && t != "n1" && (self.tables.is_empty() || self.rng.random_bool(0.5)) {
                    let g = self.rng.random_range(100..200);
                    self.apply(Op::CreateChild {
                        name: t.clone(),
                        stable: "meters".into(),
                        tags: vec![Value::VarChar(b"again".to_vec()), Value::Int(g)],
                    });
                    self.tables.insert(t.clone(), true);
                    return format!("drop and re-create {t}");
                }
                format!("drop {t}")
            }
            80..87 => {
                self.next_col += 1;
                let c = format!("x{}", self.next_col);
                let on_stable = self.rng.random_bool(0.5) || !self.tables.contains_key("n1");
                let table = if on_stable { "meters" } else { "n1" };
                let column = col(&c, DataType::Int, None);
                self.apply(if on_stable {
                    Op::AddStableColumn {
                        stable: table.into(),
                        column,
                    }
                } else {
                    Op::AddColumn {
                        table: table.into(),
                        column,
                    }
                });
                if on_stable {
                    self.stable_cols.push(c.clone());
                } else {
                    self.normal_cols.push(c.clone());
                }
                format!("add column {c} to {table}")
            }
            87..100 => {
                let children: Vec<String> = self
                    .tables
                    .iter()
                    .filter(|(_, child)| **child)
                    .map(|(n, _)| n.clone())
                    .collect();
                if children.is_empty() {
                    return "nothing".into();
                }
                let c = children[self.rng.random_range(0..children.len())].clone();
                let g = self.rng.random_range(0..1000);
                self.apply(Op::SetTag {
                    table: c.clone(),
                    tag: "groupid".into(),
                    value: Value::Int(g),
                });
                format!("set tag of {c}")
            }
            _ => self.insert(&t),
        }
    }

    fn request(&self) -> BackupRequest {
        BackupRequest {
            database: DB.into(),
            engine: self.engine,
            force_full: false,
            on_gap: OnGap::Full,
            parallel: 3,
            // Groups of several tables go through `Source::export_tables` (the fake's is
            // the trait's default), one table alone through `Source::export`.
            tables_per_query: 4,
            bucket_width: self.width,
            dictionaries: self.dictionaries,
            source_info: SourceInfo::default(),
        }
    }

    async fn backup(
        &self,
        tracking: Option<&mut ChangeTracking>,
    ) -> Result<taosbackup_engine::BackupReport, EngineError> {
        taosbackup_engine::backup(
            self.source.clone(),
            self.repo.clone(),
            tracking,
            &self.request(),
            Arc::new(NoProgress),
            &CancellationToken::new(),
        )
        .await
    }

    async fn restore(
        &self,
        id: &taosbackup_core::BackupId,
        target: &str,
    ) -> Result<taosbackup_engine::RestoreReport, EngineError> {
        restore_all(&self.source, &*self.repo, id, DB, target).await
    }
}

/// A full backup of database `d` through `source` into `repo`, with one-minute buckets, no
/// change tracking, three exports at once and up to `tables_per_query` tables a group.
pub(crate) async fn try_full_backup(
    source: Arc<dyn taosbackup_core::Source>,
    repo: Arc<dyn Repository>,
    tables_per_query: usize,
    dictionaries: bool,
) -> Result<taosbackup_engine::BackupReport, EngineError> {
    let req = BackupRequest {
        database: "d".into(),
        engine: EngineKind::Full,
        force_full: false,
        on_gap: OnGap::Full,
        parallel: 3,
        tables_per_query,
        bucket_width: BucketWidth::from_seconds(60).unwrap(),
        dictionaries,
        source_info: SourceInfo::default(),
    };
    let cancel = CancellationToken::new();
    taosbackup_engine::backup(source, repo, None, &req, Arc::new(NoProgress), &cancel).await
}

/// [`try_full_backup`] that must fail with nothing committed and with `running()` (what of
/// the backup would still run, named by `what`) at 0 once it returns; its error.
pub(crate) async fn failed_full_backup(
    source: Arc<dyn taosbackup_core::Source>,
    repo: Arc<dyn Repository>,
    tables_per_query: usize,
    running: impl Fn() -> usize,
    what: &str,
) -> EngineError {
    let err = try_full_backup(source, repo.clone(), tables_per_query, false)
        .await
        .unwrap_err();
    assert_eq!(running(), 0, "{what} still running");
    assert!(repo.list_snapshots().await.unwrap().is_empty());
    err
}

/// [`try_full_backup`] with the default group size, which must succeed.
pub(crate) async fn full_backup(
    source: Arc<dyn taosbackup_core::Source>,
    repo: Arc<dyn Repository>,
    dictionaries: bool,
) -> taosbackup_engine::BackupReport {
    try_full_backup(
        source,
        repo,
        taosbackup_engine::DEFAULT_TABLES_PER_QUERY,
        dictionaries,
    )
    .await
    .unwrap()
}

/// Restores every table of backup `id` of `database` into the new database `target`.
pub(crate) async fn restore_all(
    source: &FakeSource,
    repo: &dyn taosbackup_core::Repository,
    id: &taosbackup_core::BackupId,
    database: &str,
    target: &str,
) -> Result<taosbackup_engine::RestoreReport, EngineError> {
    let req = RestoreRequest {
        point: BackupPoint::Id(id.to_hex()),
        database: Some(database.into()),
        target_database: Some(target.into()),
        tables: vec![],
        stables: vec![],
        into_existing: false,
        keep_override_days: None,
        dry_run: false,
        parallel: 3,
    };
    taosbackup_engine::restore(source, repo, &req, &NoProgress, &CancellationToken::new()).await
}

/// Restores backup `id` of database `d` into `back` and checks that every row came back:
/// the restore's own counts and a comparison of the two databases.
pub(crate) async fn restore_exactly(
    db: &FakeDb,
    source: &FakeSource,
    repo: &dyn taosbackup_core::Repository,
    id: &taosbackup_core::BackupId,
) -> taosbackup_engine::RestoreReport {
    let r = restore_all(source, repo, id, "d", "back").await.unwrap();
    assert!(r.count_mismatches.is_empty(), "{r:?}");
    assert_eq!(
        db.dump("back").unwrap().tables,
        db.dump("d").unwrap().tables
    );
    r
}

async fn open_tracking(w: &World, dir: &std::path::Path) -> ChangeTracking {
    let feed = FakeFeed::new(w.db.clone(), DB, "model");
    ChangeTracking::open(
        Box::new(feed),
        TrackingConfig::new(dir.join("tracker.state")),
        w.width,
    )
    .await
    .expect("tracking opens")
}

/// What differs between two dumps, table by table.
fn diff(expected: &DbDump, got: Option<&DbDump>) -> String {
    let Some(got) = got else {
        return "the target database does not exist".into();
    };
    let mut out = String::new();
    if expected.precision != got.precision || expected.stables != got.stables {
        out.push_str(&format!(
            "schema: expected {:?} {:?}\n   got {:?} {:?}\n",
            expected.precision, expected.stables, got.precision, got.stables
        ));
    }
    for (k, v) in &expected.tables {
        if got.tables.get(k) != Some(v) {
            out.push_str(&format!(
                "{k}: expected {v:?}\n   got {:?}\n",
                got.tables.get(k)
            ));
        }
    }
    for k in got
        .tables
        .keys()
        .filter(|k| !expected.tables.contains_key(*k))
    {
        out.push_str(&format!("{k}: unexpected\n"));
    }
    out
}

/// One case; panics naming the seed and the steps on any failure.
async fn case(seed: u64, engine: EngineKind) {
    let mut w = World::new(seed, engine);
    let dir = tempfile::tempdir().unwrap();
    let bitmap = engine == EngineKind::Bitmap;
    let mut tracking = if bitmap {
        Some(open_tracking(&w, dir.path()).await)
    } else {
        None
    };
    let steps = w.rng.random_range(3..9);
    let mut points: Vec<(taosbackup_core::BackupId, DbDump)> = Vec::new();
    let mut forgotten = BTreeSet::new();
    let fail = |w: &World, msg: String| -> ! {
        panic!(
            "seed {seed} ({engine}): {msg}\nsteps:\n{}",
            w.log.join("\n")
        )
    };
    for i in 0..steps {
        let mut expect_full = i == 0 || engine == EngineKind::Full;
        if i > 0 {
            for _ in 0..w.rng.random_range(1..4) {
                let s = w.step();
                w.log.push(s);
            }
        }
        if bitmap && i > 0 {
            match w.rng.random_range(0..10) {
                // A restart: the persisted tracker and the committed positions carry on.
                0..2 => {
                    drop(tracking.take());
                    tracking = Some(open_tracking(&w, dir.path()).await);
                    w.log.push("restart".into());
                }
                // The change log purged while no consumer runs: a gap.
                2 => {
                    drop(tracking.take());
                    w.db.purge_log(DB);
                    tracking = Some(open_tracking(&w, dir.path()).await);
                    expect_full = true;
                    w.log.push("restart after a purge (gap)".into());
                }
                _ => {}
            }
        }
        if i > 0 && w.rng.random_range(0..8) == 0 {
            // A fault: the backup fails, commits nothing, and loses nothing.
            let points_before = w.repo.list_snapshots().await.unwrap().len();
            let point = [
                FaultPoint::Catalog,
                FaultPoint::Export,
                FaultPoint::ExportChunk,
                FaultPoint::StoreBlob,
                FaultPoint::CommitSnapshot,
            ][w.rng.random_range(0..5)];
            match point {
                FaultPoint::StoreBlob | FaultPoint::CommitSnapshot => {
                    w.repo.faults.fail(point, 1, false)
                }
                _ => w.db.faults.fail(point, 1, false),
            }
            let r = w.backup(tracking.as_mut()).await;
            w.db.faults.clear();
            w.repo.faults.clear();
            // A fault can miss the backup (an export with nothing to read).
            if let Ok(r) = r {
                w.log
                    .push(format!("backup {i} ran despite fault at {point:?}"));
                points.push((r.snapshot.id, w.db.dump(DB).unwrap()));
                continue;
            }
            w.repo.crash();
            let after = w.repo.list_snapshots().await.unwrap().len();
            if after != points_before {
                fail(&w, format!("a failed backup committed ({point:?})"));
            }
            w.log.push(format!("backup {i} failed at {point:?}"));
        }
        w.dictionaries = w.rng.random_range(0..4) != 0;
        if !w.dictionaries {
            w.log.push(format!("backup {i} without dictionaries"));
        }
        let report = match w.backup(tracking.as_mut()).await {
            Ok(r) => r,
            Err(e) => fail(&w, format!("backup {i}: {e}")),
        };
        let kind = report.snapshot.kind;
        if expect_full && kind != BackupKind::Full {
            fail(&w, format!("backup {i} should be full, is {kind:?}"));
        }
        if !expect_full && kind != BackupKind::Incremental {
            fail(
                &w,
                format!("backup {i} should be incremental: {:?}", report.full_reason),
            );
        }
        w.log.push(format!(
            "backup {i}: {kind:?}, {} blocks, {} tombstones",
            report.snapshot.stats.blocks, report.snapshot.stats.tombstones
        ));
        points.push((report.snapshot.id, w.db.dump(DB).unwrap()));
        // Forget any backup but the newest (the one the tracker covers) now and then.
        if points.len() > 2 && w.rng.random_range(0..4) == 0 {
            let k = w.rng.random_range(0..points.len() - 1);
            if forgotten.insert(k) {
                w.repo.forget(&points[k].0);
                w.log.push(format!("forget backup {k}"));
            }
        }
    }
    for (i, (id, expected)) in points.iter().enumerate() {
        let target = format!("r{i}");
        let r = w.restore(id, &target).await;
        if forgotten.contains(&i) {
            if !matches!(r, Err(EngineError::NoBackup { .. })) {
                fail(&w, format!("forgotten point {i} restored: {r:?}"));
            }
            continue;
        }
        match r {
            Ok(r) if r.count_mismatches.is_empty() => {}
            Ok(r) => fail(&w, format!("point {i}: counts {:?}", r.count_mismatches)),
            Err(e) => fail(&w, format!("restore of point {i}: {e}")),
        }
        let got = w.db.dump(&target);
        if got.as_ref() != Some(expected) {
            fail(
                &w,
                format!("point {i} differs:\n{}", diff(expected, got.as_ref())),
            );
        }
    }
}

/// A restore joins a table's consecutive blocks into one write where their columns agree,
/// and still restores every row exactly.
#[tokio::test]
async fn restore_writes_a_tables_blocks_together() {
    let mut w = World::new(7, EngineKind::Full);
    // Rows in all ten buckets of every table, in small chunks (several per bucket).
    Arc::get_mut(&mut w.source)
        .expect("no backup holds the source")
        .chunk_rows = 5;
    let tables: Vec<String> = w.tables.keys().cloned().collect();
    for t in &tables {
        let columns = if w.tables[t] {
            w.stable_cols.clone()
        } else {
            w.normal_cols.clone()
        };
        let rows = (0..SLOTS)
            .step_by(7)
            .map(|k| {
                let values = columns.iter().map(|c| w.value(c, k)).collect();
                ((BASE_S + k) * w.unit, values)
            })
            .collect();
        w.apply(Op::Insert {
            table: t.clone(),
            columns,
            rows,
        });
    }
    let report = w.backup(None).await.unwrap();
    let before = w.source.chunk_writes();
    let restored = w.restore(&report.snapshot.id, "joined").await.unwrap();
    let writes = w.source.chunk_writes() - before;
    assert_eq!(restored.blocks, 10 * tables.len() as u64);
    assert!(restored.count_mismatches.is_empty(), "{restored:?}");
    // One write per table: its ten blocks (and their chunks) joined.
    assert_eq!(writes, tables.len() as u64, "{restored:?}");
    let expected = w.db.dump(DB).unwrap();
    let got = w.db.dump("joined");
    let d = diff(&expected, got.as_ref());
    assert!(d.is_empty(), "{d}");
}

fn cases() -> u64 {
    std::env::var("TAOSBACKUP_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200)
}

/// Runs this engine's third of the cases (seeds `k*3 + offset`), or the one seed given.
async fn run(engine: EngineKind, offset: u64) {
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = match std::env::var("TAOSBACKUP_MODEL_SEED") {
        Ok(s) => s
            .parse()
            .ok()
            .filter(|s| s % 3 == offset)
            .into_iter()
            .collect(),
        Err(_) => (0..cases()).filter(|s| s % 3 == offset).collect(),
    };
    for &seed in &seeds {
        case(seed, engine).await;
    }
    println!(
        "model {engine}: {} cases in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_engine_restores_every_point_exactly() {
    run(EngineKind::Full, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_engine_restores_every_point_of_appends_exactly() {
    run(EngineKind::Time, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitmap_engine_restores_every_point_exactly() {
    run(EngineKind::Bitmap, 2).await;
}

/// 600 children of `meters` and 40 normal tables, a row each: ~10 shards of both kinds.
pub(crate) fn many_shards() -> FakeDb {
    let db = FakeDb::new();
    db.create_database("d", Precision::Ms, 2).unwrap();
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let col = |name: &str, ty| ColumnDef::new(name, ty, None);
    apply(Op::CreateStable {
        name: "meters".into(),
        columns: vec![col("ts", DataType::Timestamp), col("v", DataType::Int)],
        tags: vec![col("g", DataType::Int)],
    });
    for c in 0..600 {
        apply(Op::CreateChild {
            name: format!("c{c}"),
            stable: "meters".into(),
            tags: vec![Value::Int(c)],
        });
        apply(Op::Insert {
            table: format!("c{c}"),
            columns: vec!["v".into()],
            rows: vec![(1_760_000_040_000 + i64::from(c), vec![Value::Int(c)])],
        });
    }
    for n in 0..40 {
        apply(Op::CreateTable {
            name: format!("n{n}"),
            columns: vec![col("ts", DataType::Timestamp), col("v", DataType::Int)],
        });
        apply(Op::Insert {
            table: format!("n{n}"),
            columns: vec!["v".into()],
            rows: vec![(1_760_000_040_000, vec![Value::Int(n)])],
        });
    }
    db
}
