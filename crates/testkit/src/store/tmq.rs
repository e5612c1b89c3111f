//! Topics, WAL purge and the consumer-group operations behind `/rest/tmq`.

use std::sync::Arc;

use serde_json::Value as Json;

use super::catalog::Catalog;
use super::wal::{DataBlock, Topic, VgWal, WalBody, WalEntry};
use super::{Outcome, Store};
use crate::error::{EmuError, code};
use crate::walfile::{Msg, TDMT_VND_TMQ_COMMIT_OFFSET, TDMT_VND_TMQ_SUBSCRIBE};

/// Rows after which a poll stops gathering submits into one data message: 4096 in
/// `extractDataAndRspForDbStbSubscribe` (`tq/tqUtil.c`, 3.3.x: `totalRows >= 4096`; newer
/// versions compare with the request's `minPollRows`).
pub(crate) const POLL_MIN_ROWS: usize = 4096;

/// A message a poll hands out.
#[derive(Debug, Clone)]
pub(crate) enum Polled {
    /// A meta entry (`TMQ_RES_TABLE_META`).
    Meta(Arc<WalEntry>),
    /// Consecutive submit entries (`TMQ_RES_DATA`, or `TMQ_RES_METADATA` when a META topic's
    /// submits carry creates).
    Data {
        /// The submit entries, in log order.
        entries: Vec<Arc<WalEntry>>,
        /// The topic delivers meta: the creates the submits carry are part of the message.
        with_meta: bool,
    },
}

impl Polled {
    /// The blocks of a data message, in order (none for a meta message).
    pub(crate) fn blocks(&self) -> Vec<&DataBlock> {
        match self {
            Polled::Meta(_) => Vec::new(),
            Polled::Data { entries, .. } => entries
                .iter()
                .flat_map(|e| match &e.body {
                    WalBody::Data(b) => b.as_slice(),
                    _ => &[],
                })
                .collect(),
        }
    }

    /// The create requests a data message carries (a META topic only), in order.
    pub(crate) fn creates(&self) -> Vec<&Json> {
        match self {
            Polled::Data {
                with_meta: true, ..
            } => self
                .blocks()
                .into_iter()
                .filter_map(|b| b.create.as_ref().map(|c| &c.json))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// taosAdapter's `message_type`: 1 data (`TMQ_RES_DATA`), 2 meta
    /// (`TMQ_RES_TABLE_META`), 3 meta and data (`TMQ_RES_METADATA`).
    pub(crate) fn message_type(&self) -> i64 {
        match self {
            Polled::Meta(_) => 2,
            Polled::Data { .. } if !self.creates().is_empty() => 3,
            Polled::Data { .. } => 1,
        }
    }
}

/// Where a consumer group starts on a vgroup it has no committed offset for
/// (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetReset {
    /// The first retained version.
    Earliest,
    /// The end of the log.
    Latest,
    /// No default: subscribing fails without a committed offset.
    None,
}

/// A consumer's hold on one vgroup of a topic.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    /// Topic.
    pub topic: String,
    /// Database of the topic.
    pub db: String,
    /// Vgroup id.
    pub vgroup: u32,
    /// Meta messages are delivered.
    pub with_meta: bool,
    /// Next version to deliver (the C client's `endOffset`, what `tmq_position` reports).
    pub pos: i64,
    /// What `tmq_get_topic_assignment` reports as `currentOffset`: the C client's
    /// `beginOffset`, set by `updateVgInfo` (`client/src/clientTmq.c`) to the request offset
    /// of the last poll answered with data (where that poll started, not the position after
    /// it), to the position after a meta message, and to the offset of a seek.
    pub begin_offset: i64,
}

fn topic_not_exist(name: &str) -> EmuError {
    EmuError::new(code::TOPIC_NOT_EXIST, format!("Topic not exist: {name}"))
}

