//! The `wal` change feed reading WAL directories written by the testkit's independent writer
//! (`taosbackup_testkit::walfile`, from `docs/wal-format.md`).

use std::path::Path;

use proptest::prelude::*;
use taosbackup_core::{ChangeEvent, ChangeFeed, FeedStart, Positions, TableEvent};
use taosbackup_source::{
    CatalogResolver, ConnectOptions, MapResolver, ResolvedTable, TableResolver, TaosSource,
    WalError, WalFeed, WalFeedOptions,
};
use taosbackup_testkit::walfile::{
    ALTER_ADD_COLUMN, ALTER_UPDATE_OPTIONS, ALTER_UPDATE_TAG_VAL, CreateKind, CreateTable,
    DropTable, HEAD_LEN, Msg, RowFormat, SubmitTable, TDMT_VND_COMMIT, VnodeOptions, VnodeWal,
    crc32c,
};
use taosbackup_testkit::{Emulator, EmulatorConfig};

const DB: &str = "power";

fn feed(data: &Path, resolver: &MapResolver) -> WalFeed {
    feed_with(data, resolver, 10_000)
}

fn feed_with(data: &Path, resolver: &MapResolver, max_batch_events: usize) -> WalFeed {
    let mut o = WalFeedOptions::new(data, DB, data.join("state").join("wal-feed.json"));
    o.max_batch_events = max_batch_events;
    WalFeed::new(o, Box::new(resolver.clone()))
}

fn pos(pairs: &[(i32, i64)]) -> Positions {
    pairs
        .iter()
        .map(|(v, p)| (format!("vnode:{v}"), *p))
        .collect()
}

/// Every event until the feed is caught up, and the positions of the last batch.
async fn drain(f: &mut WalFeed) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    while let Some(b) = f.next_batch().await.expect("next_batch") {
        out.extend(b.events);
        // The batch's positions are where the feed now stands.
        let now = f.positions();
        for (k, v) in &b.positions {
            assert_eq!(now.get(k), Some(v), "{k}");
        }
    }
    out
}

fn rows(table: &str, ts: &[i64]) -> ChangeEvent {
    ChangeEvent::Rows {
        table: table.into(),
        timestamps: ts.to_vec(),
    }
}

fn tev(table: &str, event: TableEvent) -> ChangeEvent {
    ChangeEvent::Table {
        table: table.into(),
        event,
    }
}

fn child(name: &str, uid: i64) -> CreateTable {
    CreateTable {
        name: name.into(),
        uid,
        kind: CreateKind::Child {
            stable: "meters".into(),
            suid: 100,
        },
    }
}

fn submit(uid: i64, format: RowFormat, ts: &[i64]) -> Msg {
    Msg::Submit(vec![SubmitTable {
        uid,
        suid: 100,
        format,
        timestamps: ts.to_vec(),
        auto_create: None,
    }])
}

