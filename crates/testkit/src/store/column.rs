//! Column helpers on [`ColumnData`]: same-type copies, gathers and repeats without going
//! through [`Value`] in hot paths.

use crate::types::{ColumnData, Ty, Value};

/// Runs `$body` with both columns' vectors bound when they have the same variant; `$V` names
/// the variant constructor inside the body.
macro_rules! dispatch2 {
    ($a:expr, $b:expr, |$x:ident, $y:ident, $V:ident| $body:block, $other:expr) => {
        dispatch2!(@arms $a, $b, $x, $y, $V, $body, $other,
            [Bool TinyInt SmallInt Int BigInt Float Double VarChar Timestamp NChar UTinyInt
             USmallInt UInt UBigInt Json VarBinary Geometry Decimal Blob Decimal64])
    };
    (@arms $a:expr, $b:expr, $x:ident, $y:ident, $V:ident, $body:block, $other:expr, [$($var:ident)*]) => {
        match ($a, $b) {
            $((ColumnData::$var($x), ColumnData::$var($y)) => {
                #[allow(unused_imports)]
                use $crate::types::ColumnData::$var as $V;
                $body
            })*
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

/// Runs `$body` with the column's vector bound; `$V` names the variant constructor.
macro_rules! dispatch1 {
    ($a:expr, |$x:ident, $V:ident| $body:block) => {
        dispatch1!(@arms $a, $x, $V, $body,
            [Bool TinyInt SmallInt Int BigInt Float Double VarChar Timestamp NChar UTinyInt
             USmallInt UInt UBigInt Json VarBinary Geometry Decimal Blob Decimal64])
    };
    (@arms $a:expr, $x:ident, $V:ident, $body:block, [$($var:ident)*]) => {
        match $a {
            $(ColumnData::$var($x) => {
                #[allow(unused_imports)]
                use $crate::types::ColumnData::$var as $V;
                $body
            })*
        }
    };
}

// The dispatch macros expand over Copy and non-Copy element types alike.
#[allow(clippy::clone_on_copy)]
impl ColumnData {
    /// Appends `other[range]`; `false` (nothing appended) on a type mismatch.
    pub fn extend_range(&mut self, other: &ColumnData, range: std::ops::Range<usize>) -> bool {
        dispatch2!(
            self,
            other,
            |a, b, _V| {
                a.extend_from_slice(&b[range]);
                true
            },
            false
        )
    }

    /// Appends `other[i]` for each index; `false` on a type mismatch.
    pub fn extend_indices(&mut self, other: &ColumnData, indices: &[usize]) -> bool {
        dispatch2!(
            self,
            other,
            |a, b, _V| {
                a.reserve(indices.len());
                a.extend(indices.iter().map(|&i| b[i].clone()));
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
            dispatch1!(self, |a, _V| {
                a.resize(a.len() + n, None);
            });
            return true;
        }
        let mut one = ColumnData::new(self.ty());
        if !one.push(value.clone()) {
            return false;
        }
        dispatch2!(
            self,
            &one,
            |a, b, _V| {
                a.resize(a.len() + n, b[0].clone());
                true
            },
            false
        )
    }

    /// Merges two columns of the same type: `plan` lists `(from_b, index)` for each output row.
    pub fn gather2(a: &ColumnData, b: &ColumnData, plan: &[(bool, usize)]) -> Option<ColumnData> {
        dispatch2!(
            a,
            b,
            |x, y, V| {
                let mut out = Vec::with_capacity(plan.len());
                for &(from_b, i) in plan {
                    out.push(if from_b { y[i].clone() } else { x[i].clone() });
                }
                Some(V(out))
            },
            None
        )
    }

    /// Copies `other[j]` into `self[i]`; `false` on a type mismatch.
    pub fn set_from(&mut self, i: usize, other: &ColumnData, j: usize) -> bool {
        dispatch2!(
            self,
            other,
            |a, b, _V| {
                a[i] = b[j].clone();
                true
            },
            false
        )
    }

    /// Inserts `other[j]` at `i`; `false` on a type mismatch.
    pub fn insert_from(&mut self, i: usize, other: &ColumnData, j: usize) -> bool {
        dispatch2!(
            self,
            other,
            |a, b, _V| {
                a.insert(i, b[j].clone());
                true
            },
            false
        )
    }

    /// The column's values reversed in place.
    pub fn reverse(&mut self) {
        dispatch1!(self, |a, _V| {
            a.reverse();
        })
    }

    /// The timestamps of a TIMESTAMP column (NULL as `None`), or `None` for other types.
    pub fn timestamps(&self) -> Option<&[Option<i64>]> {
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
        let a = ColumnData::Int(vec![Some(1), None, Some(3)]);
        let b = ColumnData::Int(vec![Some(10), Some(20)]);
        let mut c = ColumnData::new(Ty::Int);
        assert!(c.extend_range(&a, 1..3));
        assert!(c.extend_indices(&b, &[1, 0]));
        assert!(c.push_repeat(&Value::Int(7), 2));
        assert!(c.push_repeat(&Value::Null, 1));
        assert_eq!(
            c,
            ColumnData::Int(vec![
                None,
                Some(3),
                Some(20),
                Some(10),
                Some(7),
                Some(7),
                None
            ])
        );
        assert!(!c.push_repeat(&Value::BigInt(1), 1));
        assert!(!c.extend_range(&ColumnData::BigInt(vec![Some(1)]), 0..1));
        let g = ColumnData::gather2(&a, &b, &[(true, 0), (false, 2), (false, 1)]).unwrap();
        assert_eq!(g, ColumnData::Int(vec![Some(10), Some(3), None]));
        assert!(ColumnData::gather2(&a, &ColumnData::new(Ty::Bool), &[]).is_none());
        let mut s = ColumnData::VarChar(vec![Some(b"x".to_vec())]);
        assert!(s.insert_from(0, &ColumnData::VarChar(vec![Some(b"y".to_vec())]), 0));
        assert!(s.set_from(1, &ColumnData::VarChar(vec![None]), 0));
        s.reverse();
        assert_eq!(s, ColumnData::VarChar(vec![None, Some(b"y".to_vec())]));
        assert_eq!(
            ColumnData::nulls(Ty::NChar, 2),
            ColumnData::NChar(vec![None, None])
        );
    }
}
