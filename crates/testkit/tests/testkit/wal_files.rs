//! The emulator's TDengine-format WAL files (`Store::enable_wal_files`), driven by SQL through
//! the real `taos` crate and checked record by record against `docs/wal-format.md` with a
//! small decoder of this file's own: vnode directories per vgroup, versions equal to the
//! vgroup log's, CRCs, uids equal to `information_schema.ins_tables`, purge and DROP DATABASE.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder};
use taosbackup_testkit::walfile::crc32c;
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle};

const T0: i64 = 1_700_000_000_000;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!("wal-files-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

async fn connect(emu: &EmulatorHandle) -> taos::Taos {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .expect("connects");
    crate::nodelay(&taos).await;
    taos
}

async fn exec(taos: &taos::Taos, sql: &str) {
    taos.exec(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `name → uid` of `ins_tables` (or `ins_stables`) of `db`.
async fn uids(taos: &taos::Taos, table: &str, db: &str) -> BTreeMap<String, i64> {
    let name = if table == "ins_stables" {
        "stable_name"
    } else {
        "table_name"
    };
    let mut rs = taos
        .query(format!(
            "SELECT {name}, uid FROM information_schema.{table} WHERE db_name = '{db}'"
        ))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for r in rs.to_records().await.unwrap() {
        let n = match &r[0] {
            taos::Value::VarChar(s) => s.clone(),
            other => panic!("name {other:?}"),
        };
        let u = match &r[1] {
            taos::Value::BigInt(u) => *u,
            other => panic!("uid {other:?}"),
        };
        out.insert(n, u);
    }
    out
}

// ---- a decoder of docs/wal-format.md, just for these checks ----

struct Dec<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Dec<'a> {
    fn new(b: &'a [u8]) -> Self {
        Dec { b, p: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        s
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn uv(&mut self) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = self.take(1)[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    fn iv(&mut self) -> i64 {
        let u = self.uv();
        ((u >> 1) as i64) ^ -((u & 1) as i64)
    }
    fn cstr(&mut self) -> String {
        let n = self.uv() as usize;
        let s = self.take(n);
        assert_eq!(s.last(), Some(&0), "cstr ends with NUL");
        String::from_utf8(s[..n - 1].to_vec()).unwrap()
    }
    /// A nested block: its content.
    fn block(&mut self) -> Dec<'a> {
        let n = self.i32() as usize;
        Dec::new(self.take(n))
    }
}

/// What a record says, as far as these tests look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    Submit {
        uid: i64,
        suid: i64,
        /// Column format (`SUBMIT_REQ_COLUMN_DATA_FORMAT`) rather than rows.
        columns: bool,
        ts: Vec<i64>,
        /// The table an auto-create request (`SUBMIT_REQ_AUTO_CREATE_TABLE`) names.
        created: Option<String>,
    },
    Create {
        name: String,
        uid: i64,
        kind: i8,
        suid: Option<i64>,
    },
    Drop {
        name: String,
        uid: i64,
    },
    Alter {
        name: String,
        action: i8,
    },
    Stable {
        msg_type: i16,
        name: String,
        suid: i64,
    },
    Delete {
        uids: Vec<i64>,
        start: i64,
        end: i64,
    },
}

fn decode(msg_type: i16, body: &[u8]) -> What {
    let mut d = Dec::new(body);
    match msg_type {
        513 => {
            d.take(8);
            assert_eq!(i64::from_be_bytes(d.take(8).try_into().unwrap()), 1);
            let mut req = d.block();
            assert_eq!(req.uv(), 1, "one table a submit");
            let mut t = req.block();
            let flags = t.iv();
            let created = (flags & 1 != 0).then(|| {
                let mut r = t.block();
                r.iv();
                r.cstr()
            });
            let (suid, uid) = (t.i64(), t.i64());
            t.iv();
            let ts = if flags & 2 != 0 {
                let _n_col = t.uv();
                t.iv();
                assert_eq!(t.i8(), 9, "first column is the timestamp");
                let n = t.iv() as usize;
                assert_eq!(t.i8(), 4, "HAS_VALUE");
                (0..n).map(|_| t.i64()).collect()
            } else {
                let n = t.uv();
                (0..n)
                    .map(|_| {
                        t.take(4);
                        let len = t.i32() as usize;
                        let ts = t.i64();
                        t.take(len - 16);
                        ts
                    })
                    .collect()
            };
            What::Submit {
                uid,
                suid,
                columns: flags & 2 != 0,
                ts,
                created,
            }
        }
        515 => {
            d.take(8);
            let mut b = d.block();
            assert_eq!(b.iv(), 1);
            let mut r = b.block();
            r.iv();
            let name = r.cstr();
            let uid = r.i64();
            r.i64();
            r.i32();
            let kind = r.i8();
            let suid = (kind == 2).then(|| {
                let n = r.i32();
                if n > 0 {
                    r.cstr();
                }
                r.cstr();
                r.take(1);
                r.i64()
            });
            What::Create {
                name,
                uid,
                kind,
                suid,
            }
        }
        517 => {
            d.take(8);
            let mut b = d.block();
            What::Alter {
                name: b.cstr(),
                action: b.i8(),
            }
        }
        519 => {
            d.take(8);
            let mut b = d.block();
            assert_eq!(b.iv(), 1);
            let mut r = b.block();
            let name = r.cstr();
            r.i64();
            What::Drop { name, uid: r.i64() }
        }
        531 | 533 | 535 => {
            d.take(8);
            let mut b = d.block();
            What::Stable {
                msg_type,
                name: b.cstr(),
                suid: b.i64(),
            }
        }
        579 => {
            d.take(8);
            d.i64();
            let n = d.iv();
            let uids = (0..n).map(|_| d.i64()).collect();
            What::Delete {
                uids,
                start: d.i64(),
                end: d.i64(),
            }
        }
        other => panic!("unexpected message type {other}"),
    }
}

/// Every record of a vnode WAL directory, in version order, with its checks: magic, both
/// CRC-32Cs, the index entry, consecutive versions.
fn records(wal: &Path) -> Vec<(i64, What)> {
    let mut segs: Vec<i64> = fs::read_dir(wal)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".log").map(|v| v.parse().unwrap())
        })
        .collect();
    segs.sort();
    let mut out: Vec<(i64, What)> = Vec::new();
    for first in segs {
        let log = fs::read(wal.join(format!("{first:020}.log"))).unwrap();
        let idx = fs::read(wal.join(format!("{first:020}.idx"))).unwrap();
        let mut off = 0;
        let mut k = 0;
        while off < log.len() {
            let h = &log[off..off + 56];
            assert_eq!(
                u64::from_le_bytes(h[0..8].try_into().unwrap()),
                0xFAFB_FCFD_F4F3_F2F1
            );
            assert_eq!(
                u32::from_le_bytes(h[8..12].try_into().unwrap()),
                crc32c(&h[16..56])
            );
            let version = i64::from_le_bytes(h[16..24].try_into().unwrap());
            let len = i32::from_le_bytes(h[32..36].try_into().unwrap()) as usize;
            let msg_type = i16::from_le_bytes(h[36..38].try_into().unwrap());
            let body = &log[off + 56..off + 56 + len];
            assert_eq!(
                u32::from_le_bytes(h[12..16].try_into().unwrap()),
                crc32c(body)
            );
            assert_eq!(version, first + k, "versions consecutive within a segment");
            let entry = &idx[k as usize * 16..k as usize * 16 + 16];
            assert_eq!(i64::from_le_bytes(entry[0..8].try_into().unwrap()), version);
            assert_eq!(
                i64::from_le_bytes(entry[8..16].try_into().unwrap()),
                off as i64
            );
            if let Some((prev, _)) = out.last() {
                assert_eq!(version, prev + 1, "versions consecutive across segments");
            }
            out.push((version, decode(msg_type, body)));
            off += 56 + len;
            k += 1;
        }
    }
    out
}