impl Store {
    /// Emulator-only: drops the log entries of `vgroup` of `db` below version `up_to`, as
    /// TDengine's WAL cleaning does when retention expires. `begin` becomes
    /// `min(up_to, end)`; consumers behind it move to `begin` on their next poll, silently.
    /// With WAL files enabled, the segments wholly below the new `begin` are deleted
    /// (everything, after a roll, when `up_to` reaches the end), as `PURGE WAL` does.
    pub fn purge_wal(&self, db: &str, vgroup: u32, up_to: i64) -> Result<(), EmuError> {
        self.with_wal(db, vgroup, |w| w.purge_to(up_to))?;
        self.write().db_mut(db)?.sync_files(vgroup)
    }

    /// Emulator-only, for tests of meta messages no SQL statement of the emulator produces:
    /// logs `meta` (TDengine's TMQ meta JSON) as an ALTER TABLE entry of `table` in its
    /// vgroup, as if the server had applied it (the table itself is not changed). Returns
    /// the entry's version.
    pub fn inject_meta(&self, db: &str, table: &str, meta: Json) -> Result<i64, EmuError> {
        let now = self.now_ns();
        let mut cat = self.write();
        let d = cat.db_mut(db)?;
        let vgroup = d
            .tables
            .get(table)
            .map(|t| t.vgroup)
            .ok_or_else(|| EmuError::new(code::TABLE_NOT_EXIST, "Table does not exist"))?;
        let action = meta["alterType"]
            .as_i64()
            .and_then(|a| i8::try_from(a).ok());
        let msg = Msg::AlterTable {
            name: table.to_string(),
            action: action.unwrap_or_default(),
        };
        d.log(vgroup, now, WalBody::Meta(meta), msg)
    }

    /// `(begin, end)` of a vgroup's log (retention applied): the first retained version and
    /// the last version + 1.
    pub fn wal_range(&self, db: &str, vgroup: u32) -> Result<(i64, i64), EmuError> {
        self.with_wal(db, vgroup, |w| (w.begin, w.end))
    }

    /// Runs `f` on the log of `vgroup` of `db` (retention applied first).
    fn with_wal<R>(
        &self,
        db: &str,
        vgroup: u32,
        f: impl FnOnce(&mut VgWal) -> R,
    ) -> Result<R, EmuError> {
        let now = self.now_ns();
        let mut cat = self.write();
        let d = cat.db_mut(db)?;
        if !d.vgroup_ids().contains(&vgroup) {
            return Err(EmuError::new(
                code::TMQ_INVALID_VGID,
                format!("vgroup {vgroup} is not a vgroup of database {db}"),
            ));
        }
        Ok(f(d.wal_mut(vgroup, now)))
    }

    /// The vgroup ids of a database.
    pub fn vgroups(&self, db: &str) -> Result<Vec<u32>, EmuError> {
        Ok(self.read().db(db)?.vgroup_ids().collect())
    }

    pub(super) fn create_topic(
        &self,
        if_not_exists: bool,
        name: String,
        with_meta: bool,
        db: String,
        sql: &str,
    ) -> Result<Outcome, EmuError> {
        let now_ms = self.now_ns().div_euclid(1_000_000);
        let mut cat = self.write();
        if cat.tmq.topics.contains_key(&name) {
            if if_not_exists {
                return Ok(Outcome::Affected(0));
            }
            return Err(EmuError::new(
                code::TOPIC_ALREADY_EXIST,
                "Topic already exists",
            ));
        }
        let d = cat.db(&db)?;
        if d.opts.wal_retention_period == 0 {
            return Err(EmuError::new(
                code::WAL_RETENTION_ZERO,
                "WAL retention period is zero",
            ));
        }
        cat.tmq.topics.insert(
            name.clone(),
            Topic {
                name,
                db,
                with_meta,
                create_time: now_ms,
                sql: sql.trim().to_string(),
            },
        );
        Ok(Outcome::Affected(0))
    }

