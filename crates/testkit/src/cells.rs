//! Compact column storage behind [`crate::ColumnData`]: fixed-width values in one vector,
//! variable-width values as end offsets plus one byte buffer, NULLs in a flag vector that
//! exists only once a column holds a NULL.
//!
//! The emulator keeps every row in RAM; with a vector of `Option`s and a heap allocation per
//! VARCHAR value a row of the benchmark's `meters` table took ~100 B, with this layout it
//! takes its data size (~26 B: 8 + 4 + 4 + 4 + a 4-byte offset and the text).

use std::marker::PhantomData;
use std::ops::Range;

/// Operations every storage kind offers, so that [`crate::ColumnData`] can dispatch to them.
pub trait Cells: Sized {
    /// An empty column with room for `n` values.
    fn with_capacity(n: usize) -> Self;
    /// An empty column of the same kind with room for `n` values.
    fn empty(&self, n: usize) -> Self {
        Self::with_capacity(n)
    }
    /// Number of values.
    fn len(&self) -> usize;
    /// Whether the column holds no values.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the value at `i` is NULL.
    fn is_null(&self, i: usize) -> bool;
    /// Appends a NULL.
    fn push_null(&mut self);
    /// Appends `n` NULLs.
    fn push_nulls(&mut self, n: usize) {
        for _ in 0..n {
            self.push_null();
        }
    }
    /// Appends `other[j]`.
    fn push_from(&mut self, other: &Self, j: usize);
    /// Appends `other[range]`.
    fn extend_range(&mut self, other: &Self, range: Range<usize>);
    /// Replaces the value at `i` with `other[j]`.
    fn set_from(&mut self, i: usize, other: &Self, j: usize);
    /// Inserts `other[j]` at `i`.
    fn insert_from(&mut self, i: usize, other: &Self, j: usize);
    /// Removes the values in `range`.
    fn drain(&mut self, range: Range<usize>);
    /// Releases spare capacity beyond a quarter of the length (see [`grow`]).
    fn trim(&mut self);
    /// Releases all spare capacity.
    fn fit(&mut self);
    /// A copy of the values at `indices`, in that order.
    fn take(&self, indices: &[usize]) -> Self {
        let mut out = Self::with_capacity(indices.len());
        for &i in indices {
            out.push_from(self, i);
        }
        out
    }
    /// Keeps the rows marked `true` in `keep` (same length).
    fn retain_mask(&mut self, keep: &[bool]) {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep[i]).collect();
        *self = self.take(&idx);
    }
    /// The values reversed.
    fn reverse(&mut self) {
        let idx: Vec<usize> = (0..self.len()).rev().collect();
        *self = self.take(&idx);
    }
    /// A copy of `range`.
    fn slice(&self, range: Range<usize>) -> Self {
        let mut out = Self::with_capacity(range.len());
        out.extend_range(self, range);
        out
    }
}

/// Reserves room for `additional` more elements, growing by at least an eighth of the
/// length instead of doubling: a table's columns are appended to batch by batch, and
/// doubling left up to half of each vector unused (the emulator's whole memory). The new
/// capacity is rounded up to a size class (eight per doubling, so at most an eighth more):
/// with exact sizes, the vectors that 10,000 tables outgrow were freed in as many sizes,
/// and glibc's `malloc` walked its large bins' lists of distinct sizes on every request
/// (`_int_malloc` 11.6% of the emulator's samples in a 100 M-row restore;
/// docs/performance-history.md, "Restore: the emulator's ingestion").
pub fn grow<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        let want = v.len() + additional.max(v.len() / 8);
        v.reserve_exact(size_class(want) - v.len());
    }
}

/// `n` rounded up to the next of eight classes per doubling (`m << k`, `m` in 8..=15).
fn size_class(n: usize) -> usize {
    if n <= 16 {
        return n;
    }
    let shift = usize::BITS - 4 - n.leading_zeros();
    let m = n.div_ceil(1 << shift);
    m << shift
}

/// NULL flags: empty while the column has no NULL, else one flag per value.
#[derive(Debug, Clone, Default)]
struct Nulls(Vec<bool>);

