//! What taosbackup owns on a TDengine server for its `tmq` change feeds, for
//! `taosbackup feed list|drop` (issue 16, item 6): the `taosbackup_*` topics, their consumer
//! groups and how far behind the WAL each group is.
//!
//! Facts used (TDengine's source, `source/common/src/systable.c`): `information_schema.
//! ins_topics` has `topic_name`, `db_name`, `create_time` (and per version `sql`, `schema`,
//! `meta`, `type`: so it is read with `SELECT *` and by column name, fidelity audit A2);
//! `ins_subscriptions` has `topic_name`, `consumer_group`, `vgroup_id`, `consumer_id` (BIGINT
//! in older versions, BINARY(32) in newer), `offset` (text such as `wal:123`) and, in newer
//! versions, `rows`. `DROP TOPIC` fails while a live consumer holds the topic (0x03EB, "Topic
//! subscribed cannot be dropped") and drops the topic's committed offsets with it
//! (`source/dnode/mnode/impl/src/mndTopic.c`, `mndProcessDropTopicReq`:
//! `mndDropOffsetByTopic`). The WAL's end per vgroup comes from TMQ's assignment (taos-ws
//! 0.12.3 `topic_assignment`: `begin`, `end`, `current_offset`).

use std::collections::BTreeMap;

use taos::{AsAsyncConsumer, AsyncTBuilder, TmqBuilder};

use crate::Error;
use crate::conn::Ctx;
use crate::source::TaosSource;

/// The prefix of every topic taosbackup creates (`taosbackup_<database>_<hash>`).
pub const FEED_TOPIC_PREFIX: &str = "taosbackup_";

/// A change-feed topic taosbackup created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTopic {
    /// The topic name.
    pub topic: String,
    /// The database it reads.
    pub database: String,
    /// When it was created (milliseconds since the epoch), when the server says.
    pub created_ms: Option<i64>,
    /// Its consumer groups.
    pub groups: Vec<FeedGroup>,
}

/// A consumer group of a feed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedGroup {
    /// The group name.
    pub group: String,
    /// Live consumers holding it (empty: nobody reads it now).
    pub consumers: Vec<String>,
    /// Per vgroup: the committed offset and the WAL's end (last version + 1), when known.
    pub vgroups: BTreeMap<i32, FeedPosition>,
}

/// Where a group stands on one vgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedPosition {
    /// The committed WAL version (`wal:N` of `ins_subscriptions`).
    pub committed: Option<i64>,
    /// The WAL's end from TMQ's assignment.
    pub end: Option<i64>,
}

impl FeedGroup {
    /// WAL versions the group has yet to read, summed over its vgroups (`None` when an end
    /// or a committed offset is unknown).
    pub fn lag(&self) -> Option<i64> {
        let mut total = 0i64;
        for p in self.vgroups.values() {
            total += (p.end? - p.committed?).max(0);
        }
        Some(total)
    }
}

fn text_at(row: &[taosbackup_core::Value], col: Option<usize>) -> Option<String> {
    col.and_then(|c| row.get(c)).and_then(crate::catalog::text)
}

impl TaosSource {
    /// Whether `topic` exists on the server.
    pub async fn topic_exists(&self, topic: &str) -> Result<bool, Error> {
        let rows = self
            .pool()
            .query_values(Ctx::default(), &crate::sql::topics())
            .await?;
        let c = rows.col("topic_name", "ins_topics")?;
        Ok(rows
            .rows
            .iter()
            .any(|r| text_at(r, Some(c)).as_deref() == Some(topic)))
    }

