//! Shared test harness: the emulator, a source, a memory repository and an oracle feed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};
use taosbackup_core::{
    BucketWidth, ChangeBatch, ChangeEvent, ChangeFeed, FeedStart, NoProgress, Positions, Source,
    SourceError, SourceInfo, TableEvent,
};
use taosbackup_engine::{
    BackupPoint, BackupRequest, CancellationToken, ChangeTracking, EngineError, EngineKind, OnGap,
    RestoreRequest,
};
use taosbackup_sink::{Backend, InitOptions, KdfParams, Repo, Session};
use taosbackup_source::{ConnectOptions, TaosSource};
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
    pub source: TaosSource,
    pub repo: Repo,
    pub width: BucketWidth,
}

pub async fn harness() -> Harness {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut o = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    o.pool_size = 4;
    o.request_timeout = Duration::from_secs(10);
    let source = TaosSource::connect(o).expect("source");
    let width = BucketWidth::from_seconds(60).unwrap();
    let repo = Repo::init(
        Backend::from_url("memory://").unwrap(),
        InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            bucket_width: width,
            pack_size: 256 * 1024,
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
            bucket_width: self.width,
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
        let session = self.session().await;
        let r =
            taosbackup_engine::backup(&self.source, &session, tracking, req, &NoProgress, cancel)
                .await;
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
            &self.source,
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
