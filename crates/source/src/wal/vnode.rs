//! One vnode's WAL directory: discovery (`vnode.json`), the `meta-ver<N>` file, segments and
//! records with their CRC-32C checks (`docs/wal-format.md`; TDengine commit
//! `a4874a8c64bbcfd0ef9865bcaa4df7951a9f9557`: `include/libs/wal/wal.h`,
//! `source/libs/wal/src/walMeta.c`, `walWrite.c`, `walRead.c`, `inc/walInt.h`).

use std::{
    fs::{self, File},
    io::{BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use super::error::WalError;

/// `WAL_MAGIC`.
const WAL_MAGIC: u64 = 0xFAFB_FCFD_F4F3_F2F1;
/// `sizeof(SWalCkHead)`.
pub(crate) const HEAD_LEN: u64 = 56;
/// `WAL_PROTO_VER`.
const WAL_PROTO_VER: i8 = 0;
/// `sizeof(SWalIdxEntry)`.
const IDX_ENTRY: u64 = 16;

/// A vnode of the feed's database.
#[derive(Debug, Clone)]
pub(crate) struct Vnode {
    pub(crate) vg_id: i32,
    pub(crate) wal_dir: PathBuf,
}

/// Finds the vnodes of `database` under `path` (TDengine's dataDir, its `vnode/` directory,
/// or one `vnode<N>` directory). Refuses encrypted WALs.
pub(crate) fn discover(path: &Path, database: &str) -> Result<Vec<Vnode>, WalError> {
    let dirs: Vec<PathBuf> = if path.join("vnode.json").is_file() {
        vec![path.to_path_buf()]
    } else {
        let root = if path.join("vnode").is_dir() {
            path.join("vnode")
        } else {
            path.to_path_buf()
        };
        let mut v = Vec::new();
        let rd = fs::read_dir(&root).map_err(|e| WalError::io("list", &root, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| WalError::io("list", &root, e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name
                .strip_prefix("vnode")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && ent.path().join("vnode.json").is_file()
            {
                v.push(ent.path());
            }
        }
        v
    };
    let mut out = Vec::new();
    let mut found = Vec::new();
    for dir in dirs {
        let info = dir.join("vnode.json");
        let text = fs::read_to_string(&info).map_err(|e| WalError::io("read", &info, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| WalError::bad_file(&info, format!("not JSON: {e}")))?;
        let cfg = &json["config"];
        let field = |k: &str| -> Result<String, WalError> {
            match &cfg[k] {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                _ => Err(WalError::bad_file(
                    &info,
                    format!("config.{k} is missing (not a TDengine 3.x vnode.json?)"),
                )),
            }
        };
        // dbname is "<acctId>.<db>" (vmHandle.c copies SCreateVnodeReq.db).
        let dbname = field("dbname")?;
        let db = dbname.split_once('.').map_or(dbname.as_str(), |(_, d)| d);
        if db != database {
            found.push(db.to_string());
            continue;
        }
        let vg_id: i32 = field("vgId")?
            .parse()
            .map_err(|_| WalError::bad_file(&info, "config.vgId is not an integer"))?;
        let algorithm: i64 = match field("wal.encryptAlgorithm") {
            Ok(s) => s.parse().map_err(|_| {
                WalError::bad_file(&info, "config.wal.encryptAlgorithm is not an integer")
            })?,
            Err(_) => 0, // older releases had no encryption
        };
        if algorithm != 0 {
            return Err(WalError::Encrypted {
                path: dir,
                algorithm,
            });
        }
        out.push(Vnode {
            vg_id,
            wal_dir: dir.join("wal"),
        });
    }
    if out.is_empty() {
        found.sort();
        found.dedup();
        return Err(WalError::NoVnodes {
            path: path.to_path_buf(),
            database: database.to_string(),
            found: if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        });
    }
    out.sort_by_key(|v| v.vg_id);
    Ok(out)
}

/// The parts of `meta-ver<N>` the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) first_ver: i64,
    pub(crate) last_ver: i64,
}

/// Reads the current (highest N) `meta-ver<N>`; `None` when the WAL has none yet.
pub(crate) fn read_meta(wal_dir: &Path) -> Result<Option<Meta>, WalError> {
    // walSaveMeta renames a new meta in, then deletes the old one: a meta listed can be gone
    // when it is opened. Try again a few times.
    for _ in 0..3 {
        if let Some(m) = try_read_meta(wal_dir)? {
            return Ok(m);
        }
    }
    Err(WalError::bad_file(
        wal_dir,
        "the meta-ver file kept disappearing while being read",
    ))
}

/// `Ok(None)`: the meta file vanished between listing and reading.
fn try_read_meta(wal_dir: &Path) -> Result<Option<Option<Meta>>, WalError> {
    let mut best: Option<(i64, PathBuf)> = None;
    let rd = match fs::read_dir(wal_dir) {
        Ok(rd) => rd,
        Err(e) => return Err(WalError::io("list", wal_dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("list", wal_dir, e))?;
        let name = ent.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("meta-ver"))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, ent.path()));
        }
    }
    let Some((_, path)) = best else {
        return Ok(Some(None));
    };
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("read", &path, e)),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| WalError::bad_file(&path, format!("not JSON: {e}")))?;
    // walMetaSerialize writes every number as a decimal string.
    let num = |k: &str| -> Result<i64, WalError> {
        json["meta"][k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                WalError::bad_file(
                    &path,
                    format!(
                        "meta.{k} is missing or not a decimal string (unknown WAL meta format)"
                    ),
                )
            })
    };
    if !json["files"].is_array() {
        return Err(WalError::bad_file(&path, "files is not an array"));
    }
    Ok(Some(Some(Meta {
        first_ver: num("firstVer")?,
        last_ver: num("lastVer")?,
    })))
}

