//! The vnode WAL directory writer: `vnode.json`, `wal/meta-ver<N>`, `<firstVer>.log/.idx`
//! segments, rotation and purge, as `docs/wal-format.md` describes TDengine's `walWrite.c` and
//! `walMeta.c` doing it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::{encode::crc32c, msg::Msg};

/// `WAL_MAGIC`.
pub const WAL_MAGIC: u64 = 0xFAFB_FCFD_F4F3_F2F1;
/// Size of `SWalCkHead`.
pub const HEAD_LEN: usize = 56;

/// Options of a vnode WAL (default: no rotation, first version 0, not encrypted, ms).
#[derive(Debug, Clone, Default)]
pub struct VnodeOptions {
    /// Roll to a new segment before a write once the current one exceeds this many bytes
    /// (`segSize`; 0 = never).
    pub seg_size: u64,
    /// Version of the first record.
    pub first_version: i64,
    /// Mark the WAL SM4-encrypted in `vnode.json` and pad bodies to 16 bytes (the bytes are
    /// scrambled, not really encrypted).
    pub encrypted: bool,
    /// Database precision code in `vnode.json` (0 ms, 1 µs, 2 ns).
    pub precision: i32,
}

#[derive(Debug, Clone)]
struct FileInfo {
    first_ver: i64,
    last_ver: i64,
    create_ts: i64,
    close_ts: i64,
    file_size: i64,
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLocation {
    /// The `.log` file.
    pub path: PathBuf,
    /// Byte offset of the record head.
    pub offset: u64,
    /// Bytes of head + stored body.
    pub len: u64,
}

/// A record written only in part (a write in progress).
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    written: usize,
    version: i64,
    msg_len: i64,
}

/// Writes one vnode's WAL directory.
#[derive(Debug)]
pub struct VnodeWal {
    vnode_dir: PathBuf,
    wal_dir: PathBuf,
    vg_id: i32,
    opts: VnodeOptions,
    files: Vec<FileInfo>,
    first_ver: i64,
    last_ver: i64,
    meta_n: Option<i64>,
    log: Option<File>,
    idx: Option<File>,
    locations: Vec<(i64, RecordLocation)>,
    pending: Option<Pending>,
    clock: i64,
}

impl VnodeWal {
    /// Creates `<data_dir>/vnode/vnode<vg_id>/` with `vnode.json` (database `1.<db>`) and an
    /// empty `wal/` with its first meta file.
    pub fn create(data_dir: &Path, vg_id: i32, db: &str, opts: VnodeOptions) -> io::Result<Self> {
        let vnode_dir = data_dir.join("vnode").join(format!("vnode{vg_id}"));
        let wal_dir = vnode_dir.join("wal");
        fs::create_dir_all(&wal_dir)?;
        let info = serde_json::json!({
            "config": {
                "vgId": vg_id.to_string(),
                "dbname": format!("1.{db}"),
                "dbId": "1234",
                "precision": opts.precision.to_string(),
                "wal.vgId": vg_id.to_string(),
                "wal.level": "1",
                "wal.segSize": opts.seg_size.to_string(),
                "wal.encryptAlgorithm": if opts.encrypted { "1" } else { "0" },
            },
            "state": {"committed": "-1", "commitID": "0", "commitTerm": "0"}
        });
        fs::write(
            vnode_dir.join("vnode.json"),
            serde_json::to_vec_pretty(&info)?,
        )?;
        let mut w = VnodeWal {
            vnode_dir,
            wal_dir,
            vg_id,
            first_ver: -1,
            last_ver: opts.first_version - 1,
            opts,
            files: Vec::new(),
            meta_n: None,
            log: None,
            idx: None,
            locations: Vec::new(),
            pending: None,
            clock: 1_700_000_000,
        };
        w.save_meta()?;
        Ok(w)
    }

    /// The vnode directory (`…/vnode/vnode<N>`).
    pub fn vnode_dir(&self) -> &Path {
        &self.vnode_dir
    }

    /// The WAL directory (`…/vnode/vnode<N>/wal`).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// The vgroup id.
    pub fn vg_id(&self) -> i32 {
        self.vg_id
    }

    /// Version of the last complete record (`first_version - 1` before any).
    pub fn last_version(&self) -> i64 {
        self.last_ver
    }