impl Nulls {
    fn get(&self, i: usize) -> bool {
        self.0.get(i).copied().unwrap_or(false)
    }

    /// Records the flag of a value appended at index `len` (the column's length before).
    fn push(&mut self, len: usize, null: bool) {
        if !self.0.is_empty() {
            self.0.push(null);
        } else if null {
            self.0 = vec![false; len];
            self.0.push(true);
        }
    }

    fn set(&mut self, len: usize, i: usize, null: bool) {
        if self.0.is_empty() && null {
            self.0 = vec![false; len];
        }
        if let Some(f) = self.0.get_mut(i) {
            *f = null;
        }
    }

    fn insert(&mut self, len: usize, i: usize, null: bool) {
        if self.0.is_empty() && null {
            self.0 = vec![false; len];
        }
        if !self.0.is_empty() {
            grow(&mut self.0, 1);
            self.0.insert(i, null);
        }
    }

    fn drain(&mut self, range: Range<usize>) {
        if !self.0.is_empty() {
            self.0.drain(range);
            if !self.0.contains(&true) {
                self.0 = Vec::new();
            }
        }
    }

    fn extend(&mut self, len: usize, other: &Nulls, range: Range<usize>) {
        if other.0.is_empty() {
            if !self.0.is_empty() {
                self.0.resize(len + range.len(), false);
            }
            return;
        }
        if self.0.is_empty() {
            self.0 = vec![false; len];
        }
        self.0.extend_from_slice(&other.0[range]);
    }
}

/// A fixed-width column: the values (a NULL holds `T::default()`) and the NULL flags.
#[derive(Debug, Clone, Default)]
pub struct Fixed<T> {
    vals: Vec<T>,
    nulls: Nulls,
}

impl<T: Copy + Default> Fixed<T> {
    /// The value at `i`, `None` for NULL (panics when out of range).
    pub fn get(&self, i: usize) -> Option<T> {
        let v = self.vals[i];
        (!self.nulls.get(i)).then_some(v)
    }

    /// Appends a value or NULL.
    pub fn push(&mut self, v: Option<T>) {
        self.nulls.push(self.vals.len(), v.is_none());
        self.vals.push(v.unwrap_or_default());
    }

    /// Inserts a value or NULL at `i`.
    pub fn insert(&mut self, i: usize, v: Option<T>) {
        self.nulls.insert(self.vals.len(), i, v.is_none());
        grow(&mut self.vals, 1);
        self.vals.insert(i, v.unwrap_or_default());
    }

    /// Replaces the value at `i`.
    pub fn set(&mut self, i: usize, v: Option<T>) {
        self.nulls.set(self.vals.len(), i, v.is_none());
        self.vals[i] = v.unwrap_or_default();
    }

    /// Appends values none of which is NULL, in one pass (no per-value NULL flag).
    pub fn extend_present(&mut self, vals: impl ExactSizeIterator<Item = T>) {
        let (len, n) = (self.vals.len(), vals.len());
        grow(&mut self.vals, n);
        self.vals.extend(vals);
        // Flags are kept only once the column has a NULL: then these are `false`.
        self.nulls.extend(len, &Nulls::default(), 0..n);
    }

    /// The raw values: a NULL's slot holds `T::default()`.
    pub fn values(&self) -> &[T] {
        &self.vals
    }

    /// Whether any value is NULL.
    pub fn has_nulls(&self) -> bool {
        self.nulls.0.contains(&true)
    }

    /// The values in order, `None` for NULL.
    pub fn iter(&self) -> impl Iterator<Item = Option<T>> + '_ {
        (0..self.vals.len()).map(|i| self.get(i))
    }
}

impl<T: Copy + Default + PartialEq> PartialEq for Fixed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.vals.len() == other.vals.len() && self.iter().eq(other.iter())
    }
}

impl<T: Copy + Default> FromIterator<Option<T>> for Fixed<T> {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(iter: I) -> Self {
        let mut c = Fixed {
            vals: Vec::new(),
            nulls: Nulls::default(),
        };
        for v in iter {
            c.push(v);
        }
        c
    }
}

