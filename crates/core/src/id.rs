//! Identifiers: content-addressed blob ids and backup ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Lower-case hexadecimal encoding of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// Each byte's value as a hex digit (either case), or 0xff for a byte that is not one.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes `text` (two hex digits per byte of `out`, either case) into `out`; false if any
/// byte of `text` is not a hex digit. One table lookup per digit and a single check at the
/// end: ids are decoded by the thousand (every entry of an index and of a parent's shards)
/// and a branch per digit took about three times as long.
fn decode_pairs(text: &[u8], out: &mut [u8]) -> bool {
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= high | low;
        *o = (high << 4) | low;
    }
    // A digit's value is below 16; a non-digit's 0xff sets the high bits.
    bad < 16
}

/// Decodes hexadecimal text (either case). Returns `None` on odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    let mut out = vec![0u8; bytes.len() / 2];
    decode_pairs(bytes, &mut out).then_some(out)
}

/// Decodes exactly `2N` hex digits into `N` bytes, without allocating: ids are decoded by
/// the thousand when a snapshot's shards or an index are read.
pub fn from_hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    decode_pairs(bytes, &mut out).then_some(out)
}

/// Writes the lower-case hex of `bytes` into `out` (twice as long) and returns it as text.
fn hex_into<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0x0f) as usize];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

fn parse_fixed<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], Error> {
    if text.len() != N * 2 {
        return Err(Error::InvalidId {
            what,
            value: text.to_owned(),
            reason: "wrong length",
        });
    }
    from_hex_array::<N>(text).ok_or_else(|| Error::InvalidId {
        what,
        value: text.to_owned(),
        reason: "not hexadecimal",
    })
}

/// Deserialises an id from a string, borrowed when the format allows (no `String` per id).
fn deserialize_id<'de, D: Deserializer<'de>, T: FromStr<Err = Error>>(
    d: D,
    expecting: &'static str,
) -> Result<T, D::Error> {
    struct Visitor<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = Error>> serde::de::Visitor<'_> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(Visitor(expecting, std::marker::PhantomData))
}

/// The id of a blob: a 32-byte keyed hash of the blob's plaintext (see `docs/format.md`).
/// Equal plaintexts in one repository have equal ids, which is what deduplicates blocks.
/// Written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// Wraps raw id bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobId(bytes)
    }

    /// The raw id bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as 64 hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl FromStr for BlobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_fixed::<32>("blob id", s).map(BlobId)
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hex_into(&self.0, &mut [0u8; 64]))
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_id(d, "a blob id (64 hex digits)")
    }
}

/// The id of a backup (and of its manifest): 16 random bytes written as 32 lower-case hex
/// digits. The caller that creates a backup chooses the bytes (from a CSPRNG).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId([u8; 16]);

impl BackupId {
    /// Wraps raw id bytes (use 16 random bytes for a new backup).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        BackupId(bytes)
    }

    /// The raw id bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as 32 hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupId({})", self.to_hex())
    }
}

impl FromStr for BackupId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_fixed::<16>("backup id", s).map(BackupId)
    }
}

impl Serialize for BackupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hex_into(&self.0, &mut [0u8; 32]))
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_id(d, "a backup id (32 hex digits)")
    }
}

/// Serde helper: `Vec<u8>` as a hex string (used for binary tag values).
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text).ok_or_else(|| serde::de::Error::custom("invalid hex string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_hex_round_trip_and_rejects_bad_text() {
        let id = BlobId::from_bytes([0xab; 32]);
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("ab".parse::<BlobId>().is_err());
        assert!("zz".repeat(32).parse::<BlobId>().is_err());
        let id = BackupId::from_bytes([1; 16]);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", "01".repeat(16))
        );
        assert!(serde_json::from_str::<BackupId>("\"0g\"").is_err());
    }

    #[test]
    fn ids_deserialise_from_borrowed_and_owned_strings() {
        let id = BlobId::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        // Borrowed (from a slice) and owned (from a reader, or an escaped string).
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
        assert_eq!(
            serde_json::from_reader::<_, BlobId>(json.as_bytes()).unwrap(),
            id
        );
        let escaped = format!(
            "\"\\u00{:02x}{}\"",
            id.to_hex().as_bytes()[0],
            &id.to_hex()[1..]
        );
        assert_eq!(serde_json::from_str::<BlobId>(&escaped).unwrap(), id);
        // Upper case is accepted, as by FromStr.
        let upper = format!("\"{}\"", id.to_hex().to_uppercase());
        assert_eq!(serde_json::from_str::<BlobId>(&upper).unwrap(), id);
        assert!(serde_json::from_str::<BlobId>("\"ab\"").is_err());
        assert!(serde_json::from_str::<BlobId>("7").is_err());
        let b = BackupId::from_bytes([0xfe; 16]);
        assert_eq!(
            serde_json::from_str::<BackupId>(&serde_json::to_string(&b).unwrap()).unwrap(),
            b
        );
    }

    proptest::proptest! {
        #[test]
        fn from_hex_array_agrees_with_from_hex(bytes in proptest::array::uniform16(proptest::num::u8::ANY), upper: bool) {
            let mut text = to_hex(&bytes);
            if upper {
                text = text.to_uppercase();
            }
            proptest::prop_assert_eq!(from_hex_array::<16>(&text), Some(bytes));
            proptest::prop_assert_eq!(from_hex(&text), Some(bytes.to_vec()));
            let mut buf = [0u8; 32];
            let expected = to_hex(&bytes);
            proptest::prop_assert_eq!(hex_into(&bytes, &mut buf), expected.as_str());
            proptest::prop_assert_eq!(from_hex_array::<15>(&text), None);
        }

        #[test]
        fn from_hex_array_rejects_what_from_hex_rejects(text in "[0-9a-gA-G]{32}") {
            proptest::prop_assert_eq!(
                from_hex_array::<16>(&text).map(|a| a.to_vec()),
                from_hex(&text)
            );
        }

        /// Against a decoder built on the standard library's digit test and radix parse
        /// (not on the lookup table): every ASCII byte, hex digits mostly.
        #[test]
        fn hex_decoding_agrees_with_std(
            chars in proptest::collection::vec(
                proptest::prop_oneof![3 => "[0-9a-fA-F]", 1 => "[\\x00-\\x7f]"],
                32,
            )
        ) {
            let text = chars.concat();
            let reference: Option<Vec<u8>> = text
                .as_bytes()
                .chunks(2)
                .map(|p| {
                    p.iter()
                        .all(u8::is_ascii_hexdigit)
                        .then(|| std::str::from_utf8(p).ok())
                        .flatten()
                        .and_then(|d| u8::from_str_radix(d, 16).ok())
                })
                .collect();
            proptest::prop_assert_eq!(from_hex(&text), reference.clone());
            proptest::prop_assert_eq!(from_hex_array::<16>(&text).map(|a| a.to_vec()), reference);
        }
    }
}
