//! The change tracker: per-table roaring bitmaps of changed buckets.

mod persist;

pub(crate) use persist::write_state;

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringTreemap;
use taosbackup_core::{Bucket, BucketWidth, Precision, TimeRange};

/// The state of one block (table × bucket) as the tracker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// Changed since the last backup, and the repository holds no version of it yet.
    New,
    /// Changed since the last backup; the repository holds an older version.
    Dirty,
    /// Rows were deleted in it, or its table was dropped: the next backup must re-read it and
    /// write a tombstone where nothing is left.
    Deleted,
    /// Nothing changed since the last backup (whether or not the block has rows).
    Clean,
}

/// Table-level changes since the last backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableChanges {
    /// The table was created (or re-created after a drop).
    pub created: bool,
    /// The table was dropped (its earlier incarnation, if it was re-created since).
    pub dropped: bool,
    /// Columns were added, dropped or modified.
    pub schema_changed: bool,
    /// Tag values changed.
    pub tags_changed: bool,
}

impl TableChanges {
    fn any(&self) -> bool {
        self.created || self.dropped || self.schema_changed || self.tags_changed
    }

    fn merge(&mut self, other: TableChanges) {
        self.created |= other.created;
        self.dropped |= other.dropped;
        self.schema_changed |= other.schema_changed;
        self.tags_changed |= other.tags_changed;
    }
}

/// A table-level event, as change feeds report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChange {
    /// CREATE TABLE (or an auto-create on insert).
    Created,
    /// DROP TABLE.
    Dropped,
    /// ALTER TABLE / STABLE changing columns.
    SchemaChanged,
    /// ALTER TABLE SET TAG (or a super table tag change).
    TagsChanged,
}

/// Bucket indices are signed; roaring treemaps hold `u64`. Flipping the sign bit maps one
/// onto the other preserving order, so every `i64` bucket of every precision fits.
fn key(bucket: Bucket) -> u64 {
    (bucket.index() as u64) ^ (1 << 63)
}

fn bucket_of_key(key: u64) -> Bucket {
    Bucket((key ^ (1 << 63)) as i64)
}

/// The bitmap key of the bucket holding `ts`.
fn key_of_ts(ts: i64, width_units: i64) -> u64 {
    key(Bucket::containing(ts, width_units))
}

/// One block of one table: how a backup tells the tracker which blocks it stored or
/// tombstoned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// The table.
    pub table: String,
    /// The block's bucket.
    pub bucket: Bucket,
}

impl BlockKey {
    /// The block of `table` in `bucket`.
    pub fn new(table: impl Into<String>, bucket: Bucket) -> BlockKey {
        BlockKey {
            table: table.into(),
            bucket,
        }
    }
}

/// Consecutive buckets `first..=last` of one table: how plans carry changed buckets, so a
/// table with a thousand contiguous dirty buckets costs one entry (and one export query),
/// not a thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BucketRun {
    /// First bucket of the run.
    pub first: Bucket,
    /// Last bucket of the run (included).
    pub last: Bucket,
}

impl BucketRun {
    /// A run of one bucket.
    pub fn single(bucket: Bucket) -> BucketRun {
        BucketRun {
            first: bucket,
            last: bucket,
        }
    }

    /// Number of buckets in the run.
    pub fn count(&self) -> u64 {
        self.last.index().abs_diff(self.first.index()) + 1
    }

    /// Whether `bucket` lies in the run.
    pub fn contains(&self, bucket: Bucket) -> bool {
        (self.first..=self.last).contains(&bucket)
    }
}

