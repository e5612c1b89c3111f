//! Per-table columnar storage kept sorted by timestamp, with overwrite-on-same-timestamp.

use crate::types::{ColumnData, Field, Ty};

/// The rows of one table: one vector per data column, column 0 the (non-NULL) timestamp.
/// With a composite key (column 1 declared `PRIMARY KEY`), rows are identified and sorted by
/// (timestamp, key), as TDengine's row key (`SRowKey`, `tRowKeyCompare` in
/// `source/common/src/tdataformat.c`): rows sharing a timestamp are distinct rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TableData {
    /// The columns, in schema order.
    pub cols: Vec<ColumnData>,
    /// Column 1 is a composite key.
    pub keyed: bool,
}

/// A composite key value: integers by value, VARCHAR by bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyVal {
    Int(i128),
    Bytes(Vec<u8>),
}

fn key_at(c: &ColumnData, i: usize) -> KeyVal {
    match c {
        ColumnData::Int(v) => KeyVal::Int(v.get(i).map_or(i128::MIN, i128::from)),
        ColumnData::BigInt(v) => KeyVal::Int(v.get(i).map_or(i128::MIN, i128::from)),
        ColumnData::UInt(v) => KeyVal::Int(v.get(i).map_or(i128::MIN, i128::from)),
        ColumnData::UBigInt(v) => KeyVal::Int(v.get(i).map_or(i128::MIN, i128::from)),
        ColumnData::VarChar(v) => KeyVal::Bytes(v.get(i).unwrap_or_default().to_vec()),
        _ => KeyVal::Int(0),
    }
}

impl TableData {
    /// Empty storage for the given data columns.
    pub fn new(fields: &[Field]) -> TableData {
        TableData {
            cols: fields.iter().map(|f| ColumnData::new(f.ty)).collect(),
            keyed: fields.get(1).is_some_and(|f| f.primary_key),
        }
    }

    /// The (timestamp, key) of every row of `cols`.
    fn row_keys(cols: &[ColumnData]) -> Vec<(i64, KeyVal)> {
        let Some(ts) = cols.first().and_then(ColumnData::timestamps) else {
            return Vec::new();
        };
        ts.iter()
            .enumerate()
            .map(|(i, t)| (t.unwrap_or(i64::MIN), key_at(&cols[1], i)))
            .collect()
    }