/// The segments on disk: `(firstVer, .log path)`, in version order.
pub(crate) fn segments(wal_dir: &Path) -> Result<Vec<(i64, PathBuf)>, WalError> {
    let mut v = Vec::new();
    let rd = fs::read_dir(wal_dir).map_err(|e| WalError::io("list", wal_dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("list", wal_dir, e))?;
        let name = ent.file_name();
        let Some(stem) = name.to_str().and_then(|s| s.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(first) = stem.parse::<i64>() {
            v.push((first, ent.path()));
        }
    }
    v.sort();
    Ok(v)
}

fn idx_path(log: &Path) -> PathBuf {
    log.with_extension("idx")
}

/// A record read from a segment.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) version: i64,
    pub(crate) msg_type: i16,
    pub(crate) body: Vec<u8>,
}

/// What reading at an offset found.
#[derive(Debug)]
pub(crate) enum Read1 {
    /// A complete, checked record.
    Record(Record),
    /// End of the data written so far (or a record still being written).
    End,
}

/// A sequential reader of one `.log` segment.
#[derive(Debug)]
pub(crate) struct SegReader {
    pub(crate) first: i64,
    pub(crate) path: PathBuf,
    file: BufReader<File>,
    /// Offset of the next record; the file position is always here.
    pub(crate) offset: u64,
    /// File length last seen (stat again only when a record seems to pass it).
    known_len: u64,
}