/// The maximal runs of consecutive values of `bits`, ascending. Runs of a run container
/// are found by galloping over `range_cardinality` rather than by visiting every bucket.
fn runs_of(bits: &RoaringTreemap) -> Vec<BucketRun> {
    let full = |first: u64, last: u64| bits.range_cardinality(first..=last) == last - first + 1;
    let mut out = Vec::new();
    let mut it = bits.iter();
    while let Some(first) = it.next() {
        // `last` is known to be in a run starting at `first`; double the step while the
        // range stays full, then halve it back down to the exact end.
        let mut last = first;
        let mut step = 1u64;
        while let Some(candidate) = last.checked_add(step) {
            if !full(first, candidate) {
                break;
            }
            last = candidate;
            step = step.saturating_mul(2);
        }
        while step > 1 {
            step /= 2;
            if let Some(candidate) = last.checked_add(step) {
                if full(first, candidate) {
                    last = candidate;
                }
            }
        }
        out.push(BucketRun {
            first: bucket_of_key(first),
            last: bucket_of_key(last),
        });
        match last.checked_add(1) {
            Some(next) => it.advance_to(next),
            None => break,
        }
    }
    out
}

/// Everything the tracker keeps about one table.
#[derive(Debug, Clone, Default, PartialEq)]
struct TableBits {
    /// Buckets changed since the last snapshot.
    dirty: RoaringTreemap,
    /// Buckets in which rows were deleted since the last snapshot.
    deleted: RoaringTreemap,
    /// Buckets the repository holds a version of.
    stored: RoaringTreemap,
    /// Table-level changes since the last snapshot.
    changes: TableChanges,
}

/// Counters for status output and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStats {
    /// Tables the tracker has an ordinal for.
    pub tables: usize,
    /// Dirty (or new) blocks awaiting the next backup.
    pub dirty_blocks: u64,
    /// Blocks with deletes awaiting the next backup.
    pub deleted_blocks: u64,
    /// Blocks the repository holds.
    pub stored_blocks: u64,
    /// Serialized size of all bitmaps, a close proxy for their heap use.
    pub bitmap_bytes: u64,
}

/// The bucket each table was last marked in, to skip repeated inserts when marks of several
/// tables interleave. A cache, not state: it never takes part in equality.
#[derive(Debug, Clone, Default)]
struct MarkCache(Vec<Option<Bucket>>);

impl PartialEq for MarkCache {
    fn eq(&self, _: &MarkCache) -> bool {
        true
    }
}

/// Roaring-bitmap change tracking for one database.
///
/// Tables get stable ordinals, in first-seen order, that persist with the state; marks go
/// through the ordinal so the hot path is an index and a bitmap insert.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    width: BucketWidth,
    precision: Precision,
    /// `width` in timestamp units of `precision`.
    width_units: i64,
    names: Vec<String>,
    ordinals: HashMap<String, u32>,
    tables: Vec<TableBits>,
    positions: BTreeMap<String, i64>,
    inconsistent: Option<String>,
    /// The backup (id in hex) the `stored` bits describe: the last one committed.
    last_backup: Option<String>,
    /// The snapshot whose backup is running: it still counts as changes for deletes and
    /// for persistence until the backup is committed or given back.
    pending: Option<Snapshot>,
    /// Valid only while the marked bucket is still in `dirty`: cleared whenever bits leave
    /// `dirty` (snapshot, drop).
    last_marked: MarkCache,
}

/// The changes a backup takes from the tracker: everything since the previous snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    tables: Vec<(String, TableBits)>,
    /// Table name → index into `tables` (plans look up every catalog table).
    index: HashMap<String, usize>,
    positions: BTreeMap<String, i64>,
    inconsistent: Option<String>,
    last_backup: Option<String>,
}

impl Snapshot {
    /// Number of dirty or new blocks.
    pub fn dirty_blocks(&self) -> u64 {
        self.tables.iter().map(|(_, b)| b.dirty.len()).sum()
    }