    pub(super) fn drop_topic(&self, if_exists: bool, name: &str) -> Result<Outcome, EmuError> {
        let mut cat = self.write();
        if !cat.tmq.topics.contains_key(name) {
            if if_exists {
                return Ok(Outcome::Affected(0));
            }
            return Err(topic_not_exist(name));
        }
        let busy = cat
            .tmq
            .subs
            .iter()
            .any(|((t, _, _), s)| t == name && !s.consumers.is_empty());
        if busy {
            return Err(EmuError::new(
                code::TOPIC_SUBSCRIBED,
                "Topic subscribed cannot be dropped",
            ));
        }
        cat.tmq.topics.remove(name);
        cat.tmq.subs.retain(|(t, _, _), _| t != name);
        Ok(Outcome::Affected(0))
    }

    pub(super) fn purge_sql(
        &self,
        db: &str,
        vgroup: Option<u32>,
        to: i64,
    ) -> Result<Outcome, EmuError> {
        match vgroup {
            Some(vg) => self.purge_wal(db, vg, to)?,
            None => {
                for vg in self.vgroups(db)? {
                    self.purge_wal(db, vg, to)?;
                }
            }
        }
        Ok(Outcome::Affected(0))
    }

    /// A fresh consumer id.
    pub(crate) fn tmq_consumer_id(&self) -> u64 {
        let mut cat = self.write();
        cat.tmq.last_consumer += 1;
        0x5a00_0000_0000 + cat.tmq.last_consumer
    }

    /// Subscribes `consumer` of `group` to `topics`: every vgroup of each topic's database,
    /// starting at the group's committed offset (moved up to `begin` if the log was purged
    /// past it), else where `reset` says.
    pub(crate) fn tmq_subscribe(
        &self,
        group: &str,
        consumer: u64,
        topics: &[String],
        reset: OffsetReset,
    ) -> Result<Vec<Assignment>, EmuError> {
        let now = self.now_ns();
        let mut cat = self.write();
        let mut out = Vec::new();
        for name in topics {
            let t = cat
                .tmq
                .topics
                .get(name)
                .cloned()
                .ok_or_else(|| topic_not_exist(name))?;
            let vgroups: Vec<u32> = cat.db(&t.db)?.vgroup_ids().collect();
            // The consumer joining its group rebalances the topic: the mnode sends every
            // vnode a `TDMT_VND_TMQ_SUBSCRIBE`, a WAL entry that yields no message.
            log_internal(&mut cat, &t.db, &vgroups, now, Internal::Subscribe)?;
            for vg in vgroups {
                let (begin, end) = range(&mut cat, &t.db, vg, now)?;
                let committed = cat
                    .tmq
                    .subs
                    .get(&(name.clone(), group.to_string(), vg))
                    .and_then(|s| s.committed);
                let pos = match (committed, reset) {
                    (Some(c), _) => c.max(begin),
                    (None, OffsetReset::Earliest) => begin,
                    (None, OffsetReset::Latest) => end,
                    (None, OffsetReset::None) => {
                        return Err(EmuError::new(
                            code::TMQ_NO_COMMITTED,
                            "No committed info (auto.offset.reset=none)",
                        ));
                    }
                };
                out.push(Assignment {
                    topic: name.clone(),
                    db: t.db.clone(),
                    vgroup: vg,
                    with_meta: t.with_meta,
                    pos,
                    begin_offset: pos,
                });
            }
        }
        for a in &out {
            let s = cat
                .tmq
                .subs
                .entry((a.topic.clone(), group.to_string(), a.vgroup))
                .or_default();
            if !s.consumers.contains(&consumer) {
                s.consumers.push(consumer);
            }
        }
        Ok(out)
    }

    /// Forgets `consumer` (unsubscribe or disconnect); committed offsets stay. The group
    /// rebalances: every vgroup the consumer held gets a `TDMT_VND_TMQ_SUBSCRIBE` entry.
    pub(crate) fn tmq_release(&self, consumer: u64) {
        let now = self.now_ns();
        let mut cat = self.write();
        let mut held = Vec::new();
        for ((topic, _, vg), s) in cat.tmq.subs.iter_mut() {
            let before = s.consumers.len();
            s.consumers.retain(|c| *c != consumer);
            if s.consumers.len() != before {
                held.push((topic.clone(), *vg));
            }
        }
        for (topic, vg) in held {
            let Some(db) = cat.tmq.topics.get(&topic).map(|t| t.db.clone()) else {
                continue;
            };
            // A failure here (database dropped meanwhile) leaves nothing to rebalance.
            let _ = log_internal(&mut cat, &db, &[vg], now, Internal::Subscribe);
        }
    }

