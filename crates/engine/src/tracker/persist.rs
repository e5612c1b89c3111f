//! Persisting the tracker: one checksummed file, replaced atomically.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "TBTRACK\0" (8) | u32 version (1) | u64 body_len | body | BLAKE3(body) (32)
//! body:
//!   u64 bucket width in seconds | u8 precision (0 ms, 1 us, 2 ns)
//!   u8 inconsistent (0/1) [| str reason]
//!   u32 n positions, each: str feed key | i64 position
//!   u8 has last backup (0/1) [| str backup id in hex]
//!   u32 n tables, each: str name | u8 changes (bit 0 created, 1 dropped, 2 schema, 3 tags)
//!                       | bitmap dirty | bitmap deleted | bitmap stored
//! str    = u32 byte length | UTF-8 bytes
//! bitmap = u64 byte length | roaring treemap in its portable serialization
//! ```
//!
//! Tables are written in ordinal order, so ordinals survive a reload. A backup still running
//! when the state is saved is folded back in: its changes are saved as changes, because the
//! backup is not durable yet.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use roaring::RoaringTreemap;
use taosbackup_core::{BucketWidth, Precision};

use super::{TableBits, TableChanges, Tracker};
use crate::error::TrackerError;

const MAGIC: &[u8; 8] = b"TBTRACK\0";
const VERSION: u32 = 2;

fn precision_code(p: Precision) -> u8 {
    match p {
        Precision::Ms => 0,
        Precision::Us => 1,
        Precision::Ns => 2,
    }
}

fn precision_of_code(code: u8) -> Option<Precision> {
    match code {
        0 => Some(Precision::Ms),
        1 => Some(Precision::Us),
        2 => Some(Precision::Ns),
        _ => None,
    }
}