    /// Tables with any change, by name.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|(n, _)| n.as_str())
    }

    fn bits(&self, table: &str) -> Option<&TableBits> {
        self.index.get(table).map(|&i| &self.tables[i].1)
    }

    /// The changed buckets of `table`, ascending.
    pub fn dirty_buckets(&self, table: &str) -> Vec<Bucket> {
        self.bits(table)
            .map(|b| b.dirty.iter().map(bucket_of_key).collect())
            .unwrap_or_default()
    }

    /// The buckets of `table` that were changed or had rows deleted, as ascending runs:
    /// what an incremental backup exports.
    pub fn changed_runs(&self, table: &str) -> Vec<BucketRun> {
        match self.bits(table) {
            None => Vec::new(),
            Some(b) if b.deleted.is_empty() => runs_of(&b.dirty),
            Some(b) => runs_of(&(&b.dirty | &b.deleted)),
        }
    }

    /// The buckets of `table` in which rows were deleted, ascending.
    pub fn deleted_buckets(&self, table: &str) -> Vec<Bucket> {
        self.bits(table)
            .map(|b| b.deleted.iter().map(bucket_of_key).collect())
            .unwrap_or_default()
    }

    /// The buckets of `table` the repository held when the snapshot was taken.
    pub fn stored_buckets(&self, table: &str) -> Vec<Bucket> {
        self.bits(table)
            .map(|b| b.stored.iter().map(bucket_of_key).collect())
            .unwrap_or_default()
    }

    /// Table-level changes of `table`.
    pub fn changes(&self, table: &str) -> TableChanges {
        self.bits(table).map(|b| b.changes).unwrap_or_default()
    }

    /// The change-feed positions the snapshot covers (commit them once it is durable).
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// Why the tracker could not vouch for these changes, if it could not: the backup built
    /// from this snapshot must then be a full one.
    pub fn inconsistency(&self) -> Option<&str> {
        self.inconsistent.as_deref()
    }

    /// The backup the tracker's stored bits described when the snapshot was taken: the
    /// only parent an incremental built from this snapshot may have.
    pub fn last_backup(&self) -> Option<&str> {
        self.last_backup.as_deref()
    }
}

impl Tracker {
    /// An empty tracker, consistent from this moment on.
    pub fn new(width: BucketWidth, precision: Precision) -> Tracker {
        Tracker {
            width,
            precision,
            width_units: width.in_units(precision),
            names: Vec::new(),
            ordinals: HashMap::new(),
            tables: Vec::new(),
            positions: BTreeMap::new(),
            inconsistent: None,
            last_backup: None,
            pending: None,
            last_marked: MarkCache::default(),
        }
    }

    /// The bucket width.
    pub fn width(&self) -> BucketWidth {
        self.width
    }

    /// The database precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The stable ordinal of `table`, assigned on first sight.
    pub fn ordinal(&mut self, table: &str) -> u32 {
        if let Some(&o) = self.ordinals.get(table) {
            return o;
        }
        let o = self.names.len() as u32;
        self.names.push(table.to_owned());
        self.ordinals.insert(table.to_owned(), o);
        self.tables.push(TableBits::default());
        self.last_marked.0.push(None);
        o
    }

    /// The ordinal of `table`, if it has one.
    pub fn ordinal_of(&self, table: &str) -> Option<u32> {
        self.ordinals.get(table).copied()
    }

    /// The table name of an ordinal.
    pub fn table_name(&self, ordinal: u32) -> Option<&str> {
        self.names.get(ordinal as usize).map(String::as_str)
    }

    /// Marks the buckets of rows written to `table` at `timestamps`.
    pub fn mark_rows(&mut self, table: &str, timestamps: &[i64]) {
        let o = self.ordinal(table);
        self.mark_ordinal_rows(o, timestamps);
    }

    /// Marks rows of the table with ordinal `ordinal` (from [`Tracker::ordinal`]). The hot
    /// path: consecutive timestamps in one bucket cost one division and a compare.
    ///
    /// # Panics
    /// When `ordinal` was not handed out by this tracker.
    pub fn mark_ordinal_rows(&mut self, ordinal: u32, timestamps: &[i64]) {
        let w = self.width_units;
        let dirty = &mut self.tables[ordinal as usize].dirty;
        let mut last = None;
        for &ts in timestamps {
            let b = Bucket::containing(ts, w);
            if last != Some(b) {
                dirty.insert(key(b));
                last = Some(b);
            }
        }
    }