    /// The next message for an assignment, as `extractDataAndRspForDbStbSubscribe`
    /// (`dnode/vnode/src/tq/tqUtil.c`) builds it from the log:
    ///
    /// - entries that yield no message (internal entries; meta entries for a topic without
    ///   META) are passed over, as `tqFetchLog` (`tq/tqRead.c`) does;
    /// - a meta entry is a message of its own, the position after it;
    /// - consecutive submits are gathered into one data message until it holds
    ///   [`POLL_MIN_ROWS`] rows (the position after that submit), a meta entry follows (the
    ///   position at the meta entry, which the next poll delivers) or the log ends (the
    ///   position at the end). The creates the submits carry make it a meta+data message
    ///   (`TMQ_MSG_TYPE__POLL_DATA_META_RSP`, `tqTaosxScanLog`) for a META topic;
    /// - nothing found: `None`, the position moved to the end all the same (the empty
    ///   response's `rspOffset`).
    ///
    /// A position behind `begin` moves to `begin` (`walReaderVerifyOffset`). Sets
    /// `begin_offset` as the C client's `updateVgInfo` does. The server's one-second
    /// budget per poll is not modelled.
    ///
    /// The log is read under the store's read lock unless retention has entries to purge:
    /// in TDengine a poll reads the vnode's WAL (`tqFetchLog`) and does not hold up the
    /// catalog's table scans (`sysTableScanUserTables` reads the vnode's meta), and WAL
    /// files are removed by the vnode's own commit (`walEndSnapshot`, `wal/src/walWrite.c`),
    /// not by a poll.
    pub(crate) fn tmq_poll(&self, a: &mut Assignment) -> Result<Option<Polled>, EmuError> {
        let now = self.now_ns();
        {
            let cat = self.read();
            if !cat.tmq.topics.contains_key(&a.topic) {
                return Err(topic_not_exist(&a.topic));
            }
            let d = cat.db(&a.db)?;
            if let Some(w) = d.wal.get(&a.vgroup) {
                if !w.retention_due(&d.opts, now) {
                    return Ok(poll_log(w, a));
                }
            }
        }
        let mut cat = self.write();
        if !cat.tmq.topics.contains_key(&a.topic) {
            return Err(topic_not_exist(&a.topic));
        }
        let d = cat.db_mut(&a.db)?;
        Ok(poll_log(d.wal_mut(a.vgroup, now), a))
    }

    /// `(begin, end)` of an assignment's vgroup.
    pub(crate) fn tmq_range(&self, a: &Assignment) -> Result<(i64, i64), EmuError> {
        let now = self.now_ns();
        {
            // Under the read lock when retention has nothing to purge, as `tmq_poll`.
            let cat = self.read();
            let d = cat.db(&a.db)?;
            if let Some(w) = d.wal.get(&a.vgroup) {
                if !w.retention_due(&d.opts, now) {
                    return Ok((w.begin, w.end));
                }
            }
        }
        let mut cat = self.write();
        range(&mut cat, &a.db, a.vgroup, now)
    }

    /// Stores a group's committed offset. A changed offset is a `TDMT_VND_TMQ_COMMIT_OFFSET`
    /// WAL entry in the vgroup (`vnodeSvr.c`); committing the value already committed sends
    /// nothing (the client's `TSDB_CODE_TMQ_SAME_COMMITTED_VALUE`, which
    /// `tmq_commit_offset_sync` turns into success).
    pub(crate) fn tmq_commit(&self, topic: &str, group: &str, vgroup: u32, offset: i64) {
        let now = self.now_ns();
        let mut cat = self.write();
        let sub = cat
            .tmq
            .subs
            .entry((topic.to_string(), group.to_string(), vgroup))
            .or_default();
        if sub.committed == Some(offset) {
            return;
        }
        sub.committed = Some(offset);
        if let Some(db) = cat.tmq.topics.get(topic).map(|t| t.db.clone()) {
            // A database dropped meanwhile has no log to write to.
            let _ = log_internal(&mut cat, &db, &[vgroup], now, Internal::CommitOffset);
        }
    }

