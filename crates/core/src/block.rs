//! Blocks: a table's rows within one time bucket.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::catalog::Precision;

/// A half-open time range `[start, end)` in a database's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    /// First timestamp included.
    pub start: i64,
    /// First timestamp excluded.
    pub end: i64,
}

impl TimeRange {
    /// Whether `ts` lies in the range.
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// The width `W` of a time bucket in seconds (minimum one minute, default one day).
/// It is a repository setting and independent of the database precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct BucketWidth(u64);

impl BucketWidth {
    /// One day, the default.
    pub const DAY: BucketWidth = BucketWidth(86_400);
    /// The smallest allowed width: one minute.
    pub const MIN_SECONDS: u64 = 60;

    /// A width of `seconds`; fails below one minute or above 100 years.
    pub fn from_seconds(seconds: u64) -> Result<Self, Error> {
        if seconds < Self::MIN_SECONDS {
            return Err(Error::InvalidBucketWidth {
                seconds,
                reason: "below the minimum of 60 s",
            });
        }
        if seconds > 100 * 366 * 86_400 {
            return Err(Error::InvalidBucketWidth {
                seconds,
                reason: "above the maximum of 100 years",
            });
        }
        Ok(BucketWidth(seconds))
    }

    /// The width in seconds.
    pub fn seconds(&self) -> u64 {
        self.0
    }

    /// The width expressed in timestamp units of `precision`.
    pub fn in_units(&self, precision: Precision) -> i64 {
        // At most 100 years in ns = 3.2e18 < i64::MAX, guaranteed by `from_seconds`.
        self.0 as i64 * precision.units_per_second()
    }

    /// The bucket index `k` with `k*W <= ts < (k+1)*W` (floor division, so negative
    /// timestamps land in negative buckets).
    pub fn bucket_of(&self, ts: i64, precision: Precision) -> i64 {
        ts.div_euclid(self.in_units(precision))
    }

    /// The time range covered by bucket `bucket`.
    pub fn range_of(&self, bucket: i64, precision: Precision) -> Result<TimeRange, Error> {
        let w = self.in_units(precision);
        let start = bucket.checked_mul(w).ok_or(Error::Overflow {
            value: bucket,
            context: "bucket start",
        })?;
        let end = start.checked_add(w).ok_or(Error::Overflow {
            value: bucket,
            context: "bucket end",
        })?;
        Ok(TimeRange { start, end })
    }
}

impl Default for BucketWidth {
    fn default() -> Self {
        BucketWidth::DAY
    }
}

impl TryFrom<u64> for BucketWidth {
    type Error = Error;
    fn try_from(seconds: u64) -> Result<Self, Error> {
        BucketWidth::from_seconds(seconds)
    }
}

impl From<BucketWidth> for u64 {
    fn from(w: BucketWidth) -> u64 {
        w.0
    }
}

/// The identity of a block: a table (by name within its database) and a bucket index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockKey {
    /// Table name within the database.
    pub table: String,
    /// Bucket index `k` (the block holds timestamps in `[k*W, (k+1)*W)`).
    pub bucket: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_and_ranges_cover() {
        let w = BucketWidth::from_seconds(60).unwrap();
        assert_eq!(w.bucket_of(0, Precision::Ms), 0);
        assert_eq!(w.bucket_of(59_999, Precision::Ms), 0);
        assert_eq!(w.bucket_of(60_000, Precision::Ms), 1);
        assert_eq!(w.bucket_of(-1, Precision::Ms), -1);
        let r = w.range_of(-1, Precision::Ns).unwrap();
        assert_eq!(
            r,
            TimeRange {
                start: -60_000_000_000,
                end: 0
            }
        );
        assert!(w.range_of(i64::MAX, Precision::Ms).is_err());
        assert!(BucketWidth::from_seconds(59).is_err());
        assert!(serde_json::from_str::<BucketWidth>("1").is_err());
    }
}