#[tokio::test]
async fn every_message_kind_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
    w.append(&Msg::CreateStable {
        name: "meters".into(),
        suid: 100,
    })
    .unwrap();
    w.append(&Msg::CreateTables(vec![
        child("c1", 1001),
        CreateTable {
            name: "n1".into(),
            uid: 2001,
            kind: CreateKind::Normal,
        },
    ]))
    .unwrap();
    w.append(&submit(1001, RowFormat::Rows, &[5, 1, 3]))
        .unwrap();
    w.append(&Msg::Submit(vec![
        SubmitTable {
            uid: 2001,
            suid: 0,
            format: RowFormat::Columns,
            timestamps: vec![10, 11],
            auto_create: None,
        },
        SubmitTable {
            uid: 1002,
            suid: 100,
            format: RowFormat::ColumnsV0,
            timestamps: vec![7],
            auto_create: Some(child("c2", 1002)),
        },
    ]))
    .unwrap();
    // An insert naming the super table again: auto-create of a table that exists.
    w.append(&Msg::Submit(vec![SubmitTable {
        uid: 1002,
        suid: 100,
        format: RowFormat::Rows,
        timestamps: vec![8],
        auto_create: Some(child("c2", 1002)),
    }]))
    .unwrap();
    w.append(&Msg::Other {
        msg_type: TDMT_VND_COMMIT,
        body: vec![0; 8],
    })
    .unwrap();
    w.append(&Msg::Delete {
        suid: 100,
        uids: vec![1001, 1002],
        start: 2,
        end: 4,
        table_fname: "1.power.meters".into(),
    })
    .unwrap();
    w.append(&Msg::BatchDelete {
        suid: 0,
        items: vec![("n1".into(), 0, 100)],
    })
    .unwrap();
    w.append(&Msg::AlterTable {
        name: "c1".into(),
        action: ALTER_UPDATE_TAG_VAL,
    })
    .unwrap();
    w.append(&Msg::AlterTable {
        name: "n1".into(),
        action: ALTER_ADD_COLUMN,
    })
    .unwrap();
    w.append(&Msg::AlterTable {
        name: "n1".into(),
        action: ALTER_UPDATE_OPTIONS,
    })
    .unwrap();
    w.append(&Msg::AlterStable {
        name: "meters".into(),
        suid: 100,
    })
    .unwrap();
    w.append(&Msg::DropTables(vec![DropTable {
        name: "n1".into(),
        uid: 2001,
        suid: 0,
    }]))
    .unwrap();
    w.append(&Msg::DropTtl(vec![1002])).unwrap();
    w.append(&Msg::DropStable {
        name: "meters".into(),
        suid: 100,
    })
    .unwrap();
    let last = w.last_version();

    let resolver = MapResolver::new();
    let mut f = feed(dir.path(), &resolver);
    assert_eq!(
        f.start(&pos(&[(2, 0)])).await.unwrap(),
        FeedStart::Continued
    );
    let events = drain(&mut f).await;
    assert_eq!(
        events,
        vec![
            tev("c1", TableEvent::Created),
            tev("n1", TableEvent::Created),
            rows("c1", &[5, 1, 3]),
            rows("n1", &[10, 11]),
            tev("c2", TableEvent::Created),
            rows("c2", &[7]),
            rows("c2", &[8]),
            ChangeEvent::Delete {
                table: "c1".into(),
                start: 2,
                end: 4
            },
            ChangeEvent::Delete {
                table: "c2".into(),
                start: 2,
                end: 4
            },
            ChangeEvent::Delete {
                table: "n1".into(),
                start: 0,
                end: 100
            },
            tev("c1", TableEvent::TagsChanged),
            tev("n1", TableEvent::SchemaChanged),
            tev("c1", TableEvent::SchemaChanged),
            tev("c2", TableEvent::SchemaChanged),
            tev("n1", TableEvent::Dropped),
            tev("c2", TableEvent::Dropped),
            tev("c1", TableEvent::Dropped),
        ]
    );
    assert_eq!(f.positions(), pos(&[(2, last + 1)]));
    assert!(f.next_batch().await.unwrap().is_none());
}

#[tokio::test]
async fn several_vnodes_fresh_start_then_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
    let mut b = VnodeWal::create(
        dir.path(),
        3,
        DB,
        VnodeOptions {
            first_version: 50,
            ..VnodeOptions::default()
        },
    )
    .unwrap();
    let mut other = VnodeWal::create(dir.path(), 4, "other", VnodeOptions::default()).unwrap();
    let resolver = MapResolver::new();
    resolver.insert(1, "t1", None);
    resolver.insert(2, "t2", None);
    a.append(&submit(1, RowFormat::Rows, &[1])).unwrap();
    b.append(&submit(2, RowFormat::Rows, &[2])).unwrap();
    other.append(&submit(9, RowFormat::Rows, &[9])).unwrap();

    let mut f = feed(dir.path(), &resolver);
    let start = f.start(&Positions::new()).await.unwrap();
    assert!(matches!(start, FeedStart::Fresh { .. }), "{start:?}");
    // A fresh feed stands at the current end of every stream.
    assert_eq!(f.positions(), pos(&[(2, 1), (3, 51)]));
    assert!(f.next_batch().await.unwrap().is_none());

    a.append(&submit(1, RowFormat::Columns, &[3, 4])).unwrap();
    b.append(&submit(2, RowFormat::Rows, &[5])).unwrap();
    other.append(&submit(9, RowFormat::Rows, &[9])).unwrap();
    let events = drain(&mut f).await;
    assert_eq!(events, vec![rows("t1", &[3, 4]), rows("t2", &[5])]);
    assert_eq!(f.positions(), pos(&[(2, 2), (3, 52)]));

    // Pointed at one vnode directory, the feed reads just that vnode.
    let mut one = WalFeed::new(
        WalFeedOptions::new(a.vnode_dir(), DB, dir.path().join("one.json")),
        Box::new(resolver.clone()),
    );
    one.start(&Positions::new()).await.unwrap();
    assert_eq!(one.positions(), pos(&[(2, 2)]));
}