impl<T: Copy + Default> From<Vec<Option<T>>> for Fixed<T> {
    fn from(v: Vec<Option<T>>) -> Self {
        v.into_iter().collect()
    }
}

impl<T: Copy + Default> Cells for Fixed<T> {
    fn with_capacity(n: usize) -> Self {
        Fixed {
            vals: Vec::with_capacity(n),
            nulls: Nulls::default(),
        }
    }
    fn len(&self) -> usize {
        self.vals.len()
    }
    fn is_null(&self, i: usize) -> bool {
        assert!(i < self.vals.len(), "row {i} out of range");
        self.nulls.get(i)
    }
    fn push_null(&mut self) {
        self.push(None);
    }
    fn push_nulls(&mut self, n: usize) {
        let len = self.vals.len();
        if n > 0 {
            if self.nulls.0.is_empty() {
                self.nulls.0 = vec![false; len];
            }
            self.nulls.0.resize(len + n, true);
        }
        self.vals.resize(len + n, T::default());
    }
    fn push_from(&mut self, other: &Self, j: usize) {
        self.push(other.get(j));
    }
    fn extend_range(&mut self, other: &Self, range: Range<usize>) {
        grow(&mut self.vals, range.len());
        self.nulls
            .extend(self.vals.len(), &other.nulls, range.clone());
        self.vals.extend_from_slice(&other.vals[range]);
    }
    fn set_from(&mut self, i: usize, other: &Self, j: usize) {
        self.set(i, other.get(j));
    }
    fn insert_from(&mut self, i: usize, other: &Self, j: usize) {
        self.insert(i, other.get(j));
    }
    fn drain(&mut self, range: Range<usize>) {
        self.nulls.drain(range.clone());
        self.vals.drain(range);
    }
    fn trim(&mut self) {
        if self.vals.capacity() > self.vals.len() + self.vals.len() / 4 {
            self.vals.shrink_to_fit();
        }
    }
    fn fit(&mut self) {
        self.vals.shrink_to_fit();
        self.nulls.0.shrink_to_fit();
    }
    fn take(&self, indices: &[usize]) -> Self {
        let mut out = Self::with_capacity(indices.len());
        if self.nulls.0.is_empty() {
            out.vals.extend(indices.iter().map(|&i| self.vals[i]));
        } else {
            for &i in indices {
                out.push_from(self, i);
            }
        }
        out
    }
}

/// How a variable-width column's values are owned when they leave it.
pub trait VarKind {
    /// The owned value.
    type Item;
    /// The value's bytes.
    fn bytes(v: &Self::Item) -> &[u8];
    /// A value from stored bytes.
    fn own(b: &[u8]) -> Self::Item;
}

/// Byte strings (VARCHAR, VARBINARY, GEOMETRY, BLOB).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bytes;

/// Text stored as UTF-8 (NCHAR, JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Text;

impl VarKind for Bytes {
    type Item = Vec<u8>;
    fn bytes(v: &Vec<u8>) -> &[u8] {
        v
    }
    fn own(b: &[u8]) -> Vec<u8> {
        b.to_vec()
    }
}

impl VarKind for Text {
    type Item = String;
    fn bytes(v: &String) -> &[u8] {
        v.as_bytes()
    }
    // Only `String`s are ever stored in a text column, so the bytes are valid UTF-8.
    fn own(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }
}

/// A variable-width column: each value's end offset into one byte buffer (a NULL is empty).
#[derive(Debug, Clone, Default)]
pub struct Var<K> {
    ends: Vec<u32>,
    bytes: Vec<u8>,
    nulls: Nulls,
    kind: PhantomData<K>,
}

/// A column's byte buffer is addressed with 32-bit offsets, as TDengine's own column data
/// (`SColData.aOffset` is `int32_t`, include/common/tdataformat.h).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| {
        panic!("emulator limit: a table column holds more than 4 GiB of variable-width data")
    })
}