    /// Marks `buckets` of `table` changed (computed by the caller, off the tracker lock).
    pub fn mark_buckets(&mut self, table: &str, buckets: &[Bucket]) {
        let o = self.ordinal(table) as usize;
        self.last_marked.0[o] = None;
        let dirty = &mut self.tables[o].dirty;
        for &b in buckets {
            dirty.insert(key(b));
        }
    }

    /// Marks a batch of `(ordinal, timestamp)` events from several tables.
    ///
    /// # Panics
    /// When an ordinal was not handed out by this tracker.
    pub fn mark_batch(&mut self, marks: &[(u32, i64)]) {
        let w = self.width_units;
        for &(o, ts) in marks {
            let b = Bucket::containing(ts, w);
            let last = &mut self.last_marked.0[o as usize];
            if *last != Some(b) {
                self.tables[o as usize].dirty.insert(key(b));
                *last = Some(b);
            }
        }
    }

    /// Records `DELETE FROM table WHERE ts >= start AND ts <= end` (inclusive, as TDengine's
    /// delete meta messages state it): every bucket of the range that can hold rows — stored
    /// in the repository, dirty, or being backed up right now — is re-read by the next backup
    /// and becomes a tombstone if nothing is left in it. Buckets that hold no rows need no
    /// work, which keeps `DELETE FROM t` over all time cheap.
    pub fn mark_deleted(&mut self, table: &str, start: i64, end: i64) {
        if start > end {
            return;
        }
        let w = self.width_units;
        let (lo, hi) = (key_of_ts(start, w), key_of_ts(end, w));
        let o = self.ordinal(table) as usize;
        let in_flight = self
            .pending
            .as_ref()
            .and_then(|p| p.bits(table))
            .map(|b| &b.dirty);
        let bits = &mut self.tables[o];
        let mut hit = RoaringTreemap::new();
        for set in [Some(&bits.stored), Some(&bits.dirty), in_flight]
            .into_iter()
            .flatten()
        {
            hit.extend(set.iter().skip_while(|&k| k < lo).take_while(|&k| k <= hi));
        }
        bits.dirty |= &hit;
        bits.deleted |= hit;
    }

    /// Records a table-level event.
    pub fn table_changed(&mut self, table: &str, change: TableChange) {
        let o = self.ordinal(table) as usize;
        let bits = &mut self.tables[o];
        match change {
            TableChange::Created => bits.changes.created = true,
            TableChange::Dropped => {
                // Rows marked before the drop belong to the dropped incarnation.
                self.last_marked.0[o] = None;
                bits.dirty.clear();
                bits.deleted.clear();
                bits.changes = TableChanges {
                    dropped: true,
                    ..TableChanges::default()
                };
            }
            TableChange::SchemaChanged => bits.changes.schema_changed = true,
            TableChange::TagsChanged => bits.changes.tags_changed = true,
        }
    }

    /// The state of one block.
    pub fn state(&self, table: &str, bucket: Bucket) -> BlockState {
        let Some(&o) = self.ordinals.get(table) else {
            return BlockState::Clean;
        };
        let bits = &self.tables[o as usize];
        let k = key(bucket);
        if (bits.changes.dropped && !bits.changes.created) || bits.deleted.contains(k) {
            BlockState::Deleted
        } else if bits.dirty.contains(k) {
            if bits.stored.contains(k) {
                BlockState::Dirty
            } else {
                BlockState::New
            }
        } else {
            BlockState::Clean
        }
    }

