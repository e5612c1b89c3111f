//! The WAL writer against `docs/wal-format.md`, byte by byte (independently of the reader).

use std::{fs, path::Path};

use taosbackup_testkit::walfile::{
    CreateKind, CreateTable, HEAD_LEN, Msg, RowFormat, SubmitTable, TDMT_VND_SUBMIT, VnodeOptions,
    VnodeWal, WAL_MAGIC, crc32c,
};

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "walfile-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn le_i64(b: &[u8], o: usize) -> i64 {
    i64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn meta(wal: &Path) -> (String, serde_json::Value) {
    let mut metas: Vec<String> = fs::read_dir(wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("meta-ver"))
        .collect();
    assert_eq!(metas.len(), 1, "exactly one meta file: {metas:?}");
    let name = metas.remove(0);
    let v = serde_json::from_slice(&fs::read(wal.join(&name)).unwrap()).unwrap();
    (name, v)
}

fn submit(ts: &[i64]) -> Msg {
    Msg::Submit(vec![SubmitTable {
        uid: 77,
        suid: 0,
        format: RowFormat::Rows,
        timestamps: ts.to_vec(),
        auto_create: None,
    }])
}

#[test]
fn records_heads_index_and_meta_follow_the_document() {
    let dir = tempdir();
    let mut w = VnodeWal::create(dir.path(), 5, "db", VnodeOptions::default()).unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(w.vnode_dir().join("vnode.json")).unwrap()).unwrap();
    assert_eq!(info["config"]["dbname"], "1.db");
    assert_eq!(info["config"]["vgId"], "5");
    assert_eq!(info["config"]["wal.encryptAlgorithm"], "0");
    let (name, m) = meta(w.wal_dir());
    assert_eq!(name, "meta-ver0");
    assert_eq!(m["meta"]["firstVer"], "-1");

    let v0 = w.append(&submit(&[1, 2])).unwrap();
    let v1 = w.append(&submit(&[3])).unwrap();
    assert_eq!((v0, v1), (0, 1));
    let log = w.wal_dir().join(format!("{:020}.log", 0));
    let idx = w.wal_dir().join(format!("{:020}.idx", 0));
    let b = fs::read(&log).unwrap();
    let ix = fs::read(&idx).unwrap();
    assert_eq!(ix.len(), 32);
    let mut off = 0usize;
    for (k, v) in [v0, v1].into_iter().enumerate() {
        assert_eq!(le_i64(&ix, k * 16), v);
        assert_eq!(le_i64(&ix, k * 16 + 8), off as i64);
        assert_eq!(
            u64::from_le_bytes(b[off..off + 8].try_into().unwrap()),
            WAL_MAGIC
        );
        assert_eq!(le_u32(&b, off + 8), crc32c(&b[off + 16..off + 56]));
        assert_eq!(le_i64(&b, off + 16), v);
        let body_len = i32::from_le_bytes(b[off + 32..off + 36].try_into().unwrap()) as usize;
        assert_eq!(
            i16::from_le_bytes(b[off + 36..off + 38].try_into().unwrap()),
            TDMT_VND_SUBMIT
        );
        assert_eq!(b[off + 38], 0, "protoVer");
        let body = &b[off + HEAD_LEN..off + HEAD_LEN + body_len];
        assert_eq!(le_u32(&b, off + 12), crc32c(body));
        // SSubmitReq2Msg: big-endian contLen and vgId, be64 version 1, then the block.
        assert_eq!(
            i32::from_be_bytes(body[0..4].try_into().unwrap()) as usize,
            body_len
        );
        assert_eq!(i32::from_be_bytes(body[4..8].try_into().unwrap()), 5);
        assert_eq!(i64::from_be_bytes(body[8..16].try_into().unwrap()), 1);
        assert_eq!(
            i32::from_le_bytes(body[16..20].try_into().unwrap()) as usize,
            body_len - 20
        );
        off += HEAD_LEN + body_len;
    }
    assert_eq!(off, b.len());
    assert_eq!(
        w.location(v1).unwrap().offset,
        (off - w.location(v1).unwrap().len as usize) as u64
    );
}