#[tokio::test]
async fn rotation_while_tailing_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(
        dir.path(),
        2,
        DB,
        VnodeOptions {
            seg_size: 300,
            ..VnodeOptions::default()
        },
    )
    .unwrap();
    let resolver = MapResolver::new();
    resolver.insert(1, "t", None);
    let mut f = feed(dir.path(), &resolver);
    assert!(matches!(
        f.start(&Positions::new()).await.unwrap(),
        FeedStart::Fresh { .. }
    ));
    let mut seen = Vec::new();
    let mut written = Vec::new();
    for i in 0..60i64 {
        let ts: Vec<i64> = (0..(i % 5 + 1)).map(|k| i * 10 + k).collect();
        let format = if i % 2 == 0 {
            RowFormat::Rows
        } else {
            RowFormat::Columns
        };
        w.append(&submit(1, format, &ts)).unwrap();
        written.extend(ts);
        if i % 7 == 0 {
            for e in drain(&mut f).await {
                match e {
                    ChangeEvent::Rows { timestamps, .. } => seen.extend(timestamps),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    for e in drain(&mut f).await {
        if let ChangeEvent::Rows { timestamps, .. } = e {
            seen.extend(timestamps);
        }
    }
    assert!(w.segments().len() > 5, "{:?}", w.segments());
    assert_eq!(seen, written);
    assert_eq!(f.positions(), pos(&[(2, w.last_version() + 1)]));
}

#[tokio::test]
async fn purge_past_the_committed_position_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
    let resolver = MapResolver::new();
    resolver.insert(1, "t", None);
    for i in 0..3 {
        w.append(&submit(1, RowFormat::Rows, &[i])).unwrap();
    }
    let mut f = feed(dir.path(), &resolver);
    f.start(&pos(&[(2, 0)])).await.unwrap();
    assert_eq!(drain(&mut f).await.len(), 3);
    let committed = f.positions();
    f.commit(&committed).await.unwrap();
    assert_eq!(
        WalFeed::read_state(&dir.path().join("state/wal-feed.json")).unwrap(),
        Some(committed.clone())
    );

    // A restart without positions continues from the state file.
    let mut g = feed(dir.path(), &resolver);
    assert_eq!(
        g.start(&Positions::new()).await.unwrap(),
        FeedStart::Continued
    );
    assert_eq!(g.positions(), committed);

    // More writes, rotation, and a purge past the committed position.
    w.roll().unwrap();
    w.append(&submit(1, RowFormat::Rows, &[10])).unwrap();
    w.roll().unwrap();
    w.append(&submit(1, RowFormat::Rows, &[11])).unwrap();
    w.purge_through(3).unwrap();
    assert_eq!(w.first_version(), 4);
    let mut h = feed(dir.path(), &resolver);
    match h.start(&committed).await.unwrap() {
        FeedStart::Gap { reason } => {
            assert!(
                reason.contains("vnode:2") && reason.contains("purged"),
                "{reason}"
            )
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    // After a gap the feed stands at the end.
    assert_eq!(h.positions(), pos(&[(2, 5)]));

    // A purge of everything: the meta alone says where the WAL ends.
    w.roll().unwrap();
    w.purge_through(100).unwrap();
    assert!(w.segments().len() == 1);
    let mut k = feed(dir.path(), &resolver);
    assert_eq!(
        k.start(&pos(&[(2, 5)])).await.unwrap(),
        FeedStart::Continued
    );
    w.append(&submit(1, RowFormat::Rows, &[12])).unwrap();
    assert_eq!(drain(&mut k).await, vec![rows("t", &[12])]);

    // Positions of another feed or vnode are not continuity.
    let mut m = feed(dir.path(), &resolver);
    assert!(matches!(
        m.start(&[("vg:2".to_string(), 5)].into()).await.unwrap(),
        FeedStart::Gap { .. }
    ));
    // A position past the end (a recreated WAL) is a gap too.
    let mut n = feed(dir.path(), &resolver);
    assert!(matches!(
        n.start(&pos(&[(2, 1000)])).await.unwrap(),
        FeedStart::Gap { .. }
    ));
}

#[tokio::test]
async fn creates_of_known_tables_and_drops_without_uid() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
    let resolver = MapResolver::new();
    resolver.insert(1001, "c1", Some("meters"));
    // CREATE TABLE IF NOT EXISTS of an existing table is logged with its uid: not new.
    w.append(&Msg::CreateTables(vec![child("c1", 1001)]))
        .unwrap();
    // A table dropped and created again under the same name gets a new uid: new.
    w.append(&Msg::DropTables(vec![DropTable {
        name: "c1".into(),
        uid: 0,
        suid: 100,
    }]))
    .unwrap();
    w.append(&Msg::CreateTables(vec![child("c1", 1002)]))
        .unwrap();
    w.append(&submit(1002, RowFormat::Rows, &[1])).unwrap();
    let mut f = feed(dir.path(), &resolver);
    f.start(&pos(&[(2, 0)])).await.unwrap();
    assert_eq!(
        drain(&mut f).await,
        vec![
            tev("c1", TableEvent::Dropped),
            tev("c1", TableEvent::Created),
            rows("c1", &[1]),
        ]
    );
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn a_crc_mismatch_is_an_error_naming_file_and_offset() {
    for (what, delta) in [("body", HEAD_LEN as u64 + 3), ("head", 20)] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
        let resolver = MapResolver::new();
        resolver.insert(1, "t", None);
        for i in 0..3 {
            w.append(&submit(1, RowFormat::Rows, &[i])).unwrap();
        }
        let loc = w.location(1).unwrap();
        flip(&loc.path, loc.offset + delta);
        let mut f = feed_with(dir.path(), &resolver, 1);
        f.start(&pos(&[(2, 0)])).await.unwrap();
        assert_eq!(
            f.next_batch().await.unwrap().unwrap().events,
            vec![rows("t", &[0])]
        );
        let err = f.next_batch().await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&loc.path.display().to_string())
                && msg.contains(&format!("offset {}", loc.offset))
                && msg.contains(&format!("{what} checksum")),
            "{msg}"
        );
        let inner = err.inner().downcast_ref::<WalError>().unwrap();
        assert!(matches!(inner, WalError::Corrupt { .. }), "{inner:?}");
        // The error leaves the feed where the last batch ended.
        assert_eq!(f.positions(), pos(&[(2, 1)]));
        flip(&loc.path, loc.offset + delta);
        assert_eq!(drain(&mut f).await, vec![rows("t", &[1]), rows("t", &[2])]);
    }
}

#[tokio::test]
async fn a_record_being_written_is_read_once_complete() {
    for written in [0, 10, HEAD_LEN, HEAD_LEN + 5] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
        let resolver = MapResolver::new();
        resolver.insert(1, "t", None);
        w.append(&submit(1, RowFormat::Rows, &[1])).unwrap();
        w.append(&submit(1, RowFormat::Columns, &[2])).unwrap();
        w.append_partial(&submit(1, RowFormat::Rows, &[3]), written)
            .unwrap();
        let mut f = feed(dir.path(), &resolver);
        f.start(&pos(&[(2, 0)])).await.unwrap();
        assert_eq!(
            drain(&mut f).await,
            vec![rows("t", &[1]), rows("t", &[2])],
            "{written} bytes written"
        );
        assert_eq!(f.positions(), pos(&[(2, 2)]));
        // Also a fresh start stops before it.
        let mut g = feed(dir.path(), &resolver);
        g.start(&Positions::new()).await.unwrap();
        assert_eq!(g.positions(), pos(&[(2, 2)]));
        w.finish_pending().unwrap();
        assert_eq!(drain(&mut f).await, vec![rows("t", &[3])]);
        assert_eq!(drain(&mut g).await, vec![rows("t", &[3])]);
    }
}