impl<K> Var<K> {
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    /// The bytes at `i`, `None` for NULL (panics when out of range).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let b = &self.bytes[self.start(i)..self.ends[i] as usize];
        (!self.nulls.get(i)).then_some(b)
    }

    /// Makes room for `n` more bytes of values at once (a column decoded from a block knows
    /// an upper bound: its data length).
    pub fn reserve_bytes(&mut self, n: usize) {
        self.bytes.reserve(n);
    }

    /// Appends bytes or NULL.
    pub fn push(&mut self, v: Option<&[u8]>) {
        self.nulls.push(self.ends.len(), v.is_none());
        if let Some(b) = v {
            self.bytes.extend_from_slice(b);
        }
        self.ends.push(offset(self.bytes.len()));
    }

    /// Inserts bytes or NULL at `i`.
    pub fn insert(&mut self, i: usize, v: Option<&[u8]>) {
        self.nulls.insert(self.ends.len(), i, v.is_none());
        let b = v.unwrap_or_default();
        let s = self.start(i);
        grow(&mut self.bytes, b.len());
        self.bytes.splice(s..s, b.iter().copied());
        grow(&mut self.ends, 1);
        self.ends.insert(i, offset(s));
        self.shift(i, b.len() as i64);
    }

    /// Replaces the value at `i`.
    pub fn set(&mut self, i: usize, v: Option<&[u8]>) {
        self.nulls.set(self.ends.len(), i, v.is_none());
        let b = v.unwrap_or_default();
        let (s, e) = (self.start(i), self.ends[i] as usize);
        self.bytes.splice(s..e, b.iter().copied());
        self.shift(i, b.len() as i64 - (e - s) as i64);
    }

    /// Adds `delta` to the end offsets from `i` on.
    fn shift(&mut self, i: usize, delta: i64) {
        if delta != 0 {
            for e in &mut self.ends[i..] {
                *e = offset((i64::from(*e) + delta) as usize);
            }
        }
    }

    /// The values in order, `None` for NULL.
    pub fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        (0..self.ends.len()).map(|i| self.get(i))
    }
}

impl<K> PartialEq for Var<K> {
    fn eq(&self, other: &Self) -> bool {
        self.ends.len() == other.ends.len() && self.iter().eq(other.iter())
    }
}

impl<K: VarKind> FromIterator<Option<K::Item>> for Var<K> {
    fn from_iter<I: IntoIterator<Item = Option<K::Item>>>(iter: I) -> Self {
        let mut c = Var::with_capacity(0);
        for v in iter {
            c.push(v.as_ref().map(K::bytes));
        }
        c
    }
}

impl<K: VarKind> From<Vec<Option<K::Item>>> for Var<K> {
    fn from(v: Vec<Option<K::Item>>) -> Self {
        v.into_iter().collect()
    }
}