    /// The non-clean blocks of `table` meeting `range`, ascending by bucket.
    pub fn blocks_in(&self, table: &str, range: TimeRange) -> Vec<(Bucket, BlockState)> {
        let Some(&o) = self.ordinals.get(table) else {
            return Vec::new();
        };
        if range.start >= range.end {
            return Vec::new();
        }
        let w = self.width_units;
        let (lo, hi) = (key_of_ts(range.start, w), key_of_ts(range.end - 1, w));
        let bits = &self.tables[o as usize];
        let mut candidates: RoaringTreemap = bits.dirty.clone() | &bits.deleted;
        if bits.changes.dropped && !bits.changes.created {
            candidates |= &bits.stored;
        }
        candidates
            .iter()
            .skip_while(|&k| k < lo)
            .take_while(|&k| k <= hi)
            .map(|k| {
                let b = bucket_of_key(k);
                (b, self.state(table, b))
            })
            .collect()
    }

    /// Records that the repository's newest backup of this database is `backup` (its id in
    /// hex), whose contents the stored bits now describe. Call after [`Tracker::commit`] or
    /// [`Tracker::commit_full`].
    pub fn set_last_backup(&mut self, backup: impl Into<String>) {
        self.last_backup = Some(backup.into());
    }

    /// The backup the stored bits describe (see [`Tracker::set_last_backup`]).
    pub fn last_backup(&self) -> Option<&str> {
        self.last_backup.as_deref()
    }

    /// Records the change-feed position (e.g. per vgroup) up to which events were applied.
    pub fn set_position(&mut self, feed_key: &str, position: i64) {
        self.positions.insert(feed_key.to_owned(), position);
    }

    /// The change-feed positions applied so far.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// Declares that the tracker missed changes (a feed gap, a lost state file). Sticky
    /// until a full backup is committed with [`Tracker::commit_full`].
    pub fn mark_inconsistent(&mut self, reason: impl Into<String>) {
        if self.inconsistent.is_none() {
            self.inconsistent = Some(reason.into());
        }
    }

    /// Makes the tracker work in `precision` (the database's, read from its catalog by each
    /// backup). When it worked in another one, its buckets mean other times: it starts
    /// afresh, inconsistent (the next backup is a full one), keeping only the feed positions.
    /// Returns whether it was reset.
    pub fn set_precision(&mut self, precision: Precision) -> bool {
        if self.precision == precision {
            return false;
        }
        let old = self.precision;
        let positions = std::mem::take(&mut self.positions);
        *self = Tracker::new(self.width, precision);
        self.positions = positions;
        self.mark_inconsistent(format!(
            "the tracker state was kept in precision {old:?}, the database's is {precision:?}"
        ));
        true
    }

    /// Why the tracker cannot vouch for its changes, if it cannot.
    pub fn inconsistency(&self) -> Option<&str> {
        self.inconsistent.as_deref()
    }

    /// Takes every change since the previous snapshot and starts afresh, atomically (the
    /// caller holds `&mut self`): events applied after this call belong to the next backup.
    /// One backup runs at a time: a snapshot still pending is folded into the new one.
    pub fn snapshot_and_reset(&mut self) -> Snapshot {
        if let Some(p) = self.pending.take() {
            self.restore(p);
        }
        self.last_marked.0.iter_mut().for_each(|b| *b = None);
        let mut tables = Vec::new();
        for (o, bits) in self.tables.iter_mut().enumerate() {
            if bits.dirty.is_empty() && bits.deleted.is_empty() && !bits.changes.any() {
                continue;
            }
            let taken = TableBits {
                dirty: std::mem::take(&mut bits.dirty),
                deleted: std::mem::take(&mut bits.deleted),
                stored: bits.stored.clone(),
                changes: std::mem::take(&mut bits.changes),
            };
            tables.push((self.names[o].clone(), taken));
        }
        let index = tables
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        let snapshot = Snapshot {
            tables,
            index,
            positions: self.positions.clone(),
            inconsistent: self.inconsistent.clone(),
            last_backup: self.last_backup.clone(),
        };
        self.pending = Some(snapshot.clone());
        snapshot
    }