    /// First version on disk (`-1` while the WAL never had a record).
    pub fn first_version(&self) -> i64 {
        self.first_ver
    }

    /// First versions of the segments on disk, in order.
    pub fn segments(&self) -> Vec<i64> {
        self.files.iter().map(|f| f.first_ver).collect()
    }

    /// Where the record of `version` was written (while its segment exists).
    pub fn location(&self, version: i64) -> Option<RecordLocation> {
        self.locations
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, l)| l.clone())
    }

    fn log_path(&self, first: i64) -> PathBuf {
        self.wal_dir.join(format!("{first:020}.log"))
    }

    fn idx_path(&self, first: i64) -> PathBuf {
        self.wal_dir.join(format!("{first:020}.idx"))
    }

    /// Appends `msg` as the next version and returns that version. Rolls first when the
    /// current segment exceeds `seg_size` (or there is none), as `walCheckAndRoll` does.
    pub fn append(&mut self, msg: &Msg) -> io::Result<i64> {
        let body = msg.encode(self.vg_id);
        self.append_raw(msg.msg_type(), &body)
    }

    /// Appends a record with a raw body.
    pub fn append_raw(&mut self, msg_type: i16, body: &[u8]) -> io::Result<i64> {
        let (bytes, version) = self.prepare(msg_type, body)?;
        self.write_record(&bytes, bytes.len())?;
        self.finish_record(version, bytes.len() as i64);
        Ok(version)
    }

    /// Writes the index entry and only the first `written` bytes of the record for `msg` (a
    /// write in progress). [`finish_pending`](Self::finish_pending) writes the rest.
    pub fn append_partial(&mut self, msg: &Msg, written: usize) -> io::Result<i64> {
        let body = msg.encode(self.vg_id);
        let (bytes, version) = self.prepare(msg.msg_type(), &body)?;
        let written = written.min(bytes.len());
        self.write_record(&bytes, written)?;
        let msg_len = bytes.len() as i64;
        self.pending = Some(Pending {
            bytes,
            written,
            version,
            msg_len,
        });
        Ok(version)
    }

    /// Completes a record started with [`append_partial`](Self::append_partial).
    pub fn finish_pending(&mut self) -> io::Result<()> {
        if let Some(p) = self.pending.take() {
            let log = self
                .log
                .as_mut()
                .ok_or_else(|| io::Error::other("no open segment"))?;
            log.write_all(&p.bytes[p.written..])?;
            log.flush()?;
            self.finish_record(p.version, p.msg_len);
        }
        Ok(())
    }

    fn prepare(&mut self, msg_type: i16, body: &[u8]) -> io::Result<(Vec<u8>, i64)> {
        if self.pending.is_some() {
            return Err(io::Error::other("a partial record is pending"));
        }
        let need_roll = match self.files.last() {
            None => true,
            Some(f) => self.opts.seg_size > 0 && f.file_size as u64 > self.opts.seg_size,
        };
        if need_roll || self.log.is_none() {
            self.roll()?;
        }
        let version = self.last_ver + 1;
        self.clock += 1;
        let mut cont = Vec::with_capacity(40);
        cont.extend_from_slice(&version.to_le_bytes());
        cont.extend_from_slice(&(self.clock * 1_000_000).to_le_bytes()); // ingestTs, µs
        cont.extend_from_slice(&(body.len() as i32).to_le_bytes());
        cont.extend_from_slice(&msg_type.to_le_bytes());
        cont.push(0); // protoVer
        cont.push(0); // isWeek
        cont.extend_from_slice(&(version as u64).to_le_bytes()); // seqNum
        cont.extend_from_slice(&1u64.to_le_bytes()); // term
        let mut bytes = Vec::with_capacity(HEAD_LEN + body.len() + 16);
        bytes.extend_from_slice(&WAL_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&crc32c(&cont).to_le_bytes());
        bytes.extend_from_slice(&crc32c(body).to_le_bytes());
        bytes.extend_from_slice(&cont);
        if self.opts.encrypted {
            let padded = body.len().div_ceil(16) * 16;
            let mut b = body.to_vec();
            b.resize(padded, 0);
            bytes.extend(b.iter().map(|x| x ^ 0x5A));
        } else {
            bytes.extend_from_slice(body);
        }
        Ok((bytes, version))
    }

    fn write_record(&mut self, bytes: &[u8], written: usize) -> io::Result<()> {
        let offset = self.files.last().map_or(0, |f| f.file_size);
        let version = self.last_ver + 1;
        // walWriteImpl: the index entry first, then the head and body.
        let idx = self
            .idx
            .as_mut()
            .ok_or_else(|| io::Error::other("no open index"))?;
        idx.write_all(&version.to_le_bytes())?;
        idx.write_all(&offset.to_le_bytes())?;
        idx.flush()?;
        let log = self
            .log
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        log.write_all(&bytes[..written])?;
        log.flush()?;
        Ok(())
    }

    fn finish_record(&mut self, version: i64, len: i64) {
        let path = self.log_path(self.files.last().map_or(0, |f| f.first_ver));
        let Some(f) = self.files.last_mut() else {
            return;
        };
        self.locations.push((
            version,
            RecordLocation {
                path,
                offset: f.file_size as u64,
                len: len as u64,
            },
        ));
        f.file_size += len;
        f.last_ver = version;
        if self.first_ver < 0 {
            self.first_ver = version;
        }
        self.last_ver = version;
    }

    /// Closes the current segment and opens `<lastVer+1>.log/.idx`, then saves the meta
    /// (`walRollImpl`).
    pub fn roll(&mut self) -> io::Result<()> {
        if self.log.is_some() && self.files.last().is_some_and(|f| f.file_size == 0) {
            return Ok(()); // already a fresh segment
        }
        self.clock += 1;
        if let Some(f) = self.files.last_mut() {
            f.last_ver = self.last_ver;
            f.close_ts = self.clock;
        }
        let first = self.last_ver + 1;
        let open = |p: PathBuf| OpenOptions::new().create(true).append(true).open(p);
        self.idx = Some(open(self.idx_path(first))?);
        self.log = Some(open(self.log_path(first))?);
        self.files.push(FileInfo {
            first_ver: first,
            last_ver: -1,
            create_ts: self.clock,
            close_ts: -1,
            file_size: 0,
        });
        self.save_meta()
    }

    /// Deletes every closed segment whose last version is `<= version`, saving the meta
    /// first (`walEndSnapshot`). The open segment is never deleted: [`roll`](Self::roll)
    /// first to purge everything.
    pub fn purge_through(&mut self, version: i64) -> io::Result<()> {
        let open = self.files.len().saturating_sub(1);
        let n = self.files[..open]
            .iter()
            .take_while(|f| f.last_ver <= version)
            .count();
        let gone: Vec<FileInfo> = self.files.drain(..n).collect();
        self.first_ver = match self.files.first() {
            Some(f) => f.first_ver,
            None => self.last_ver + 1,
        };
        self.save_meta()?;
        for f in &gone {
            let log = self.log_path(f.first_ver);
            fs::remove_file(&log)?;
            fs::remove_file(self.idx_path(f.first_ver))?;
            self.locations.retain(|(_, l)| l.path != log);
        }
        Ok(())
    }

    /// Writes `meta-ver<N+1>` through `meta-ver.tmp` and removes `meta-ver<N>` (`walSaveMeta`).
    pub fn save_meta(&mut self) -> io::Result<()> {
        let s = |v: i64| serde_json::Value::String(v.to_string());
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "firstVer": s(f.first_ver),
                    "lastVer": s(f.last_ver),
                    "createTs": s(f.create_ts),
                    "closeTs": s(f.close_ts),
                    "fileSize": s(f.file_size),
                })
            })
            .collect();
        let meta = serde_json::json!({
            "meta": {
                "firstVer": s(self.first_ver),
                "snapshotVer": s(-1),
                "commitVer": s(self.last_ver),
                "lastVer": s(self.last_ver),
            },
            "files": files,
        });
        let tmp = self.wal_dir.join("meta-ver.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(&meta)?)?;
            f.sync_all()?;
        }
        let next = self.meta_n.map_or(0, |n| n + 1);
        fs::rename(&tmp, self.wal_dir.join(format!("meta-ver{next}")))?;
        if let Some(n) = self.meta_n {
            fs::remove_file(self.wal_dir.join(format!("meta-ver{n}")))?;
        }
        self.meta_n = Some(next);
        Ok(())
    }
}