impl<K> Cells for Var<K> {
    fn with_capacity(n: usize) -> Self {
        Var {
            ends: Vec::with_capacity(n),
            bytes: Vec::new(),
            nulls: Nulls::default(),
            kind: PhantomData,
        }
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn is_null(&self, i: usize) -> bool {
        assert!(i < self.ends.len(), "row {i} out of range");
        self.nulls.get(i)
    }
    fn push_null(&mut self) {
        self.push(None);
    }
    fn push_from(&mut self, other: &Self, j: usize) {
        self.push(other.get(j));
    }
    fn extend_range(&mut self, other: &Self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        let (s, e) = (other.start(range.start), other.start(range.end));
        grow(&mut self.ends, range.len());
        grow(&mut self.bytes, e - s);
        self.nulls
            .extend(self.ends.len(), &other.nulls, range.clone());
        let base = self.bytes.len() as i64 - s as i64;
        self.bytes.extend_from_slice(&other.bytes[s..e]);
        self.ends.extend(
            other.ends[range]
                .iter()
                .map(|&x| offset((i64::from(x) + base) as usize)),
        );
    }
    fn set_from(&mut self, i: usize, other: &Self, j: usize) {
        self.set(i, other.get(j));
    }
    fn insert_from(&mut self, i: usize, other: &Self, j: usize) {
        self.insert(i, other.get(j));
    }
    fn drain(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        let (s, e) = (self.start(range.start), self.start(range.end));
        self.nulls.drain(range.clone());
        self.bytes.drain(s..e);
        self.ends.drain(range.clone());
        self.shift(range.start, -((e - s) as i64));
    }
    fn trim(&mut self) {
        if self.ends.capacity() > self.ends.len() + self.ends.len() / 4 {
            self.ends.shrink_to_fit();
        }
        if self.bytes.capacity() > self.bytes.len() + self.bytes.len() / 4 {
            self.bytes.shrink_to_fit();
        }
    }
    fn fit(&mut self) {
        self.ends.shrink_to_fit();
        self.bytes.shrink_to_fit();
        self.nulls.0.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        for n in 0..=16 {
            assert_eq!(size_class(n), n);
        }
        assert_eq!(size_class(17), 18);
        assert_eq!(size_class(1440), 1536);
        assert_eq!(size_class(1536), 1536);
        assert_eq!(size_class(1537), 1664);
        let mut classes = std::collections::BTreeSet::new();
        for n in 17..200_000usize {
            let c = size_class(n);
            assert!(c >= n && c - n <= n / 8 + 1, "{n} -> {c}");
            classes.insert(c);
        }
        // Eight classes per doubling from 16 to 2^18: 14 doublings.
        assert!(classes.len() <= 8 * 14 + 1, "{}", classes.len());
    }

    #[test]
    fn grow_reserves_a_size_class() {
        let mut v: Vec<u64> = vec![0; 1440];
        v.shrink_to_fit();
        grow(&mut v, 1440);
        assert_eq!(v.capacity(), size_class(2880));
        let before = v.capacity();
        grow(&mut v, 1);
        assert_eq!(v.capacity(), before, "room left: no reallocation");
    }

    #[test]
    fn fixed_nulls_follow_every_operation() {
        let mut a: Fixed<i32> = vec![Some(1), Some(2), Some(3)].into();
        assert!(!a.has_nulls());
        a.insert(1, None);
        assert_eq!(a, vec![Some(1), None, Some(2), Some(3)].into());
        a.set(1, Some(9));
        a.set(3, None);
        assert_eq!(a, vec![Some(1), Some(9), Some(2), None].into());
        a.drain(0..2);
        assert_eq!(a, vec![Some(2), None].into());
        let mut b: Fixed<i32> = vec![Some(7)].into();
        b.extend_range(&a, 0..2);
        b.push_nulls(2);
        b.push(Some(5));
        assert_eq!(b, vec![Some(7), Some(2), None, None, None, Some(5)].into());
        b.retain_mask(&[true, false, true, true, false, true]);
        b.reverse();
        assert_eq!(b, vec![Some(5), None, None, Some(7)].into());
        assert_eq!(b.take(&[3, 0]), vec![Some(7), Some(5)].into());
        assert_eq!(b.values(), &[5, 0, 0, 7]);
    }

    #[test]
    fn var_offsets_follow_every_operation() {
        let s = |x: &str| Some(x.as_bytes().to_vec());
        let mut a: Var<Bytes> = vec![s("ab"), None, s("cde")].into();
        assert_eq!(a.get(2), Some(&b"cde"[..]));
        a.insert(1, Some(b"xyz"));
        a.set(0, Some(b"q"));
        assert_eq!(a, vec![s("q"), s("xyz"), None, s("cde")].into());
        a.set(2, Some(b""));
        assert_eq!(a.get(2), Some(&b""[..]));
        a.drain(1..3);
        assert_eq!(a, vec![s("q"), s("cde")].into());
        let mut b: Var<Bytes> = vec![None].into();
        b.extend_range(&a, 1..2);
        b.extend_range(&a, 0..2);
        assert_eq!(b, vec![None, s("cde"), s("q"), s("cde")].into());
        b.reverse();
        assert_eq!(b, vec![s("cde"), s("q"), s("cde"), None].into());
        b.trim();
        let t: Var<Text> = vec![Some("é".to_string())].into();
        assert_eq!(Text::own(t.get(0).unwrap_or_default()), "é");
    }
}
