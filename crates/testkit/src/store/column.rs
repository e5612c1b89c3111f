//! Column helpers on [`ColumnData`]: same-type copies, gathers and repeats without going
//! through [`Value`] in hot paths (on the storage of [`crate::cells`]).

use crate::types::{ColumnData, Ty, Value};

use crate::cells::{Cells, Fixed};
use crate::types::{with_cells, with_cells2};

impl ColumnData {
    /// Appends `other[range]`; `false` (nothing appended) on a type mismatch.
    pub fn extend_range(&mut self, other: &ColumnData, range: std::ops::Range<usize>) -> bool {
        with_cells2!(
            self,
            other,
            |a, b, _V| {
                a.extend_range(b, range);
                true
            },
            false
        )
    }

    /// Appends `other[i]` for each index; `false` on a type mismatch.
    pub fn extend_indices(&mut self, other: &ColumnData, indices: &[usize]) -> bool {
        with_cells2!(
            self,
            other,
            |a, b, _V| {
                for &i in indices {
                    a.push_from(b, i);
                }
                true
            },
            false
        )
    }

    /// Appends `n` copies of `value` (NULL or the column's type); `false` on a mismatch.
    pub fn push_repeat(&mut self, value: &Value, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if value.is_null() {
            with_cells!(self, |a| a.push_nulls(n));
            return true;
        }
        // One value (a tag or tbname per child table in `SELECT TAGS`, 10,000 of them in a
        // catalog read): straight in, without a one-value column to copy it from.
        if n == 1 {
            return self.push(value.clone());
        }
        let mut one = ColumnData::new(self.ty());
        if !one.push(value.clone()) {
            return false;
        }
        with_cells2!(
            self,
            &one,
            |a, b, _V| {
                for _ in 0..n {
                    a.push_from(b, 0);
                }
                true
            },
            false
        )
    }

    /// Merges two columns of the same type: `plan` lists `(from_b, index)` for each output row.
    pub fn gather2(a: &ColumnData, b: &ColumnData, plan: &[(bool, usize)]) -> Option<ColumnData> {
        with_cells2!(
            a,
            b,
            |x, y, V| {
                let mut out = x.empty(plan.len());
                for &(from_b, i) in plan {
                    out.push_from(if from_b { y } else { x }, i);
                }
                Some(V(out))
            },
            None
        )
    }

    /// Copies `other[j]` into `self[i]`; `false` on a type mismatch.
    pub fn set_from(&mut self, i: usize, other: &ColumnData, j: usize) -> bool {
        with_cells2!(
            self,
            other,
            |a, b, _V| {
                a.set_from(i, b, j);
                true
            },
            false
        )
    }

    /// Inserts `other[j]` at `i`; `false` on a type mismatch.
    pub fn insert_from(&mut self, i: usize, other: &ColumnData, j: usize) -> bool {
        with_cells2!(
            self,
            other,
            |a, b, _V| {
                a.insert_from(i, b, j);
                true
            },
            false
        )
    }

    /// The column's values reversed in place.
    pub fn reverse(&mut self) {
        with_cells!(self, |a| a.reverse())
    }

    /// The timestamps of a TIMESTAMP column, or `None` for other types.
    pub fn timestamps(&self) -> Option<&Fixed<i64>> {
        match self {
            ColumnData::Timestamp(v) => Some(v),
            _ => None,
        }
    }

    /// A column of `n` NULLs.
    pub fn nulls(ty: Ty, n: usize) -> ColumnData {
        let mut c = ColumnData::with_capacity(ty, n);
        c.push_repeat(&Value::Null, n);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let a = ColumnData::Int(vec![Some(1), None, Some(3)].into());
        let b = ColumnData::Int(vec![Some(10), Some(20)].into());
        let mut c = ColumnData::new(Ty::Int);
        assert!(c.extend_range(&a, 1..3));
        assert!(c.extend_indices(&b, &[1, 0]));
        assert!(c.push_repeat(&Value::Int(7), 2));
        assert!(c.push_repeat(&Value::Null, 1));
        assert_eq!(
            c,
            ColumnData::Int(vec![None, Some(3), Some(20), Some(10), Some(7), Some(7), None].into())
        );
        assert!(!c.push_repeat(&Value::BigInt(1), 1));
        assert_eq!(c.len(), 7, "a mismatch appends nothing");
        // One value goes straight in (a tag or tbname per child table in SELECT TAGS).
        let mut t = ColumnData::new(Ty::VarChar);
        assert!(t.push_repeat(&Value::VarChar(b"t1".to_vec()), 1));
        assert!(t.push_repeat(&Value::VarChar(b"t2".to_vec()), 2));
        assert_eq!(
            t,
            ColumnData::VarChar(
                vec![
                    Some(b"t1".to_vec()),
                    Some(b"t2".to_vec()),
                    Some(b"t2".to_vec())
                ]
                .into()
            )
        );
        assert!(!t.push_repeat(&Value::Int(1), 1));
        assert_eq!(t.len(), 3);
        assert!(!c.extend_range(&ColumnData::BigInt(vec![Some(1)].into()), 0..1));
        let g = ColumnData::gather2(&a, &b, &[(true, 0), (false, 2), (false, 1)]).unwrap();
        assert_eq!(g, ColumnData::Int(vec![Some(10), Some(3), None].into()));
        assert!(ColumnData::gather2(&a, &ColumnData::new(Ty::Bool), &[]).is_none());
        let mut s = ColumnData::VarChar(vec![Some(b"x".to_vec())].into());
        assert!(s.insert_from(0, &ColumnData::VarChar(vec![Some(b"y".to_vec())].into()), 0));
        assert!(s.set_from(1, &ColumnData::VarChar(vec![None].into()), 0));
        s.reverse();
        assert_eq!(
            s,
            ColumnData::VarChar(vec![None, Some(b"y".to_vec())].into())
        );
        assert_eq!(
            ColumnData::nulls(Ty::NChar, 2),
            ColumnData::NChar(vec![None, None].into())
        );
    }
}