#[test]
fn row_format_rows_carry_their_timestamp_at_offset_8() {
    // SSubmitTbData of one table with two rows: flags i32v = (1 << 8) zigzag = 512 → 0x80 0x04.
    let body = submit(&[0x0102, -1]).encode(1);
    assert_eq!(body[20], 1, "nTbData");
    let tb = &body[21..];
    let tb_len = i32::from_le_bytes(tb[0..4].try_into().unwrap()) as usize;
    assert_eq!(tb_len, tb.len() - 4);
    assert_eq!(
        &tb[4..6],
        &[0x80, 0x04],
        "flags: submit version 1, row format"
    );
    assert_eq!(le_i64(tb, 6), 0, "suid");
    assert_eq!(le_i64(tb, 14), 77, "uid");
    assert_eq!(tb[22], 2, "sver 1 zigzag");
    assert_eq!(tb[23], 2, "nRow");
    let row = &tb[24..];
    assert_eq!(le_u32(row, 4), 20, "SRow.len");
    assert_eq!(le_i64(row, 8), 0x0102);
    assert_eq!(le_i64(&row[20..], 8), -1);
}

#[test]
fn rotation_purge_and_encryption() {
    let dir = tempdir();
    let mut w = VnodeWal::create(
        dir.path(),
        1,
        "db",
        VnodeOptions {
            seg_size: 100,
            encrypted: true,
            ..VnodeOptions::default()
        },
    )
    .unwrap();
    for i in 0..6 {
        w.append(&Msg::CreateTables(vec![CreateTable {
            name: format!("t{i}"),
            uid: i,
            kind: CreateKind::Normal,
        }]))
        .unwrap();
    }
    // Each record is over 100 bytes, so every append after the first rolls.
    assert_eq!(w.segments(), vec![0, 1, 2, 3, 4, 5]);
    let (_, m) = meta(w.wal_dir());
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 6);
    assert_eq!(files[0]["firstVer"], "0");
    assert_eq!(files[0]["lastVer"], "0");
    assert_eq!(files[5]["lastVer"], "-1", "the open segment");
    assert_eq!(files[5]["closeTs"], "-1");
    // Encrypted bodies are padded to 16 bytes; bodyLen stays the plaintext length.
    let loc = w.location(2).unwrap();
    let b = fs::read(&loc.path).unwrap();
    let body_len = i32::from_le_bytes(b[32..36].try_into().unwrap()) as u64;
    assert_eq!(loc.len, HEAD_LEN as u64 + body_len.div_ceil(16) * 16);
    assert_eq!(b.len() as u64, loc.len);

    w.purge_through(2).unwrap();
    assert_eq!(w.segments(), vec![3, 4, 5]);
    assert!(!w.wal_dir().join(format!("{:020}.log", 2)).exists());
    assert!(!w.wal_dir().join(format!("{:020}.idx", 2)).exists());
    let (name, m) = meta(w.wal_dir());
    assert_eq!(m["meta"]["firstVer"], "3");
    assert_ne!(name, "meta-ver0");
    // The open segment survives a purge past it.
    w.purge_through(100).unwrap();
    assert_eq!(w.segments(), vec![5]);
}

#[test]
fn a_partial_record_is_completed_in_place() {
    let dir = tempdir();
    let mut w = VnodeWal::create(dir.path(), 1, "db", VnodeOptions::default()).unwrap();
    w.append(&submit(&[1])).unwrap();
    let before = fs::metadata(w.location(0).unwrap().path).unwrap().len();
    let v = w.append_partial(&submit(&[2]), 30).unwrap();
    let log = w.location(0).unwrap().path;
    assert_eq!(fs::metadata(&log).unwrap().len(), before + 30);
    assert!(w.location(v).is_none());
    assert!(w.append(&submit(&[3])).is_err(), "one record at a time");
    w.finish_pending().unwrap();
    let loc = w.location(v).unwrap();
    assert_eq!(loc.offset, before);
    assert_eq!(fs::metadata(&log).unwrap().len(), before + loc.len);
}