    /// [`merge`](Self::merge) for a table with a composite key: sort the batch by
    /// (timestamp, key) keeping the last of equal keys, then merge it with the stored rows,
    /// the batch winning on equal keys.
    fn merge_keyed(&mut self, batch: Vec<ColumnData>) -> usize {
        let n = batch.first().map_or(0, ColumnData::len);
        if n == 0 || batch.len() < 2 {
            return n;
        }
        let bkeys = Self::row_keys(&batch);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| bkeys[a].cmp(&bkeys[b]));
        let mut keep: Vec<usize> = Vec::with_capacity(n);
        for i in idx {
            match keep.last_mut() {
                Some(last) if bkeys[*last] == bkeys[i] => *last = i,
                _ => keep.push(i),
            }
        }
        let batch: Vec<ColumnData> = batch.iter().map(|c| c.take(&keep)).collect();
        let bkeys: Vec<(i64, KeyVal)> = keep.iter().map(|&i| bkeys[i].clone()).collect();
        let skeys = Self::row_keys(&self.cols);
        let mut plan = Vec::with_capacity(skeys.len() + bkeys.len());
        let (mut i, mut j) = (0, 0);
        while i < skeys.len() || j < bkeys.len() {
            if j < bkeys.len() && (i >= skeys.len() || bkeys[j] <= skeys[i]) {
                if i < skeys.len() && bkeys[j] == skeys[i] {
                    i += 1;
                }
                plan.push((true, j));
                j += 1;
            } else {
                plan.push((false, i));
                i += 1;
            }
        }
        for (c, b) in self.cols.iter_mut().zip(&batch) {
            if let Some(m) = ColumnData::gather2(c, b, &plan) {
                *c = m;
            }
        }
        n
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cols.first().map_or(0, ColumnData::len)
    }

    /// The timestamps (never NULL: every batch is checked before it is merged).
    pub fn ts(&self) -> &[i64] {
        self.cols
            .first()
            .and_then(ColumnData::timestamps)
            .map_or(&[], |t| t.values())
    }

    /// Merges a batch (same column layout, non-NULL timestamps in column 0) with overwrite
    /// semantics: later rows win over earlier ones and over stored rows at the same timestamp.
    /// Returns the number of rows in the batch.
    pub fn merge(&mut self, mut batch: Vec<ColumnData>) -> usize {
        if self.keyed {
            return self.merge_keyed(batch);
        }
        let n = batch.first().map_or(0, ColumnData::len);
        if n == 0 {
            return 0;
        }
        normalize(&mut batch);
        let len = self.len();
        if len == 0
            && batch.len() == self.cols.len()
            && self
                .cols
                .iter()
                .zip(&batch)
                .all(|(c, b)| std::mem::discriminant(c) == std::mem::discriminant(b))
        {
            // An empty table takes the batch's columns as they are (a restore writes every
            // table's first rows this way): no copy. Their spare capacity is released, as
            // the copy they replace had none.
            for (c, mut b) in self.cols.iter_mut().zip(batch) {
                b.fit();
                *c = b;
            }
            return n;
        }
        let bts: std::borrow::Cow<'_, [i64]> = match batch[0].timestamps() {
            Some(t) if !t.has_nulls() => std::borrow::Cow::Borrowed(t.values()),
            Some(t) => t.iter().map(|t| t.unwrap_or(i64::MIN)).collect(),
            None => std::borrow::Cow::Borrowed(&[]),
        };
        let last = self.ts().last().copied();
        if len == 0 || last.is_some_and(|l| bts[0] > l) {
            for (c, b) in self.cols.iter_mut().zip(&batch) {
                c.extend_range(b, 0..bts.len());
            }
            return n;
        }
        let p = self.ts().partition_point(|&t| t < bts[0]);
        let tail = len - p;
        if bts.len().saturating_mul(32) < tail {
            // Few late rows into a long tail: positional inserts.
            let mut from = p;
            for (j, &t) in bts.iter().enumerate() {
                let ts = self.ts();
                let k = from + ts[from..].partition_point(|&x| x < t);
                if ts.get(k).copied() == Some(t) {
                    for (c, b) in self.cols.iter_mut().zip(&batch) {
                        c.set_from(k, b, j);
                    }
                } else {
                    for (c, b) in self.cols.iter_mut().zip(&batch) {
                        c.insert_from(k, b, j);
                    }
                }
                from = k + 1;
            }
            return n;
        }
        // Merge the tail with the batch.
        let ts = self.ts();
        let mut plan = Vec::with_capacity(tail + bts.len());
        let (mut i, mut j) = (p, 0);
        while i < len || j < bts.len() {
            let a = if i < len { ts[i] } else { i64::MAX };
            if j < bts.len() && (i >= len || bts[j] <= a) {
                if i < len && bts[j] == a {
                    i += 1;
                }
                plan.push((true, j));
                j += 1;
            } else {
                plan.push((false, i));
                i += 1;
            }
        }
        for (c, b) in self.cols.iter_mut().zip(&batch) {
            if let Some(m) = ColumnData::gather2(c, b, &plan) {
                c.drain(p..len);
                c.extend_range(&m, 0..m.len());
            }
        }
        n
    }

    /// Deletes the rows marked `true`; returns how many.
    pub fn delete_mask(&mut self, del: &[bool]) -> usize {
        let n = del.iter().filter(|d| **d).count();
        if n == 0 {
            return 0;
        }
        let keep: Vec<bool> = del.iter().map(|d| !d).collect();
        for c in &mut self.cols {
            c.retain_mask(&keep);
        }
        n
    }

    /// Appends a NULL-filled column.
    pub fn add_column(&mut self, ty: Ty) {
        let n = self.len();
        self.cols.push(ColumnData::nulls(ty, n));
    }
}