#[tokio::test]
async fn unknown_uids_ask_the_catalog_then_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions::default()).unwrap();
    let resolver = MapResolver::new();
    let mut f = feed(dir.path(), &resolver);
    f.start(&pos(&[(2, 0)])).await.unwrap();
    let after_start = resolver.lookups();

    // Created after the feed loaded the catalog: a refresh names it.
    w.append(&submit(5, RowFormat::Rows, &[1])).unwrap();
    resolver.insert(5, "late", None);
    assert_eq!(drain(&mut f).await, vec![rows("late", &[1])]);
    assert_eq!(resolver.lookups(), after_start + 1);

    // Unknown to the catalog, dropped later in the WAL: the drop names it.
    w.append(&submit(6, RowFormat::Rows, &[2])).unwrap();
    w.append(&Msg::DropTables(vec![DropTable {
        name: "gone".into(),
        uid: 6,
        suid: 0,
    }]))
    .unwrap();
    assert_eq!(
        drain(&mut f).await,
        vec![rows("gone", &[2]), tev("gone", TableEvent::Dropped)]
    );

    // Unknown everywhere: an error, not a dropped change.
    w.append(&submit(7, RowFormat::Rows, &[3])).unwrap();
    let v = w.last_version();
    let err = f.next_batch().await.unwrap_err();
    match err.inner().downcast_ref::<WalError>() {
        Some(WalError::UnknownTable {
            vnode: 2,
            version,
            uid: 7,
        }) => assert_eq!(*version, v),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(f.positions(), pos(&[(2, v)]));
    // Once the catalog knows it, the same record goes through.
    resolver.insert(7, "t7", None);
    assert_eq!(drain(&mut f).await, vec![rows("t7", &[3])]);

    // Names learned are kept in the state file for a restart.
    f.commit(&f.positions()).await.unwrap();
    resolver.remove(5);
    let mut g = feed(dir.path(), &resolver);
    g.start(&pos(&[(2, 0)])).await.unwrap();
    assert_eq!(drain(&mut g).await[0], rows("late", &[1]));
}