/// The current meta file's JSON.
fn meta(wal: &Path) -> serde_json::Value {
    let n = fs::read_dir(wal)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_prefix("meta-ver")
                .and_then(|v| v.parse::<i64>().ok())
        })
        .max()
        .unwrap();
    serde_json::from_slice(&fs::read(wal.join(format!("meta-ver{n}"))).unwrap()).unwrap()
}

fn wal_dir(root: &Path, vg: u32) -> PathBuf {
    root.join(format!("vnode/vnode{vg}/wal"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_changes_become_tdengine_wal_records_with_catalog_uids() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let tmp = tempdir("records");
    let root = tmp.0.join("data");
    let taos = connect(&emu).await;
    // A database that exists before: its vnodes start at their log's end.
    exec(&taos, "CREATE DATABASE early VGROUPS 1").await;
    exec(&taos, "CREATE TABLE early.t (ts TIMESTAMP, v INT)").await;
    let store = emu.store();
    store.enable_wal_files(&root).unwrap();
    store.enable_wal_files(&root).unwrap();
    let err = store.enable_wal_files(&tmp.0.join("other")).unwrap_err();
    assert!(err.message.contains("already written to"), "{err}");
    assert_eq!(store.wal_files_dir(), Some(root.clone()));
    let early = store.vgroups("early").unwrap()[0];
    let (_, early_end) = store.wal_range("early", early).unwrap();
    assert!(early_end > 0);
    assert_eq!(
        meta(&wal_dir(&root, early))["meta"]["lastVer"],
        (early_end - 1).to_string()
    );
    exec(&taos, &format!("INSERT INTO early.t VALUES ({T0}, 1)")).await;
    let recs = records(&wal_dir(&root, early));
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].0, early_end,
        "the first record continues the log's versions"
    );

    exec(&taos, "CREATE DATABASE w VGROUPS 2").await;
    let vgs = store.vgroups("w").unwrap();
    for vg in &vgs {
        let info: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join(format!("vnode/vnode{vg}/vnode.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(info["config"]["dbname"], "1.w");
        assert_eq!(info["config"]["vgId"], vg.to_string());
        assert!(records(&wal_dir(&root, *vg)).is_empty());
    }
    exec(
        &taos,
        "CREATE STABLE w.st (ts TIMESTAMP, v INT) TAGS (g INT)",
    )
    .await;
    exec(&taos, "CREATE TABLE w.c1 USING w.st TAGS (1)").await;
    exec(&taos, "CREATE TABLE w.n1 (ts TIMESTAMP, v INT)").await;
    exec(
        &taos,
        &format!(
            "INSERT INTO w.c1 VALUES ({T0}, 1) ({}, 2) ({}, 3)",
            T0 + 1000,
            T0 + 2000
        ),
    )
    .await;
    exec(
        &taos,
        &format!("INSERT INTO w.c2 USING w.st TAGS (2) VALUES ({T0}, 9)"),
    )
    .await;
    exec(&taos, &format!("INSERT INTO w.n1 VALUES ({T0}, 5)")).await;
    exec(
        &taos,
        &format!(
            "DELETE FROM w.c1 WHERE ts >= {} AND ts <= {}",
            T0 + 500,
            T0 + 1500
        ),
    )
    .await;
    // A raw block (what restores write) arrives as column-format submit data.
    exec(&taos, "CREATE TABLE w.n2 (ts TIMESTAMP, v INT)").await;
    let mut rs = taos.query("SELECT * FROM w.n1").await.unwrap();
    let mut block = rs.blocks().try_next().await.unwrap().unwrap();
    block.with_table_name("w.n2");
    taos.write_raw_block(&block).await.unwrap();
    exec(&taos, "ALTER TABLE w.n1 ADD COLUMN x INT").await;
    exec(&taos, "ALTER TABLE w.c2 SET TAG g = 3").await;
    exec(&taos, "ALTER STABLE w.st ADD COLUMN y INT").await;
    let tables = uids(&taos, "ins_tables", "w").await;
    let suid = uids(&taos, "ins_stables", "w").await["st"];
    exec(&taos, "DROP TABLE w.c1").await;

    let mut all: Vec<What> = Vec::new();
    for vg in &vgs {
        let recs = records(&wal_dir(&root, *vg));
        let (begin, end) = store.wal_range("w", *vg).unwrap();
        assert_eq!(begin, 0);
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..end).collect::<Vec<_>>(),
            "vgroup {vg}: one record per log entry, same versions"
        );
        // Super-table DDL reaches every vnode.
        let stable: Vec<&What> = recs
            .iter()
            .map(|r| &r.1)
            .filter(|w| matches!(w, What::Stable { .. }))
            .collect();
        assert_eq!(
            stable,
            vec![
                &What::Stable {
                    msg_type: 531,
                    name: "st".into(),
                    suid
                },
                &What::Stable {
                    msg_type: 533,
                    name: "st".into(),
                    suid
                }
            ]
        );
        all.extend(recs.into_iter().map(|r| r.1));
    }
    let has = |w: What| assert!(all.contains(&w), "{w:?} in {all:#?}");
    let (c1, c2, n1, n2) = (tables["c1"], tables["c2"], tables["n1"], tables["n2"]);
    has(What::Create {
        name: "c1".into(),
        uid: c1,
        kind: 2,
        suid: Some(suid),
    });
    // INSERT … USING logs no create of its own: the submit carries the create request.
    assert!(
        !all.iter()
            .any(|w| matches!(w, What::Create { name, .. } if name == "c2")),
        "{all:#?}"
    );
    has(What::Create {
        name: "n1".into(),
        uid: n1,
        kind: 3,
        suid: None,
    });
    has(What::Submit {
        uid: c1,
        suid,
        columns: false,
        ts: vec![T0, T0 + 1000, T0 + 2000],
        created: None,
    });
    has(What::Submit {
        uid: c2,
        suid,
        columns: false,
        ts: vec![T0],
        created: Some("c2".into()),
    });
    has(What::Submit {
        uid: n1,
        suid: 0,
        columns: false,
        ts: vec![T0],
        created: None,
    });
    has(What::Submit {
        uid: n2,
        suid: 0,
        columns: true,
        ts: vec![T0],
        created: None,
    });
    // The rows actually deleted: an exact range.
    has(What::Delete {
        uids: vec![c1],
        start: T0 + 1000,
        end: T0 + 1000,
    });
    has(What::Alter {
        name: "n1".into(),
        action: 5,
    });
    has(What::Alter {
        name: "c2".into(),
        action: 4,
    });
    has(What::Drop {
        name: "c1".into(),
        uid: c1,
    });

    // DROP DATABASE removes the vnodes.
    exec(&taos, "DROP DATABASE w").await;
    for vg in &vgs {
        assert!(!root.join(format!("vnode/vnode{vg}")).exists());
    }
    assert!(root.join(format!("vnode/vnode{early}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_whole_segments_and_advances_the_first_version() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let tmp = tempdir("purge");
    let root = tmp.0.join("data");
    emu.store().enable_wal_files_with(&root, 200).unwrap();
    let taos = connect(&emu).await;
    exec(&taos, "CREATE DATABASE p VGROUPS 1").await;
    exec(&taos, "CREATE TABLE p.t (ts TIMESTAMP, v INT)").await;
    for i in 0..20 {
        exec(&taos, &format!("INSERT INTO p.t VALUES ({}, {i})", T0 + i)).await;
    }
    let vg = emu.store().vgroups("p").unwrap()[0];
    let wal = wal_dir(&root, vg);
    let segs = |wal: &Path| {
        let mut v: Vec<i64> = fs::read_dir(wal)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_suffix(".log").map(|v| v.parse().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let before = segs(&wal);
    assert!(before.len() > 3, "rotation at 200 bytes: {before:?}");
    assert_eq!(records(&wal).len(), 21);

    // A purge to the middle deletes only segments wholly below it.
    exec(&taos, "PURGE WAL p TO 10").await;
    let mid = segs(&wal);
    assert!(mid[0] <= 10 && mid[0] > 0, "{before:?} → {mid:?}");
    assert!(before.contains(&mid[0]));
    let m = meta(&wal);
    assert_eq!(m["meta"]["firstVer"], mid[0].to_string());
    assert_eq!(m["files"][0]["firstVer"], mid[0].to_string());
    assert_eq!(records(&wal).first().unwrap().0, mid[0]);

    // A purge of everything leaves one empty segment at the end, as after a snapshot.
    exec(&taos, "PURGE WAL p TO 1000").await;
    assert_eq!(segs(&wal), vec![21]);
    assert!(records(&wal).is_empty());
    assert_eq!(meta(&wal)["meta"]["firstVer"], "21");
    assert_eq!(meta(&wal)["meta"]["lastVer"], "20");
    exec(&taos, &format!("INSERT INTO p.t VALUES ({}, 0)", T0 + 100)).await;
    let recs = records(&wal);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0, 21);
}