    /// A group's committed offset.
    pub(crate) fn tmq_committed(&self, topic: &str, group: &str, vgroup: u32) -> Option<i64> {
        self.read()
            .tmq
            .subs
            .get(&(topic.to_string(), group.to_string(), vgroup))
            .and_then(|s| s.committed)
    }
}

/// The WAL entries TMQ itself writes, which yield no message.
#[derive(Debug, Clone, Copy)]
enum Internal {
    /// A consumer joined or left its group: the rebalance reaches every vnode.
    Subscribe,
    /// A group's committed offset changed.
    CommitOffset,
}

/// Appends an internal entry (one that yields no TMQ message) to `vgroups` of `db`. The WAL
/// files carry it with its message type (`TDMT_VND_TMQ_SUBSCRIBE` 2049,
/// `TDMT_VND_TMQ_COMMIT_OFFSET` 2053, `include/common/tmsgdef.h`); the body is a placeholder
/// (8 bytes), not TDengine's `SMqRebVgReq` / `STqOffset`: the `wal` feed skips both types
/// without reading them.
fn log_internal(
    cat: &mut Catalog,
    db: &str,
    vgroups: &[u32],
    now: i64,
    what: Internal,
) -> Result<(), EmuError> {
    let (msg_type, name) = match what {
        Internal::Subscribe => (TDMT_VND_TMQ_SUBSCRIBE, "TDMT_VND_TMQ_SUBSCRIBE"),
        Internal::CommitOffset => (TDMT_VND_TMQ_COMMIT_OFFSET, "TDMT_VND_TMQ_COMMIT_OFFSET"),
    };
    let d = cat.db_mut(db)?;
    for &vg in vgroups {
        let msg = Msg::Other {
            msg_type,
            body: vec![0; 8],
        };
        d.log(vg, now, WalBody::Internal(name), msg)?;
    }
    Ok(())
}

/// A poll's reading of `w` for `a` (see [`Store::tmq_poll`]); moves `a`'s position.
fn poll_log(w: &VgWal, a: &mut Assignment) -> Option<Polled> {
    let requested = a.pos;
    a.pos = a.pos.max(w.begin);
    let mut data: Vec<Arc<WalEntry>> = Vec::new();
    let mut rows = 0;
    loop {
        let Some(e) = w.first_from(a.pos) else {
            a.pos = a.pos.max(w.end);
            break;
        };
        match &e.body {
            WalBody::Internal(what) => {
                tracing::trace!(vgroup = a.vgroup, version = e.version, what, "no message");
                a.pos = e.version + 1;
            }
            WalBody::Meta(_) if !a.with_meta => a.pos = e.version + 1,
            WalBody::Meta(_) if !data.is_empty() => {
                // The data gathered so far goes first; the meta entry is next.
                a.pos = e.version;
                break;
            }
            WalBody::Meta(_) => {
                a.pos = e.version + 1;
                a.begin_offset = a.pos;
                return Some(Polled::Meta(e.clone()));
            }
            WalBody::Data(blocks) => {
                rows += blocks.iter().map(DataBlock::rows).sum::<usize>();
                a.pos = e.version + 1;
                data.push(e.clone());
                if rows >= POLL_MIN_ROWS {
                    break;
                }
            }
        }
    }
    if data.is_empty() {
        return None;
    }
    a.begin_offset = requested;
    Some(Polled::Data {
        entries: data,
        with_meta: a.with_meta,
    })
}

fn range(cat: &mut Catalog, db: &str, vgroup: u32, now: i64) -> Result<(i64, i64), EmuError> {
    let w = cat.db_mut(db)?.wal_mut(vgroup, now);
    Ok((w.begin, w.end))
}
