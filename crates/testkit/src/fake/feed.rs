//! [`ChangeFeed`] over a [`FakeDb`]'s change log.

use async_trait::async_trait;
use taosbackup_core::{
    ChangeBatch, ChangeFeed, FeedStart, Positions, SourceError, SourceErrorKind,
};

use super::{FakeDb, FaultPoint, lock};

/// A change feed of one database of a [`FakeDb`], as a consumer `group` (the group names
/// where [`FakeDb::committed`] keeps its commits). Delivers the logged events in the order
/// they were logged, at most [`FakeFeed::batch_size`] a batch.
#[derive(Debug)]
pub struct FakeFeed {
    db: FakeDb,
    database: String,
    group: String,
    /// The most events in one batch (at least 1).
    pub batch_size: usize,
    positions: Positions,
    /// The end of every stream when the current catch-up began.
    target: Option<Positions>,
}

impl FakeFeed {
    /// A feed of `database` for consumer `group`.
    pub fn new(db: FakeDb, database: &str, group: &str) -> FakeFeed {
        FakeFeed {
            db,
            database: database.to_string(),
            group: group.to_string(),
            batch_size: 16,
            positions: Positions::new(),
            target: None,
        }
    }
}

#[async_trait]
impl ChangeFeed for FakeFeed {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError> {
        self.db.faults.source(FaultPoint::FeedStart)?;
        let inner = lock(&self.db.inner);
        let log = &inner
            .databases
            .get(&self.database)
            .ok_or_else(|| {
                SourceError::new(
                    SourceErrorKind::NotFound,
                    false,
                    format!("database {} does not exist", self.database),
                )
            })?
            .log;
        self.target = None;
        if committed.is_empty() {
            self.positions = log.ends();
            return Ok(FeedStart::Fresh {
                reason: "no committed positions".into(),
            });
        }
        let mut gaps = Vec::new();
        self.positions = Positions::new();
        for (key, s) in &log.streams {
            let pos = match committed.get(key) {
                None => {
                    gaps.push(format!("{key}: no committed position"));
                    s.first
                }
                Some(&c) if c < s.first => {
                    gaps.push(format!("{key}: purged up to {}, committed {c}", s.first));
                    s.first
                }
                Some(&c) if c > s.next => {
                    gaps.push(format!("{key}: committed {c} is past the end {}", s.next));
                    s.next
                }
                Some(&c) => c,
            };
            self.positions.insert(key.clone(), pos);
        }
        Ok(if gaps.is_empty() {
            FeedStart::Continued
        } else {
            FeedStart::Gap {
                reason: gaps.join("; "),
            }
        })
    }

    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
        self.db.faults.source(FaultPoint::FeedNext)?;
        let inner = lock(&self.db.inner);
        let Some(db) = inner.databases.get(&self.database) else {
            return Err(SourceError::new(
                SourceErrorKind::NotFound,
                false,
                format!("database {} does not exist", self.database),
            ));
        };
        let target = self.target.get_or_insert_with(|| db.log.ends()).clone();
        let mut pending = Vec::new();
        for (key, s) in &db.log.streams {
            let from = self.positions.get(key).copied().unwrap_or(s.first);
            if from < s.first {
                return Err(SourceError::new(
                    SourceErrorKind::Other,
                    false,
                    format!(
                        "{key}: positions {from} purged while reading (now from {})",
                        s.first
                    ),
                ));
            }
            let to = target.get(key).copied().unwrap_or(s.next);
            for (v, seq, e) in &s.entries {
                if *v >= from && *v < to {
                    pending.push((*seq, key, *v, e));
                }
            }
        }
        if pending.is_empty() {
            self.target = None;
            return Ok(None);
        }
        pending.sort_by_key(|p| p.0);
        pending.truncate(self.batch_size.max(1));
        let mut batch = ChangeBatch::default();
        for (_, key, v, e) in pending {
            batch.events.push(e.clone());
            batch.positions.insert(key.clone(), v + 1);
        }
        self.positions
            .extend(batch.positions.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(Some(batch))
    }

    fn positions(&self) -> Positions {
        self.positions.clone()
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError> {
        self.db.faults.source(FaultPoint::FeedCommit)?;
        lock(&self.db.inner).committed.insert(
            (self.database.clone(), self.group.clone()),
            positions.clone(),
        );
        Ok(())
    }
}
