//! Behaviour sets: what a TDengine server of a given version accepts, prints and returns.
//!
//! `--server-version` (and [`crate::StoreConfig::server_version`]) selects one [`Profile`].
//! Everything in the emulator that differs between TDengine versions — system-table
//! columns, `SHOW CREATE DATABASE` options, data types, TMQ details — asks the profile
//! instead of comparing version strings. Each method names the TDengine source it was taken
//! from (docs/emulator.md collects them).

use std::fmt;

/// A family of TDengine server versions with one behaviour set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// TDengine 3.3.0.x – 3.3.5.x (and the older 3.x versions the protocol tests use).
    V3_3_0,
    /// TDengine 3.3.6.x – 3.3.x.
    V3_3_6,
    /// TDengine 3.4.x and newer.
    V3_4,
}

impl Profile {
    /// The behaviour set of a four-part version string such as `3.3.6.0`. Unparseable
    /// parts count as 0 (the binary and [`crate::Emulator::start`] validate the string).
    pub fn of(version: &str) -> Profile {
        let mut parts = version
            .split('.')
            .map(|p| p.trim().parse::<u32>().unwrap_or(0));
        let v = [
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ];
        if v >= [3, 4, 0] {
            Profile::V3_4
        } else if v >= [3, 3, 6] {
            Profile::V3_3_6
        } else {
            Profile::V3_3_0
        }
    }

    /// A representative version string of the family (what `--server-version` would be).
    pub fn version(self) -> &'static str {
        match self {
            Profile::V3_3_0 => "3.3.0.0",
            Profile::V3_3_6 => "3.3.6.0",
            Profile::V3_4 => "3.4.0.0",
        }
    }

    /// Every behaviour set, oldest first.
    pub const ALL: [Profile; 3] = [Profile::V3_3_0, Profile::V3_3_6, Profile::V3_4];
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::V3_3_0 => "3.3.0",
            Profile::V3_3_6 => "3.3.6",
            Profile::V3_4 => "3.4",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_families() {
        assert_eq!(Profile::of("3.1.1.0"), Profile::V3_3_0);
        assert_eq!(Profile::of("3.3.0.8"), Profile::V3_3_0);
        assert_eq!(Profile::of("3.3.5.9"), Profile::V3_3_0);
        assert_eq!(Profile::of("3.3.6.0"), Profile::V3_3_6);
        assert_eq!(Profile::of("3.3.8.1"), Profile::V3_3_6);
        assert_eq!(Profile::of("3.4.0.0"), Profile::V3_4);
        assert_eq!(Profile::of("4.0.0.0"), Profile::V3_4);
        for p in Profile::ALL {
            assert_eq!(Profile::of(p.version()), p);
        }
    }
}
