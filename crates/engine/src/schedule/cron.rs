//! Cron expressions with seconds: when scheduled backups fall due.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Local, Utc};
use serde::Deserialize;

/// A cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`
/// (`"0 0 2 * * Sun"`, `"*/5 * * * * *"`); five fields mean seconds `0`. Weekdays follow
/// POSIX cron: `0` and `7` are Sunday, `1` is Monday; names (`Sun`, `Mon`) work too. Evaluated
/// in the local time zone of the process.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSchedule {
    expression: String,
    cron: croner::Cron,
}

impl CronSchedule {
    /// Parses `expression`; the error says what is wrong and how to write it.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let trimmed = expression.trim();
        let cron = croner::parser::CronParser::new()
            .parse(trimmed)
            .map_err(|e| {
                format!(
                    "invalid cron expression {expression:?}: {e}; write six fields \
                 \"sec min hour day-of-month month day-of-week\", e.g. \"0 0 2 * * Sun\""
                )
            })?;
        Ok(CronSchedule {
            expression: trimmed.to_owned(),
            cron,
        })
    }

    /// The first fire time strictly after `after`; None when the expression never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&Local);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;

    fn try_from(expression: String) -> Result<CronSchedule, String> {
        CronSchedule::parse(&expression)
    }
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(expression: &str) -> Result<CronSchedule, String> {
        CronSchedule::parse(expression)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule")
            .field(&self.expression)
            .finish()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &CronSchedule) -> bool {
        self.expression == other.expression
    }
}

impl Eq for CronSchedule {}

#[cfg(test)]
mod tests {
    use super::super::tests::local;
    use super::*;

    #[test]
    fn weekly_full_fires_on_sunday_at_two() {
        let full = CronSchedule::parse("0 0 2 * * Sun").expect("parses");
        // 2026-11-25 is a Wednesday.
        let next = full.next_after(local(2026, 11, 25, 10, 0, 0));
        assert_eq!(next, Some(local(2026, 11, 29, 2, 0, 0)));
        // Strictly after: at the fire time itself, the next one is a week later.
        let after = full.next_after(local(2026, 11, 29, 2, 0, 0));
        assert_eq!(after, Some(local(2026, 12, 6, 2, 0, 0)));
        // Numeric weekdays are POSIX: 0 is Sunday.
        let numeric = CronSchedule::parse("0 0 2 * * 0").expect("parses");
        assert_eq!(numeric.next_after(local(2026, 11, 25, 10, 0, 0)), next);
    }

    #[test]
    fn hourly_and_every_second_and_five_fields() {
        let hourly = CronSchedule::parse("0 0 * * * *").expect("parses");
        assert_eq!(
            hourly.next_after(local(2026, 11, 25, 10, 59, 59)),
            Some(local(2026, 11, 25, 11, 0, 0))
        );
        let every = CronSchedule::parse("* * * * * *").expect("parses");
        assert_eq!(
            every.next_after(local(2026, 11, 25, 10, 0, 0)),
            Some(local(2026, 11, 25, 10, 0, 1))
        );
        let five = CronSchedule::parse("30 3 * * *").expect("parses");
        assert_eq!(
            five.next_after(local(2026, 11, 25, 10, 0, 0)),
            Some(local(2026, 11, 26, 3, 30, 0))
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression() {
        for bad in ["", "0 0 2 * * Funday", "61 * * * * *", "a b c"] {
            let err = CronSchedule::parse(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("0 0 2 * * Sun"), "{err}");
        }
    }
}