    /// The `taosbackup_*` topics on the server with their consumer groups. With `lag`, each
    /// group nobody consumes now is subscribed to for a moment to read the WAL's end (its
    /// committed offsets are untouched: nothing is polled or committed); groups with live
    /// consumers are left alone.
    pub async fn feed_topics(&self, lag: bool) -> Result<Vec<FeedTopic>, Error> {
        let topics = self
            .pool()
            .query_values(Ctx::default(), &crate::sql::topics())
            .await?;
        let (tc, dc) = (
            topics.col("topic_name", "ins_topics")?,
            topics.col("db_name", "ins_topics")?,
        );
        let cc = topics.col("create_time", "ins_topics").ok();
        let mut out: Vec<FeedTopic> = Vec::new();
        for r in &topics.rows {
            let Some(topic) = text_at(r, Some(tc)) else {
                continue;
            };
            if !topic.starts_with(FEED_TOPIC_PREFIX) {
                continue;
            }
            let created_ms = cc.and_then(|c| match r.get(c) {
                Some(taosbackup_core::Value::Timestamp(t)) => Some(*t),
                _ => None,
            });
            out.push(FeedTopic {
                database: text_at(r, Some(dc)).unwrap_or_default(),
                topic,
                created_ms,
                groups: Vec::new(),
            });
        }
        let subs = self
            .pool()
            .query_values(Ctx::default(), &crate::sql::subscriptions())
            .await?;
        let (st, sg, sv) = (
            subs.col("topic_name", "ins_subscriptions")?,
            subs.col("consumer_group", "ins_subscriptions")?,
            subs.col("vgroup_id", "ins_subscriptions")?,
        );
        let (sc, so) = (
            subs.col("consumer_id", "ins_subscriptions").ok(),
            subs.col("offset", "ins_subscriptions").ok(),
        );
        for r in &subs.rows {
            let Some(t) = out
                .iter_mut()
                .find(|t| text_at(r, Some(st)).as_deref() == Some(t.topic.as_str()))
            else {
                continue;
            };
            let group = text_at(r, Some(sg)).unwrap_or_default();
            let Some(vgroup) = r.get(sv).and_then(crate::catalog::int) else {
                continue;
            };
            let g = match t.groups.iter().position(|g| g.group == group) {
                Some(i) => &mut t.groups[i],
                None => {
                    t.groups.push(FeedGroup {
                        group,
                        consumers: Vec::new(),
                        vgroups: BTreeMap::new(),
                    });
                    t.groups.last_mut().expect("just pushed")
                }
            };
            let consumer = sc.and_then(|c| r.get(c)).and_then(|v| {
                crate::catalog::text(v).or_else(|| crate::catalog::int(v).map(|n| n.to_string()))
            });
            if let Some(c) = consumer.filter(|c| !c.is_empty() && c != "0") {
                if !g.consumers.contains(&c) {
                    g.consumers.push(c);
                }
            }
            let committed = text_at(r, so).and_then(|o| {
                o.rsplit_once(':')
                    .and_then(|(kind, n)| (kind == "wal" || kind == "log").then_some(n))
                    .and_then(|n| n.trim().parse::<i64>().ok())
            });
            let p = g.vgroups.entry(vgroup as i32).or_default();
            p.committed = p.committed.or(committed);
        }
        if lag {
            for t in &mut out {
                // Only taosbackup's own groups (`<topic>_g`), and only idle ones.
                let topic = t.topic.clone();
                for g in t
                    .groups
                    .iter_mut()
                    .filter(|g| g.consumers.is_empty() && g.group.starts_with(&topic))
                {
                    match self.wal_ends(&t.topic, &g.group).await {
                        Ok(ends) => {
                            for (vg, end) in ends {
                                g.vgroups.entry(vg).or_default().end = Some(end);
                            }
                        }
                        Err(e) => tracing::warn!(
                            topic = %t.topic,
                            group = %g.group,
                            error = %e,
                            "cannot read the WAL's end for this group"
                        ),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The WAL's end per vgroup of `topic`, read through a short-lived consumer of `group`
    /// that polls and commits nothing.
    async fn wal_ends(&self, topic: &str, group: &str) -> Result<BTreeMap<i32, i64>, Error> {
        let endpoint = self.endpoint().to_string();
        let timeout = self.pool().timeout;
        let base = self.endpoint().connector_dsn(self.credentials(), None);
        // A group name is [A-Za-z0-9_] (taosbackup's own: `default_names`): no escaping.
        let sep = if base.contains('?') { '&' } else { '?' };
        let dsn = format!(
            "{base}{sep}group.id={group}&client.id={group}_list&enable.auto.commit=false&\
             experimental.snapshot.enable=false"
        );
        let builder = TmqBuilder::from_dsn(dsn.as_str()).map_err(|e| Error::InvalidDsn {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let fail = |op: &'static str, e: taos::Error| Error::server(op, &endpoint, None, None, e);
        let timed_out = |op: &'static str| Error::Timeout {
            operation: op,
            endpoint: endpoint.clone(),
            database: None,
            table: None,
            timeout,
        };
        let connect = crate::conn::nagle_off_if(true, builder.build());
        let mut consumer = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| timed_out("connect tmq consumer"))?
            .map_err(|e| fail("connect tmq consumer", e))?;
        tokio::time::timeout(timeout, consumer.subscribe([topic.to_string()]))
            .await
            .map_err(|_| timed_out("subscribe"))?
            .map_err(|e| fail("subscribe", e))?;
        let list = tokio::time::timeout(timeout, consumer.topic_assignment(topic))
            .await
            .map_err(|_| timed_out("assignment"))?;
        consumer.unsubscribe().await;
        Ok(list.iter().map(|a| (a.vgroup_id(), a.end())).collect())
    }

    /// Drops a change-feed topic (its committed offsets go with it). Refuses names that are
    /// not taosbackup's; fails while a live consumer holds the topic.
    pub async fn drop_feed_topic(&self, topic: &str) -> Result<(), Error> {
        if !topic.starts_with(FEED_TOPIC_PREFIX) {
            return Err(Error::InvalidRequest {
                database: String::new(),
                table: topic.to_string(),
                reason: format!("{topic} is not a taosbackup change-feed topic"),
            });
        }
        self.pool()
            .exec(Ctx::default(), &crate::sql::drop_topic(topic))
            .await?;
        Ok(())
    }
}