/// Writes encoded tracker state `bytes` to `path` atomically: a temporary file in the same
/// directory, fsynced, renamed over `path`, then the directory fsynced. The file is created
/// 0600.
pub(crate) fn write_state(path: &Path, bytes: &[u8]) -> Result<(), TrackerError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| TrackerError::Io {
            path: p,
            op,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io("create", &tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io("write", &tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io("rename", path)(e));
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", &dir))?;
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bitmap(out: &mut Vec<u8>, b: &RoaringTreemap) {
    out.extend_from_slice(&(b.serialized_size() as u64).to_le_bytes());
    // Writing into a Vec cannot fail.
    let _ = b.serialize_into(&mut *out);
}

impl Tracker {
    /// Encodes the state, pending backup folded in.
    pub(crate) fn encode(&self) -> Vec<u8> {
        if self.pending.is_none() {
            // The usual case (saved after a backup committed): nothing to fold in, so no
            // copy of every table's bitmaps.
            return self.encode_folded();
        }
        let mut state = self.clone();
        if let Some(p) = state.pending.take() {
            state.restore(p);
        }
        state.encode_folded()
    }

    /// Encodes the state of a tracker without a pending backup.
    fn encode_folded(&self) -> Vec<u8> {
        let state = self;
        // The header, its body length filled in at the end: the body is written in place
        // (the state of 10,000 tables is about 800 KB; no second copy of it).
        const HEADER: usize = MAGIC.len() + 4 + 8;
        let mut body = Vec::with_capacity(HEADER + 64 * state.names.len() + 256);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&state.width.seconds().to_le_bytes());
        body.push(precision_code(state.precision));
        match &state.inconsistent {
            Some(r) => {
                body.push(1);
                put_str(&mut body, r);
            }
            None => body.push(0),
        }
        body.extend_from_slice(&(state.positions.len() as u32).to_le_bytes());
        for (k, v) in &state.positions {
            put_str(&mut body, k);
            body.extend_from_slice(&v.to_le_bytes());
        }
        match &state.last_backup {
            Some(b) => {
                body.push(1);
                put_str(&mut body, b);
            }
            None => body.push(0),
        }
        body.extend_from_slice(&(state.names.len() as u32).to_le_bytes());
        for (name, bits) in state.names.iter().zip(&state.tables) {
            put_str(&mut body, name);
            let c = bits.changes;
            body.push(
                c.created as u8
                    | (c.dropped as u8) << 1
                    | (c.schema_changed as u8) << 2
                    | (c.tags_changed as u8) << 3,
            );
            put_bitmap(&mut body, &bits.dirty);
            put_bitmap(&mut body, &bits.deleted);
            put_bitmap(&mut body, &bits.stored);
        }
        let len = (body.len() - HEADER) as u64;
        body[HEADER - 8..HEADER].copy_from_slice(&len.to_le_bytes());
        let hash = blake3::hash(&body[HEADER..]);
        body.extend_from_slice(hash.as_bytes());
        body
    }

    /// Writes the state to `path` atomically: a temporary file in the same directory,
    /// fsynced, renamed over `path`, then the directory fsynced. The file is created 0600.
    pub fn save(&self, path: &Path) -> Result<(), TrackerError> {
        write_state(path, &self.encode())
    }

    /// Loads the state saved at `path` for a repository with bucket width `width`. The
    /// precision is the one saved in the file: what its buckets were computed with.
    ///
    /// A missing file is not an error: the result is a fresh tracker marked inconsistent
    /// (it cannot know what happened before), so the next backup is a full one; its
    /// precision is milliseconds until that backup sets the database's
    /// ([`Tracker::set_precision`]). A damaged file is an error that names it; callers that
    /// prefer to carry on use [`Tracker::load_or_inconsistent`].
    pub fn load(path: &Path, width: BucketWidth) -> Result<Tracker, TrackerError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut t = Tracker::new(width, Precision::Ms);
                t.mark_inconsistent(format!("no tracker state at {}", path.display()));
                return Ok(t);
            }
            Err(source) => {
                return Err(TrackerError::Io {
                    path: path.to_path_buf(),
                    op: "read",
                    source,
                });
            }
        };
        let corrupt = |reason: String| TrackerError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader {
            buf: &bytes,
            pos: 0,
        };
        if r.take(8).map_err(&corrupt)? != MAGIC {
            return Err(corrupt("not a tracker state file (bad magic)".into()));
        }
        let version = r.u32().map_err(&corrupt)?;
        if version != VERSION {
            return Err(corrupt(format!(
                "unsupported version {version} (this build reads {VERSION})"
            )));
        }
        let len = r.u64().map_err(&corrupt)?;
        let body = r
            .take(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(&corrupt)?;
        let sum = r.take(32).map_err(&corrupt)?;
        if r.pos != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        if blake3::hash(body).as_bytes() != sum {
            return Err(corrupt("checksum mismatch".into()));
        }
        decode_body(body, width).map_err(|e| match e {
            Decode::Corrupt(reason) => corrupt(reason),
            Decode::Mismatch(found, expected) => TrackerError::Mismatch {
                path: path.to_path_buf(),
                found,
                expected,
            },
        })
    }

    /// Like [`Tracker::load`], but a damaged file yields a fresh, inconsistent tracker whose
    /// reason names the damage (the next backup is then a full one), instead of an error.
    pub fn load_or_inconsistent(path: &Path, width: BucketWidth) -> Result<Tracker, TrackerError> {
        match Tracker::load(path, width) {
            Err(e @ (TrackerError::Corrupt { .. } | TrackerError::Mismatch { .. })) => {
                let mut t = Tracker::new(width, Precision::Ms);
                t.mark_inconsistent(e.to_string());
                Ok(t)
            }
            other => other,
        }
    }
}

enum Decode {
    Corrupt(String),
    Mismatch(String, String),
}

impl From<String> for Decode {
    fn from(s: String) -> Self {
        Decode::Corrupt(s)
    }
}

