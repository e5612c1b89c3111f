//! Property test: over random sequences of writes, deletes, backups that commit or fail,
//! and save/load cycles, every snapshot holds exactly the blocks changed since the last
//! committed backup — nothing lost, nothing invented.

use std::collections::BTreeSet;

use proptest::prelude::*;
use taosbackup_core::{BucketWidth, Precision};
use taosbackup_engine::Tracker;

const W: i64 = 60_000; // one minute in ms

#[derive(Debug, Clone)]
enum Op {
    Write(u8, Vec<i64>),
    Batch(Vec<(u8, i64)>),
    Delete(u8, i64, i64),
    Backup { commit: bool },
    SaveLoad,
}

fn op() -> impl Strategy<Value = Op> {
    let ts = -20 * W..20 * W;
    prop_oneof![
        4 => (0u8..4, proptest::collection::vec(ts.clone(), 1..20)).prop_map(|(t, v)| Op::Write(t, v)),
        3 => proptest::collection::vec((0u8..4, ts.clone()), 1..30).prop_map(Op::Batch),
        1 => (0u8..4, ts.clone(), ts).prop_map(|(t, a, b)| Op::Delete(t, a.min(b), a.max(b))),
        2 => any::<bool>().prop_map(|commit| Op::Backup { commit }),
        1 => Just(Op::SaveLoad),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_hold_exactly_the_uncommitted_changes(ops in proptest::collection::vec(op(), 1..60)) {
        let width = BucketWidth::from_seconds(60).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut t = Tracker::new(width, Precision::Ms);
        // Model: blocks holding rows, and blocks changed since the last committed backup.
        let mut has_rows: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut pending: BTreeSet<(String, i64)> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Write(tb, ts) => {
                    let name = format!("t{tb}");
                    t.mark_rows(&name, &ts);
                    for x in ts {
                        has_rows.insert((name.clone(), x.div_euclid(W)));
                        pending.insert((name.clone(), x.div_euclid(W)));
                    }
                }
                Op::Batch(marks) => {
                    let ords: Vec<(u32, i64)> =
                        marks.iter().map(|&(tb, x)| (t.ordinal(&format!("t{tb}")), x)).collect();
                    t.mark_batch(&ords);
                    for (tb, x) in marks {
                        has_rows.insert((format!("t{tb}"), x.div_euclid(W)));
                        pending.insert((format!("t{tb}"), x.div_euclid(W)));
                    }
                }
                Op::Delete(tb, a, b) => {
                    let name = format!("t{tb}");
                    t.mark_deleted(&name, a, b);
                    let (lo, hi) = (a.div_euclid(W), b.div_euclid(W));
                    let hit: Vec<_> = has_rows
                        .iter()
                        .filter(|(n, k)| *n == name && (lo..=hi).contains(k))
                        .cloned()
                        .collect();
                    pending.extend(hit);
                }
                Op::Backup { commit } => {
                    let snap = t.snapshot_and_reset();
                    let got: BTreeSet<(String, i64)> = snap
                        .tables()
                        .flat_map(|n| snap.dirty_buckets(n).into_iter().map(move |b| (n.to_string(), b.index())))
                        .collect();
                    prop_assert_eq!(&got, &pending);
                    if commit {
                        t.commit(&snap, &[]);
                        pending.clear();
                    } else {
                        t.restore(snap);
                    }
                }
                Op::SaveLoad => {
                    t.save(&path).unwrap();
                    t = Tracker::load(&path, width).unwrap();
                }
            }
        }
    }
}