    /// Gives a snapshot back after its backup failed: its changes are merged into whatever
    /// arrived since, so nothing is lost.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.pending = None;
        for (name, taken) in snapshot.tables {
            let o = self.ordinal(&name) as usize;
            let bits = &mut self.tables[o];
            if bits.changes.dropped && !bits.changes.created {
                // Dropped after the snapshot: the older changes are moot.
                continue;
            }
            bits.dirty |= taken.dirty;
            bits.deleted |= taken.deleted;
            let mut changes = taken.changes;
            changes.merge(bits.changes);
            bits.changes = changes;
        }
    }

    /// Records that the incremental backup built from `snapshot` is durable: its blocks are
    /// now stored (CLEAN until changed again), except `tombstoned` ones whose rows were all
    /// deleted; dropped tables are forgotten.
    pub fn commit(&mut self, snapshot: &Snapshot, tombstoned: &[BlockKey]) {
        self.pending = None;
        for (name, taken) in &snapshot.tables {
            let o = self.ordinal(name) as usize;
            let bits = &mut self.tables[o];
            if taken.changes.dropped && !taken.changes.created {
                bits.stored.clear();
                continue;
            }
            if taken.changes.dropped {
                // Re-created: the old incarnation's blocks are gone.
                bits.stored.clear();
            }
            bits.stored |= &taken.dirty;
        }
        for block in tombstoned {
            if let Some(&o) = self.ordinals.get(&block.table) {
                self.tables[o as usize].stored.remove(key(block.bucket));
            }
        }
    }

    /// Records that a full backup holding exactly `stored` blocks is durable: the stored
    /// sets are replaced and the tracker is consistent again.
    pub fn commit_full<'a>(&mut self, stored: impl IntoIterator<Item = &'a BlockKey>) {
        self.pending = None;
        for bits in &mut self.tables {
            bits.stored.clear();
        }
        for block in stored {
            let o = self.ordinal(&block.table) as usize;
            self.tables[o].stored.insert(key(block.bucket));
        }
        self.inconsistent = None;
    }

    /// Counters for status and metrics.
    pub fn stats(&self) -> TrackerStats {
        let mut s = TrackerStats {
            tables: self.names.len(),
            ..TrackerStats::default()
        };
        for bits in &self.tables {
            s.dirty_blocks += bits.dirty.len();
            s.deleted_blocks += bits.deleted.len();
            s.stored_blocks += bits.stored.len();
            s.bitmap_bytes += (bits.dirty.serialized_size()
                + bits.deleted.serialized_size()
                + bits.stored.serialized_size()) as u64;
        }
        s
    }

    /// Compacts the bitmaps (run containers for contiguous buckets); worth doing before
    /// persisting or after large batches.
    pub fn optimize(&mut self) {
        for bits in &mut self.tables {
            bits.dirty.optimize();
            bits.deleted.optimize();
            bits.stored.optimize();
        }
    }

    /// Bounds memory by giving up precision, never changes: every table's dirty, deleted
    /// and stored buckets are widened to one contiguous run from its lowest to its highest
    /// bucket, which a run container holds in a few bytes. Afterwards backups export more
    /// blocks (the gaps, which hold no changes and are re-read whole), but nothing marked is
    /// lost. Returns the bitmap bytes after.
    pub fn coarsen(&mut self) -> u64 {
        fn widen(b: &mut RoaringTreemap) {
            if let (Some(lo), Some(hi)) = (b.min(), b.max()) {
                b.insert_range(lo..=hi);
                b.optimize();
            }
        }
        for bits in &mut self.tables {
            widen(&mut bits.dirty);
            widen(&mut bits.deleted);
            widen(&mut bits.stored);
        }
        self.stats().bitmap_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tracker {
        Tracker::new(BucketWidth::from_seconds(60).unwrap(), Precision::Ms)
    }

    /// Runs found the slow way: one bucket at a time.
    fn naive_runs(buckets: &[i64]) -> Vec<BucketRun> {
        let mut out: Vec<BucketRun> = Vec::new();
        for &b in buckets {
            match out.last_mut() {
                Some(r) if r.last.index().checked_add(1) == Some(b) => r.last = Bucket(b),
                _ => out.push(BucketRun::single(Bucket(b))),
            }
        }
        out
    }

    fn treemap(buckets: &[i64]) -> RoaringTreemap {
        buckets.iter().map(|&b| key(Bucket(b))).collect()
    }

    #[test]
    fn runs_cover_extremes_and_container_borders() {
        let mut buckets: Vec<i64> = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, 5, i64::MAX];
        // Across a 2^16 container border and a 2^32 inner-bitmap border.
        buckets.extend(65_530..65_545);
        buckets.extend((1i64 << 32) - 3..(1i64 << 32) + 3);
        buckets.extend(1_000_000..1_250_000);
        buckets.sort_unstable();
        buckets.dedup();
        let runs = runs_of(&treemap(&buckets));
        assert_eq!(runs, naive_runs(&buckets));
        assert_eq!(
            runs.first(),
            Some(&BucketRun {
                first: Bucket(i64::MIN),
                last: Bucket(i64::MIN + 1)
            })
        );
        assert_eq!(runs.last(), Some(&BucketRun::single(Bucket(i64::MAX))));
        assert_eq!(
            runs.iter().map(BucketRun::count).sum::<u64>(),
            buckets.len() as u64
        );
        assert!(runs_of(&RoaringTreemap::new()).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn runs_equal_the_bucket_by_bucket_runs(
            spans in proptest::collection::vec((-70_000i64..70_000, 0i64..3_000), 0..12),
            singles in proptest::collection::vec(proptest::num::i64::ANY, 0..12),
        ) {
            let mut buckets: Vec<i64> = singles;
            for (start, len) in spans {
                buckets.extend(start..start + len);
            }
            buckets.sort_unstable();
            buckets.dedup();
            proptest::prop_assert_eq!(runs_of(&treemap(&buckets)), naive_runs(&buckets));
        }
    }

    #[test]
    fn coarsening_keeps_every_mark_and_shrinks() {
        let mut t = t();
        let ts: Vec<i64> = (0..20_000).map(|i| i * 120_000).collect();
        t.mark_rows("a", &ts);
        let before = t.stats();
        let after = t.coarsen();
        assert!(
            after * 100 < before.bitmap_bytes,
            "{after} vs {}",
            before.bitmap_bytes
        );
        let snap = t.snapshot_and_reset();
        let dirty = snap.dirty_buckets("a");
        for x in &ts {
            assert!(dirty.binary_search(&Bucket::containing(*x, 60_000)).is_ok());
        }
    }

    #[test]
    fn keys_preserve_order_over_the_whole_range() {
        let xs = [i64::MIN, -2, -1, 0, 1, i64::MAX];
        for w in xs.windows(2) {
            assert!(key(Bucket(w[0])) < key(Bucket(w[1])));
            assert_eq!(bucket_of_key(key(Bucket(w[0]))), Bucket(w[0]));
        }
    }

    #[test]
    fn new_dirty_clean_deleted() {
        let mut t = t();
        t.mark_rows("a", &[0, 59_999, 60_000, -1]);
        assert_eq!(t.state("a", Bucket(0)), BlockState::New);
        assert_eq!(t.state("a", Bucket(1)), BlockState::New);
        assert_eq!(t.state("a", Bucket(-1)), BlockState::New);
        assert_eq!(t.state("a", Bucket(2)), BlockState::Clean);
        let s = t.snapshot_and_reset();
        assert_eq!(s.dirty_blocks(), 3);
        assert_eq!(s.dirty_buckets("a"), vec![Bucket(-1), Bucket(0), Bucket(1)]);
        t.commit(&s, &[]);
        assert_eq!(t.state("a", Bucket(0)), BlockState::Clean);
        t.mark_rows("a", &[10]);
        assert_eq!(t.state("a", Bucket(0)), BlockState::Dirty);
        t.mark_deleted("a", 60_000, 180_000);
        assert_eq!(
            t.state("a", Bucket(1)),
            BlockState::Deleted,
            "stored bucket in range"
        );
        assert_eq!(
            t.state("a", Bucket(3)),
            BlockState::Clean,
            "bucket that never held rows"
        );
        assert_eq!(
            t.state("a", Bucket(-1)),
            BlockState::Clean,
            "stored bucket out of range"
        );
        let blocks = t.blocks_in(
            "a",
            TimeRange {
                start: 0,
                end: 120_000,
            },
        );
        assert_eq!(
            blocks,
            vec![
                (Bucket(0), BlockState::Dirty),
                (Bucket(1), BlockState::Deleted)
            ]
        );
    }

    #[test]
    fn drops_and_recreates() {
        let mut t = t();
        t.mark_rows("a", &[0]);
        let s = t.snapshot_and_reset();
        t.commit(&s, &[]);
        t.mark_rows("a", &[60_000]);
        t.table_changed("a", TableChange::Dropped);
        assert_eq!(t.state("a", Bucket(0)), BlockState::Deleted);
        assert_eq!(
            t.blocks_in(
                "a",
                TimeRange {
                    start: 0,
                    end: 1_000_000
                }
            ),
            vec![(Bucket(0), BlockState::Deleted)]
        );
        t.table_changed("a", TableChange::Created);
        t.mark_rows("a", &[120_000]);
        let s = t.snapshot_and_reset();
        let c = s.changes("a");
        assert!(c.dropped && c.created);
        assert_eq!(
            s.dirty_buckets("a"),
            vec![Bucket(2)],
            "rows of the dropped incarnation are gone"
        );
        t.commit(&s, &[]);
        assert_eq!(t.stats().stored_blocks, 1);
    }

    #[test]
    fn changes_during_a_backup_survive_its_failure() {
        let mut t = t();
        t.mark_rows("a", &[0]);
        t.table_changed("b", TableChange::TagsChanged);
        let s = t.snapshot_and_reset();
        t.mark_rows("a", &[60_000]);
        t.restore(s);
        let s = t.snapshot_and_reset();
        assert_eq!(s.dirty_buckets("a"), vec![Bucket(0), Bucket(1)]);
        assert!(s.changes("b").tags_changed);
    }

    #[test]
    fn inconsistency_is_sticky_until_a_full_backup() {
        let mut t = t();
        t.mark_inconsistent("WAL purged past the committed offset");
        t.mark_inconsistent("second reason");
        let s = t.snapshot_and_reset();
        assert_eq!(
            s.inconsistency(),
            Some("WAL purged past the committed offset")
        );
        t.commit(&s, &[]);
        assert!(t.inconsistency().is_some());
        t.commit_full(&[BlockKey::new("a", Bucket(0))]);
        assert!(t.inconsistency().is_none());
        assert_eq!(t.stats().stored_blocks, 1);
    }

    #[test]
    fn deletes_over_all_time_touch_only_buckets_with_rows() {
        let mut t = t();
        t.mark_rows("a", &[0, i64::MAX, i64::MIN]);
        t.mark_deleted("a", i64::MIN, i64::MAX);
        let s = t.stats();
        assert_eq!((s.dirty_blocks, s.deleted_blocks), (3, 3));
    }

    #[test]
    fn deletes_during_a_backup_reach_the_next_one() {
        let mut t = t();
        t.mark_rows("a", &[0]);
        let s = t.snapshot_and_reset(); // backup running, bucket 0 in flight
        t.mark_deleted("a", 0, 10);
        t.commit(&s, &[]);
        let s2 = t.snapshot_and_reset();
        assert_eq!(s2.dirty_buckets("a"), vec![Bucket(0)]);
        assert_eq!(s2.deleted_buckets("a"), vec![Bucket(0)]);
    }
}