impl SegReader {
    pub(crate) fn open(first: i64, path: PathBuf, offset: u64) -> Result<SegReader, WalError> {
        let mut f = File::open(&path).map_err(|e| WalError::io("open", &path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| WalError::io("seek in", &path, e))?;
        Ok(SegReader {
            first,
            path,
            file: BufReader::with_capacity(256 * 1024, f),
            offset,
            known_len: 0,
        })
    }

    /// Whether the file holds at least `end` bytes (the WAL only grows by appends).
    fn has(&mut self, end: u64) -> Result<bool, WalError> {
        if end > self.known_len {
            self.known_len = self
                .file
                .get_ref()
                .metadata()
                .map(|m| m.len())
                .map_err(|e| WalError::io("stat", &self.path, e))?;
        }
        Ok(end <= self.known_len)
    }

    /// Reads the record at the current offset, which must have version `expect` (when
    /// given). Stops (`End`) before a record that is not completely written yet.
    pub(crate) fn next(&mut self, expect: Option<i64>) -> Result<Read1, WalError> {
        if !self.has(self.offset + HEAD_LEN)? {
            return Ok(Read1::End);
        }
        let mut head = [0u8; HEAD_LEN as usize];
        self.read_exact(&mut head)?;
        let le64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&head[o..o + 8]);
            a
        };
        let le32 = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&head[o..o + 4]);
            a
        };
        let magic = u64::from_le_bytes(le64(0));
        let (at_path, at) = (self.path.clone(), self.offset);
        let corrupt = move |reason: String| WalError::Corrupt {
            path: at_path.clone(),
            offset: at,
            reason,
        };
        if magic != WAL_MAGIC {
            return Err(corrupt(format!(
                "bad magic {magic:#018x} (expected {WAL_MAGIC:#018x})"
            )));
        }
        let ck_head = u32::from_le_bytes(le32(8));
        let ck_body = u32::from_le_bytes(le32(12));
        // walCalcHeadCksum: CRC-32C of SWalCont, bytes 16..56.
        let actual = crc32c::crc32c(&head[16..]);
        if actual != ck_head {
            return Err(corrupt(format!(
                "head checksum mismatch (stored {ck_head:#010x}, computed {actual:#010x})"
            )));
        }
        let version = i64::from_le_bytes(le64(16));
        let body_len = i32::from_le_bytes(le32(32));
        let msg_type = i16::from_le_bytes([head[36], head[37]]);
        // Byte 38: `int8_t protoVer` in 3.3.x; newer TDengine (include/libs/wal/wal.h on
        // main) splits it into `uint8_t flags`: bit 7 isTxn (a transaction entry whose body
        // starts with a 16-byte `[txnExtFlags][txnId]` prefix), bits 0–6 protoVer. Both
        // layouts agree on a plain entry (0); anything else is refused, never guessed.
        let flags = head[38];
        if flags & 0x80 != 0 {
            return Err(WalError::Unsupported {
                path: self.path.clone(),
                offset: self.offset,
                reason: format!(
                    "record {} is a transaction entry (flags {flags:#04x}: bit 7 isTxn, a \
                     TDengine newer than 3.4 with transaction WAL files); its body layout is \
                     not supported",
                    i64::from_le_bytes(le64(16))
                ),
            });
        }
        let proto = (flags & 0x7F) as i8;
        if proto != WAL_PROTO_VER {
            return Err(WalError::Unsupported {
                path: self.path.clone(),
                offset: self.offset,
                reason: format!("record protoVer {proto} (only {WAL_PROTO_VER} is known)"),
            });
        }
        if let Some(e) = expect.filter(|&e| e != version) {
            return Err(corrupt(format!(
                "version {version} where version {e} was expected (WAL versions are consecutive)"
            )));
        }
        let Ok(body_len) = u64::try_from(body_len) else {
            return Err(corrupt(format!("negative body length {body_len}")));
        };
        if !self.has(self.offset + HEAD_LEN + body_len)? {
            // A write in progress: leave the file position at the record head.
            self.file
                .seek_relative(-(HEAD_LEN as i64))
                .map_err(|e| WalError::io("seek in", &self.path, e))?;
            return Ok(Read1::End);
        }
        let mut body = vec![0u8; body_len as usize];
        self.read_exact(&mut body)?;
        let actual = crc32c::crc32c(&body);
        if actual != ck_body {
            let e = corrupt(format!(
                "body checksum mismatch for version {version} (stored {ck_body:#010x}, computed {actual:#010x})"
            ));
            // Leave the position at the record for a later attempt.
            self.file
                .seek(SeekFrom::Start(self.offset))
                .map_err(|e| WalError::io("seek in", &self.path, e))?;
            return Err(e);
        }
        let n = HEAD_LEN + body_len;
        self.offset += n;
        Ok(Read1::Record(Record {
            version,
            msg_type,
            body,
        }))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), WalError> {
        self.file
            .read_exact(buf)
            .map_err(|e| WalError::io("read", &self.path, e))
    }

    /// Positions the reader at `version` using the `.idx` entry when it is right, else by
    /// scanning from the segment start. `Ok(false)` when the segment does not (yet) hold it.
    pub(crate) fn seek_version(&mut self, version: i64) -> Result<bool, WalError> {
        if let Some(off) = idx_offset(&self.path, self.first, version)? {
            self.reposition(off)?;
            if self.peek_version()? == Some(version) {
                return Ok(true);
            }
        }
        self.reposition(0)?;
        let mut expect = self.first;
        while expect < version {
            match self.next(Some(expect))? {
                Read1::Record(_) => expect += 1,
                Read1::End => return Ok(false),
            }
        }
        Ok(true)
    }

    fn reposition(&mut self, offset: u64) -> Result<(), WalError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| WalError::io("seek in", &self.path, e))?;
        self.offset = offset;
        Ok(())
    }

    /// The version of the complete record at the current offset, without moving.
    fn peek_version(&mut self) -> Result<Option<i64>, WalError> {
        let at = self.offset;
        let v = match self.next(None) {
            Ok(Read1::Record(r)) => Some(r.version),
            Ok(Read1::End) | Err(WalError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        self.reposition(at)?;
        Ok(v)
    }

    /// The version after the last complete record, scanning from the last index entry that
    /// checks out (or from the start).
    pub(crate) fn end_version(&mut self) -> Result<i64, WalError> {
        let idx = idx_path(&self.path);
        let entries = fs::metadata(&idx).map_or(0, |m| m.len() / IDX_ENTRY);
        // The index is written before the record: try the last entries, newest first.
        let mut start = (0, self.first);
        for k in (entries.saturating_sub(3)..entries).rev() {
            let v = self.first + k as i64;
            if let Some(off) = idx_offset(&self.path, self.first, v)? {
                self.reposition(off)?;
                if self.peek_version()? == Some(v) {
                    start = (off, v);
                    break;
                }
            }
        }
        self.reposition(start.0)?;
        let mut expect = start.1;
        loop {
            match self.next(Some(expect))? {
                Read1::Record(_) => expect += 1,
                Read1::End => return Ok(expect),
            }
        }
    }
}

/// The log offset the `.idx` entry of `version` gives, when it exists and names that version.
fn idx_offset(log: &Path, first: i64, version: i64) -> Result<Option<u64>, WalError> {
    let path = idx_path(log);
    let Ok(k) = u64::try_from(version - first) else {
        return Ok(None);
    };
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("open", &path, e)),
    };
    let len = f
        .metadata()
        .map_err(|e| WalError::io("stat", &path, e))?
        .len();
    if (k + 1) * IDX_ENTRY > len {
        return Ok(None);
    }
    let mut e = [0u8; IDX_ENTRY as usize];
    f.seek(SeekFrom::Start(k * IDX_ENTRY))
        .and_then(|_| f.read_exact(&mut e))
        .map_err(|err| WalError::io("read", &path, err))?;
    let mut v = [0u8; 8];
    v.copy_from_slice(&e[..8]);
    let mut o = [0u8; 8];
    o.copy_from_slice(&e[8..]);
    let (ver, off) = (i64::from_le_bytes(v), i64::from_le_bytes(o));
    Ok((ver == version)
        .then_some(off)
        .and_then(|o| u64::try_from(o).ok()))
}
