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

    /// The bucket `k` with `k*W <= ts < (k+1)*W` (floor division, so negative timestamps
    /// land in negative buckets).
    pub fn bucket_of(&self, ts: i64, precision: Precision) -> Bucket {
        Bucket::containing(ts, self.in_units(precision))
    }

    /// The time range covered by `bucket`.
    pub fn range_of(&self, bucket: Bucket, precision: Precision) -> Result<TimeRange, Error> {
        bucket.range(self.in_units(precision))
    }
}

/// A bucket index `k`: a table's block `k` holds its timestamps in `[k*W, (k+1)*W)`, where
/// `W` is the repository's [`BucketWidth`] in the database's precision
/// ([`BucketWidth::in_units`]). The bucket arithmetic lives here and nowhere else.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Bucket(pub i64);

impl Bucket {
    /// The bucket holding `ts`, for buckets `width_units` timestamp units wide (positive:
    /// [`BucketWidth::in_units`]). Floor division: negative timestamps land in negative
    /// buckets.
    pub fn containing(ts: i64, width_units: i64) -> Bucket {
        Bucket(ts.div_euclid(width_units))
    }

    /// The index `k`.
    pub const fn index(self) -> i64 {
        self.0
    }

    /// The time range the bucket covers; fails where `k*W` overflows an `i64`.
    pub fn range(self, width_units: i64) -> Result<TimeRange, Error> {
        let start = self.0.checked_mul(width_units).ok_or(Error::Overflow {
            value: self.0,
            context: "bucket start",
        })?;
        let end = start.checked_add(width_units).ok_or(Error::Overflow {
            value: self.0,
            context: "bucket end",
        })?;
        Ok(TimeRange { start, end })
    }

    /// The time range the bucket covers, clamped to the `i64` range (for a bucket that
    /// holds a timestamp, only the last one can clamp, and only its end).
    pub fn range_saturating(self, width_units: i64) -> TimeRange {
        let start = self.0.saturating_mul(width_units);
        TimeRange {
            start,
            end: start.saturating_add(width_units),
        }
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_and_ranges_cover() {
        let w = BucketWidth::from_seconds(60).unwrap();
        assert_eq!(w.bucket_of(0, Precision::Ms), Bucket(0));
        assert_eq!(w.bucket_of(59_999, Precision::Ms), Bucket(0));
        assert_eq!(w.bucket_of(60_000, Precision::Ms), Bucket(1));
        assert_eq!(w.bucket_of(-1, Precision::Ms), Bucket(-1));
        let r = w.range_of(Bucket(-1), Precision::Ns).unwrap();
        assert_eq!(
            r,
            TimeRange {
                start: -60_000_000_000,
                end: 0
            }
        );
        assert!(w.range_of(Bucket(i64::MAX), Precision::Ms).is_err());
        let top = Bucket::containing(i64::MAX, 60_000);
        assert_eq!(top.range_saturating(60_000).end, i64::MAX);
        assert_eq!(
            top.range_saturating(60_000).start,
            i64::MAX / 60_000 * 60_000
        );
        assert_eq!(serde_json::to_string(&Bucket(-3)).unwrap(), "-3");
        assert!(BucketWidth::from_seconds(59).is_err());
        assert!(serde_json::from_str::<BucketWidth>("1").is_err());
    }
}