#[tokio::test]
async fn unreadable_layouts_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let resolver = MapResolver::new();
    // Encrypted WAL.
    let mut w = VnodeWal::create(
        dir.path(),
        2,
        DB,
        VnodeOptions {
            encrypted: true,
            ..VnodeOptions::default()
        },
    )
    .unwrap();
    w.append(&submit(1, RowFormat::Rows, &[1])).unwrap();
    let err = feed(dir.path(), &resolver)
        .start(&Positions::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("encrypted"), "{err}");

    // No vnode of the database.
    let other = tempfile::tempdir().unwrap();
    VnodeWal::create(other.path(), 3, "other", VnodeOptions::default()).unwrap();
    let err = feed(other.path(), &resolver)
        .start(&Positions::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no vnode of database \"power\"")
            && err.to_string().contains("other"),
        "{err}"
    );

    // An unknown record protoVer (head checksum recomputed so only the version is wrong).
    let d3 = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(d3.path(), 2, DB, VnodeOptions::default()).unwrap();
    w.append(&submit(1, RowFormat::Rows, &[1])).unwrap();
    let loc = w.location(0).unwrap();
    let mut b = std::fs::read(&loc.path).unwrap();
    let o = loc.offset as usize;
    b[o + 38] = 1;
    let ck = crc32c(&b[o + 16..o + 56]);
    b[o + 8..o + 12].copy_from_slice(&ck.to_le_bytes());
    std::fs::write(&loc.path, b).unwrap();
    let mut f = feed(d3.path(), &resolver);
    let err = match f.start(&pos(&[(2, 0)])).await {
        Err(e) => e,
        Ok(_) => f.next_batch().await.unwrap_err(),
    };
    assert!(err.to_string().contains("protoVer 1"), "{err}");

    // A transaction entry of a newer TDengine (`SWalCont.flags` bit 7, include/libs/wal/wal.h
    // on main): refused by name, not read as a plain body.
    let d4 = tempfile::tempdir().unwrap();
    let mut w = VnodeWal::create(d4.path(), 2, DB, VnodeOptions::default()).unwrap();
    w.append(&submit(1, RowFormat::Rows, &[1])).unwrap();
    let loc = w.location(0).unwrap();
    let mut b = std::fs::read(&loc.path).unwrap();
    let o = loc.offset as usize;
    b[o + 38] = 0x80;
    let ck = crc32c(&b[o + 16..o + 56]);
    b[o + 8..o + 12].copy_from_slice(&ck.to_le_bytes());
    std::fs::write(&loc.path, b).unwrap();
    let mut f = feed(d4.path(), &resolver);
    let err = match f.start(&pos(&[(2, 0)])).await {
        Err(e) => e,
        Ok(_) => f.next_batch().await.unwrap_err(),
    };
    assert!(err.to_string().contains("transaction entry"), "{err}");

    // Used before start.
    assert!(feed(d3.path(), &resolver).next_batch().await.is_err());
}

