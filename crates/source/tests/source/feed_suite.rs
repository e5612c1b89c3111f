//! The change-feed conformance suite (`taosbackup_testkit::feed_suite`) on the `tmq` and `wal`
//! feeds against the emulator: the same checks the in-memory fake feed passes in testkit's
//! tests.

use std::time::Duration;

use async_trait::async_trait;
use taos::{AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};
use taosbackup_core::ChangeFeed;
use taosbackup_source::{
    CatalogResolver, ConnectOptions, TmqFeed, TmqFeedOptions, WalFeed, WalFeedOptions,
};
use taosbackup_testkit::fake::Op;
use taosbackup_testkit::feed_suite::{self, FeedHarness};
use taosbackup_testkit::{
    Emulator, EmulatorConfig, EmulatorHandle, Fault, FaultAction, FaultPoint, Trigger,
};

const DB: &str = "suite";

/// The emulator with the suite's empty database, and a connection for the workload.
struct Server {
    emu: EmulatorHandle,
    taos: Taos,
}

impl Server {
    async fn start() -> Server {
        Server::start_at(&EmulatorConfig::default().server_version).await
    }

    /// The emulator answering as TDengine `version` does.
    async fn start_at(version: &str) -> Server {
        let emu = Emulator::start(EmulatorConfig {
            server_version: version.into(),
            ..EmulatorConfig::default()
        })
        .expect("emulator starts");
        let taos = TaosBuilder::from_dsn(emu.dsn())
            .unwrap()
            .build()
            .await
            .unwrap();
        crate::nodelay(&taos).await;
        let s = Server { emu, taos };
        s.exec(&format!("CREATE DATABASE {DB} PRECISION 'ms' VGROUPS 2"))
            .await;
        s
    }

    async fn exec(&self, sql: &str) {
        self.taos
            .exec(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::new(self.emu.dsn()).with_credentials("root", "taosdata")
    }
}

struct Tmq(Server);

#[async_trait]
impl FeedHarness for Tmq {
    async fn apply(&mut self, op: &Op) {
        self.0.exec(&op.to_sql(DB)).await;
    }

    async fn feed(&mut self) -> Box<dyn ChangeFeed> {
        let feed = TmqFeed::new(
            self.0.connect_options(),
            TmqFeedOptions::new("suite-repo", DB),
        );
        Box::new(feed.expect("tmq feed"))
    }

    async fn purge(&mut self) {
        let store = self.0.emu.store();
        for vg in store.vgroups(DB).unwrap() {
            let (_, end) = store.wal_range(DB, vg).unwrap();
            store.purge_wal(DB, vg, end).unwrap();
        }
    }
}

struct Wal {
    server: Server,
    dir: tempfile::TempDir,
}

#[async_trait]
impl FeedHarness for Wal {
    async fn apply(&mut self, op: &Op) {
        self.server.exec(&op.to_sql(DB)).await;
    }

    async fn feed(&mut self) -> Box<dyn ChangeFeed> {
        let o = self.server.connect_options();
        let resolver = CatalogResolver::connect(&o, DB).expect("catalog resolver");
        let opts = WalFeedOptions::new(
            self.dir.path().join("tdengine"),
            DB,
            self.dir.path().join("wal-feed.state"),
        );
        Box::new(WalFeed::new(opts, Box::new(resolver)))
    }

    async fn purge(&mut self) {
        self.server
            .exec(&format!("PURGE WAL {DB} TO 1000000000"))
            .await;
    }
}

/// Runs the suite on the tmq feed against a server of `version`; returns how many
/// `fetch_raw_data` and `fetch_block` requests the feed sent.
async fn tmq_suite_at(version: &str) -> (u64, u64) {
    let server = Server::start_at(version).await;
    // Faults that never fire, to count the requests by action.
    let count = |action: &str| {
        server.emu.inject(
            Fault::new(FaultPoint::TmqFetch, FaultAction::Stall(Duration::ZERO))
                .matching(action)
                .trigger(Trigger::Nth(u64::MAX)),
        )
    };
    let (raw, block) = (count("fetch_raw_data"), count("fetch_block"));
    let mut h = Tmq(server);
    feed_suite::run(&mut h).await;
    let stats = h.0.emu.fault_stats();
    (stats[raw].matched, stats[block].matched)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tmq_feed_passes_the_feed_suite() {
    // 3.3.2.0 and later: every data message in one fetch_raw_data reply.
    let (raw, block) = tmq_suite_at("3.3.6.0").await;
    assert!(raw > 0, "no fetch_raw_data request");
    assert_eq!(block, 0, "fetch_block used where fetch_raw_data is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tmq_feed_passes_the_feed_suite_before_fetch_raw_data() {
    // Before 3.3.2.0 taosAdapter does not answer fetch_raw_data: fetch + fetch_block.
    let (raw, block) = tmq_suite_at("3.3.0.0").await;
    assert_eq!(raw, 0, "fetch_raw_data sent to a server without it");
    assert!(block > 0, "no fetch_block request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_feed_passes_the_feed_suite() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    server
        .emu
        .store()
        .enable_wal_files(&dir.path().join("tdengine"))
        .unwrap();
    feed_suite::run(&mut Wal { server, dir }).await;
}