/// Sorts a batch by timestamp, keeping the last of equal timestamps.
fn normalize(batch: &mut [ColumnData]) {
    let Some(ts) = batch.first().and_then(ColumnData::timestamps) else {
        return;
    };
    if !ts.has_nulls() && ts.values().windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    let ts: Vec<Option<i64>> = ts.iter().collect();
    if ts.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    let mut idx: Vec<usize> = (0..ts.len()).collect();
    idx.sort_by_key(|&i| ts[i]); // stable: equal keys keep insertion order
    let mut keep: Vec<usize> = Vec::with_capacity(idx.len());
    for &i in &idx {
        if let Some(last) = keep.last_mut()
            && ts[*last] == ts[i]
        {
            *last = i;
            continue;
        }
        keep.push(i);
    }
    for c in batch.iter_mut() {
        *c = c.take(&keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: &[(i64, i32)]) -> Vec<ColumnData> {
        vec![
            ColumnData::Timestamp(rows.iter().map(|r| Some(r.0)).collect()),
            ColumnData::Int(rows.iter().map(|r| Some(r.1)).collect()),
        ]
    }

    fn fields() -> Vec<Field> {
        vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Int, 4),
        ]
    }

    #[test]
    fn append_overwrite_and_late_rows() {
        let mut t = TableData::new(&fields());
        assert_eq!(t.merge(data(&[(1, 1), (3, 3)])), 2);
        assert_eq!(t.merge(data(&[(5, 5)])), 1);
        assert_eq!(t.merge(data(&[(3, 30), (2, 2), (2, 20)])), 3);
        assert_eq!(t.cols, data(&[(1, 1), (2, 20), (3, 30), (5, 5)]));
    }

    #[test]
    fn a_composite_key_keeps_rows_that_share_a_timestamp() {
        let fields = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("k", Ty::VarChar, 8).with_primary_key(),
            Field::new("v", Ty::Int, 4),
        ];
        let batch = |rows: &[(i64, &str, i32)]| {
            vec![
                ColumnData::Timestamp(rows.iter().map(|r| Some(r.0)).collect()),
                ColumnData::VarChar(rows.iter().map(|r| Some(r.1.as_bytes().to_vec())).collect()),
                ColumnData::Int(rows.iter().map(|r| Some(r.2)).collect()),
            ]
        };
        let mut t = TableData::new(&fields);
        assert_eq!(t.merge(batch(&[(2, "b", 1), (1, "z", 2), (2, "a", 3)])), 3);
        // Same (ts, key) overwrites; a new key at a known ts is a new row.
        assert_eq!(
            t.merge(batch(&[(2, "b", 10), (2, "c", 11), (2, "c", 12)])),
            3
        );
        assert_eq!(
            t.cols,
            batch(&[(1, "z", 2), (2, "a", 3), (2, "b", 10), (2, "c", 12)])
        );
    }

    #[test]
    fn an_empty_table_takes_its_first_batch_sorted_without_duplicates() {
        let mut t = TableData::new(&fields());
        let mut batch = data(&[(3, 3), (1, 1), (3, 30), (2, 2)]);
        batch[1] = ColumnData::Int([Some(3), None, Some(30), Some(2)].into_iter().collect());
        assert_eq!(t.merge(batch), 4);
        let expected = vec![
            ColumnData::Timestamp([1, 2, 3].into_iter().map(Some).collect()),
            ColumnData::Int([None, Some(2), Some(30)].into_iter().collect()),
        ];
        assert_eq!(t.cols, expected);
        // A batch already in order is taken as it is; the next one merges with it.
        let mut t = TableData::new(&fields());
        t.merge(data(&[(1, 1), (4, 4)]));
        t.merge(data(&[(2, 2), (4, 40)]));
        assert_eq!(t.cols, data(&[(1, 1), (2, 2), (4, 40)]));
    }

    #[test]
    fn positional_path_for_few_late_rows() {
        let mut t = TableData::new(&fields());
        let rows: Vec<(i64, i32)> = (0..200).map(|i| (i * 10, i as i32)).collect();
        t.merge(data(&rows));
        t.merge(data(&[(15, -1), (20, -2), (1995, -3)]));
        assert_eq!(t.len(), 202);
        let ts = t.ts();
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(t.cols[1].get(2), crate::types::Value::Int(-1));
        assert_eq!(t.cols[1].get(3), crate::types::Value::Int(-2));
        assert_eq!(
            t.delete_mask(&(0..202).map(|i| i % 2 == 0).collect::<Vec<_>>()),
            101
        );
        assert_eq!(t.len(), 101);
        t.add_column(Ty::VarChar);
        assert_eq!(t.cols[2].len(), 101);
    }
}