#[tokio::test]
async fn the_catalog_resolver_reads_uids_through_the_connector() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let opts = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    let source = TaosSource::connect(opts.clone()).unwrap();
    for sql in [
        "CREATE DATABASE power",
        "CREATE STABLE power.meters (ts TIMESTAMP, v INT) TAGS (t1 INT)",
        "CREATE TABLE power.c1 USING power.meters TAGS (1)",
        "CREATE TABLE power.n1 (ts TIMESTAMP, v INT)",
        "CREATE DATABASE other",
        "CREATE TABLE other.x (ts TIMESTAMP, v INT)",
    ] {
        source.execute(sql).await.unwrap();
    }
    let resolver = CatalogResolver::connect(&opts, "power").unwrap();
    let mut tables = resolver.tables().await.unwrap();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let shape: Vec<(&str, Option<&str>)> = tables
        .iter()
        .map(|t: &ResolvedTable| (t.name.as_str(), t.super_table.as_deref()))
        .collect();
    assert_eq!(shape, vec![("c1", Some("meters")), ("n1", None)]);
    assert!(tables[0].uid != tables[1].uid && tables[0].uid > 0);
}

/// One step of a random scenario.
#[derive(Debug, Clone)]
enum Op {
    Write {
        table: usize,
        format: u8,
        ts: Vec<i64>,
    },
    Delete {
        table: usize,
        start: i64,
    },
    Drop {
        table: usize,
    },
    Roll,
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3u8, prop::collection::vec(-1000i64..1000, 0..6))
            .prop_map(|(table, format, ts)| Op::Write { table, format, ts }),
        2 => (0..4usize, -1000i64..1000).prop_map(|(table, start)| Op::Delete { table, start }),
        1 => (0..4usize).prop_map(|table| Op::Drop { table }),
        1 => Just(Op::Roll),
        2 => Just(Op::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the sequence of writes, rotations and reads, the feed reports every change in
    /// order, once; tables 2 and 3 are auto-created by their first write.
    #[test]
    fn random_sequences_round_trip(ops in prop::collection::vec(op(), 1..40), seg in 0u64..400) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut w = VnodeWal::create(dir.path(), 2, DB, VnodeOptions {
                seg_size: seg,
                ..VnodeOptions::default()
            }).unwrap();
            let resolver = MapResolver::new();
            resolver.insert(10, "t0", Some("meters"));
            resolver.insert(11, "t1", None);
            let mut f = feed(dir.path(), &resolver);
            f.start(&pos(&[(2, 0)])).await.unwrap();
            let names = ["t0", "t1", "t2", "t3"];
            let mut created = [true, true, false, false];
            // A table dropped and written again is created again under a new uid.
            let mut uids = [10i64, 11, 12, 13];
            let (mut expected, mut seen) = (Vec::new(), Vec::new());
            for op in &ops {
                match op {
                    Op::Write { table, format, ts } => {
                        let format = [RowFormat::Rows, RowFormat::Columns, RowFormat::ColumnsV0][*format as usize];
                        let uid = uids[*table];
                        let auto = (!created[*table]).then(|| child(names[*table], uid));
                        if auto.is_some() {
                            expected.push(tev(names[*table], TableEvent::Created));
                            created[*table] = true;
                        }
                        w.append(&Msg::Submit(vec![SubmitTable {
                            uid, suid: 100, format, timestamps: ts.clone(), auto_create: auto,
                        }])).unwrap();
                        if !ts.is_empty() {
                            expected.push(rows(names[*table], ts));
                        }
                    }
                    Op::Delete { table, start } => {
                        if !created[*table] { continue; }
                        w.append(&Msg::Delete {
                            suid: 100, uids: vec![uids[*table] as u64], start: *start, end: start + 10,
                            table_fname: "1.power.meters".into(),
                        }).unwrap();
                        expected.push(ChangeEvent::Delete { table: names[*table].into(), start: *start, end: start + 10 });
                    }
                    Op::Drop { table } => {
                        if !created[*table] { continue; }
                        w.append(&Msg::DropTables(vec![DropTable {
                            name: names[*table].into(), uid: uids[*table], suid: 100,
                        }])).unwrap();
                        expected.push(tev(names[*table], TableEvent::Dropped));
                        created[*table] = false;
                        uids[*table] += 100;
                    }
                    Op::Roll => w.roll().unwrap(),
                    Op::Read => seen.extend(drain(&mut f).await),
                }
            }
            seen.extend(drain(&mut f).await);
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(f.positions(), pos(&[(2, w.last_version() + 1)]));
            Ok(())
        })?;
    }
}