fn decode_body(body: &[u8], width: BucketWidth) -> Result<Tracker, Decode> {
    let mut r = Reader { buf: body, pos: 0 };
    let w = r.u64()?;
    let p = r.u8()?;
    let precision =
        precision_of_code(p).ok_or_else(|| Decode::Corrupt(format!("bad precision code {p}")))?;
    if w != width.seconds() {
        return Err(Decode::Mismatch(
            format!("bucket width {w} s"),
            format!("bucket width {} s", width.seconds()),
        ));
    }
    let mut t = Tracker::new(width, precision);
    match r.u8()? {
        0 => {}
        1 => t.inconsistent = Some(r.str()?),
        x => return Err(Decode::Corrupt(format!("bad inconsistency flag {x}"))),
    }
    for _ in 0..r.u32()? {
        let k = r.str()?;
        let v = r.u64()? as i64;
        t.positions.insert(k, v);
    }
    match r.u8()? {
        0 => {}
        1 => t.last_backup = Some(r.str()?),
        x => return Err(Decode::Corrupt(format!("bad last-backup flag {x}"))),
    }
    let n = r.u32()?;
    for _ in 0..n {
        let name = r.str()?;
        if t.ordinals.contains_key(&name) {
            return Err(Decode::Corrupt(format!("table {name:?} listed twice")));
        }
        let c = r.u8()?;
        let bits = TableBits {
            changes: TableChanges {
                created: c & 1 != 0,
                dropped: c & 2 != 0,
                schema_changed: c & 4 != 0,
                tags_changed: c & 8 != 0,
            },
            dirty: r.bitmap()?,
            deleted: r.bitmap()?,
            stored: r.bitmap()?,
        };
        let o = t.ordinal(&name) as usize;
        t.tables[o] = bits;
    }
    if r.pos != body.len() {
        return Err(Decode::Corrupt("trailing bytes in the body".into()));
    }
    Ok(t)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        match self.pos.checked_add(n).filter(|&e| e <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("truncated at byte {} (need {n} more)", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
    fn bitmap(&mut self) -> Result<RoaringTreemap, String> {
        let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
        let bytes = self.take(n)?;
        RoaringTreemap::deserialize_from(bytes).map_err(|e| format!("bad bitmap: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockState, TableChange};
    use taosbackup_core::Bucket;

    fn width() -> BucketWidth {
        BucketWidth::from_seconds(3600).unwrap()
    }

    fn sample() -> Tracker {
        let mut t = Tracker::new(width(), Precision::Us);
        t.mark_rows("a", &[0, 3_600_000_000, -5]);
        t.mark_rows("東京", &[7]);
        t.table_changed("gone", TableChange::Dropped);
        t.set_position("topic/vg2", 42);
        let s = t.snapshot_and_reset();
        t.commit(&s, &[]);
        t.mark_rows("a", &[10]);
        t.mark_deleted("a", 0, 1);
        t.table_changed("b", TableChange::TagsChanged);
        t
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracker.state");
        let t = sample();
        t.save(&path).unwrap();
        let back = Tracker::load(&path, width()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.state("a", Bucket(0)), BlockState::Deleted);
        assert_eq!(back.ordinal_of("東京"), t.ordinal_of("東京"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_pending_backup_is_saved_as_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut t = Tracker::new(width(), Precision::Ms);
        t.mark_rows("a", &[1]);
        t.table_changed("b", TableChange::Dropped);
        let _running = t.snapshot_and_reset();
        t.save(&path).unwrap(); // killed before the backup commits
        let mut back = Tracker::load(&path, width()).unwrap();
        let s = back.snapshot_and_reset();
        assert_eq!(s.dirty_buckets("a"), vec![Bucket(0)]);
        assert!(
            s.changes("b").dropped,
            "a drop seen by an uncommitted backup is not lost"
        );
    }

    #[test]
    fn missing_damaged_and_mismatched_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let t = Tracker::load(&path, width()).unwrap();
        assert!(t.inconsistency().unwrap().contains("no tracker state"));

        sample().save(&path).unwrap();
        let good = fs::read(&path).unwrap();
        for i in [0, 9, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(Tracker::load(&path, width()).is_err(), "flip at {i}");
            let t = Tracker::load_or_inconsistent(&path, width()).unwrap();
            assert!(t.inconsistency().is_some());
        }
        fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(
            Tracker::load(&path, width()),
            Err(TrackerError::Corrupt { .. })
        ));
        fs::write(&path, &good).unwrap();
        // The precision is the file's; another bucket width is a mismatch.
        assert_eq!(
            Tracker::load(&path, width()).unwrap().precision(),
            Precision::Us
        );
        assert!(matches!(
            Tracker::load(&path, BucketWidth::DAY),
            Err(TrackerError::Mismatch { .. })
        ));
    }

    #[test]
    fn hostile_lengths_do_not_allocate_or_panic() {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        fs::write(&path, &b).unwrap();
        assert!(Tracker::load(&path, width()).is_err());
    }
}
