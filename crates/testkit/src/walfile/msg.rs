//! WAL message bodies, encoded as `docs/wal-format.md` ("Bodies") describes them.

use super::encode::Encoder;

/// `TDMT_VND_SUBMIT`.
pub const TDMT_VND_SUBMIT: i16 = 513;
/// `TDMT_VND_CREATE_TABLE`.
pub const TDMT_VND_CREATE_TABLE: i16 = 515;
/// `TDMT_VND_ALTER_TABLE`.
pub const TDMT_VND_ALTER_TABLE: i16 = 517;
/// `TDMT_VND_DROP_TABLE`.
pub const TDMT_VND_DROP_TABLE: i16 = 519;
/// `TDMT_VND_CREATE_STB`.
pub const TDMT_VND_CREATE_STB: i16 = 531;
/// `TDMT_VND_ALTER_STB`.
pub const TDMT_VND_ALTER_STB: i16 = 533;
/// `TDMT_VND_DROP_STB`.
pub const TDMT_VND_DROP_STB: i16 = 535;
/// `TDMT_VND_DELETE`.
pub const TDMT_VND_DELETE: i16 = 579;
/// `TDMT_VND_BATCH_DEL`.
pub const TDMT_VND_BATCH_DEL: i16 = 581;
/// `TDMT_VND_DROP_TTL_TABLE`.
pub const TDMT_VND_DROP_TTL_TABLE: i16 = 593;
/// `TDMT_VND_COMMIT` (a message the feed skips).
pub const TDMT_VND_COMMIT: i16 = 597;
/// `TDMT_VND_TMQ_SUBSCRIBE`: a consumer-group rebalance reaching the vnode. The vnode TMQ
/// segment is `8 << 8` (`TD_NEW_MSG_SEG(TDMT_VND_TMQ_MSG)`, `include/common/tmsgdef.h`), its
/// first message 2049; segments only grow at their tail ("new msg should be appended to
/// segment tail").
pub const TDMT_VND_TMQ_SUBSCRIBE: i16 = 2049;
/// `TDMT_VND_TMQ_COMMIT_OFFSET`: a consumer group's committed offset (third message of the
/// vnode TMQ segment, after `TDMT_VND_TMQ_DELETE_SUB`).
pub const TDMT_VND_TMQ_COMMIT_OFFSET: i16 = 2053;

/// `TSDB_ALTER_TABLE_UPDATE_TAG_VAL`.
pub const ALTER_UPDATE_TAG_VAL: i8 = 4;
/// `TSDB_ALTER_TABLE_ADD_COLUMN`.
pub const ALTER_ADD_COLUMN: i8 = 5;
/// `TSDB_ALTER_TABLE_UPDATE_OPTIONS` (no event).
pub const ALTER_UPDATE_OPTIONS: i8 = 9;

/// How a submit block carries its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// `SRow`s (`u64v nRow` + rows).
    Rows,
    /// `SColData` columns (`SUBMIT_REQ_COLUMN_DATA_FORMAT`), submit version 1 (with `cflag`).
    Columns,
    /// `SColData` columns with submit version 0 (no `cflag`).
    ColumnsV0,
}

/// What kind of table a create request makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateKind {
    /// A child table of `stable` (uid `suid`).
    Child {
        /// Super table name.
        stable: String,
        /// Super table uid.
        suid: i64,
    },
    /// A normal table with a timestamp and an INT column.
    Normal,
}

/// One `SVCreateTbReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTable {
    /// Short table name.
    pub name: String,
    /// Table uid.
    pub uid: i64,
    /// Child or normal.
    pub kind: CreateKind,
}

/// One table's rows in a submit (`SSubmitTbData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitTable {
    /// Table uid.
    pub uid: i64,
    /// Super table uid (0 for a normal table).
    pub suid: i64,
    /// Row format.
    pub format: RowFormat,
    /// Row timestamps (each row also gets an INT value).
    pub timestamps: Vec<i64>,
    /// Auto-create request (`SUBMIT_REQ_AUTO_CREATE_TABLE`).
    pub auto_create: Option<CreateTable>,
}

/// One dropped table (`SVDropTbReq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropTable {
    /// Short table name.
    pub name: String,
    /// Table uid.
    pub uid: i64,
    /// Super table uid (0 for a normal table).
    pub suid: i64,
}

/// A WAL message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// `TDMT_VND_SUBMIT`.
    Submit(Vec<SubmitTable>),
    /// `TDMT_VND_DELETE` as pre-processing leaves it (`SDeleteRes`).
    Delete {
        /// Super table uid, or 0.
        suid: u64,
        /// Tables whose rows were deleted.
        uids: Vec<u64>,
        /// First deleted timestamp.
        start: i64,
        /// Last deleted timestamp (inclusive).
        end: i64,
        /// `tableFName` (e.g. `1.db.t`).
        table_fname: String,
    },
    /// `TDMT_VND_BATCH_DEL`: `(table name, start, end)` per table.
    BatchDelete {
        /// Super table uid.
        suid: i64,
        /// Deleted ranges by table name.
        items: Vec<(String, i64, i64)>,
    },
    /// `TDMT_VND_CREATE_TABLE`.
    CreateTables(Vec<CreateTable>),
    /// `TDMT_VND_DROP_TABLE`.
    DropTables(Vec<DropTable>),
    /// `TDMT_VND_ALTER_TABLE` with an action code (`TSDB_ALTER_TABLE_*`).
    AlterTable {
        /// Short table name.
        name: String,
        /// Action code.
        action: i8,
    },
    /// `TDMT_VND_CREATE_STB`.
    CreateStable {
        /// Short name.
        name: String,
        /// Super table uid.
        suid: i64,
    },
    /// `TDMT_VND_ALTER_STB` (encoded as a create request).
    AlterStable {
        /// Short name.
        name: String,
        /// Super table uid.
        suid: i64,
    },
    /// `TDMT_VND_DROP_STB`.
    DropStable {
        /// Short name.
        name: String,
        /// Super table uid.
        suid: i64,
    },
    /// `TDMT_VND_DROP_TTL_TABLE` with the expired uids.
    DropTtl(Vec<i64>),
    /// Any other message type with a raw body.
    Other {
        /// Message type number.
        msg_type: i16,
        /// Body bytes.
        body: Vec<u8>,
    },
}

const TSDB_DATA_TYPE_INT: i8 = 4;
const TSDB_DATA_TYPE_TIMESTAMP: i8 = 9;
const HAS_VALUE: i8 = 0x4;

impl Msg {
    /// The message type number.
    pub fn msg_type(&self) -> i16 {
        match self {
            Msg::Submit(_) => TDMT_VND_SUBMIT,
            Msg::Delete { .. } => TDMT_VND_DELETE,
            Msg::BatchDelete { .. } => TDMT_VND_BATCH_DEL,
            Msg::CreateTables(_) => TDMT_VND_CREATE_TABLE,
            Msg::DropTables(_) => TDMT_VND_DROP_TABLE,
            Msg::AlterTable { .. } => TDMT_VND_ALTER_TABLE,
            Msg::CreateStable { .. } => TDMT_VND_CREATE_STB,
            Msg::AlterStable { .. } => TDMT_VND_ALTER_STB,
            Msg::DropStable { .. } => TDMT_VND_DROP_STB,
            Msg::DropTtl(_) => TDMT_VND_DROP_TTL_TABLE,
            Msg::Other { msg_type, .. } => *msg_type,
        }
    }

    /// The WAL body for vnode `vg_id`.
    pub fn encode(&self, vg_id: i32) -> Vec<u8> {
        let mut e = Encoder::new();
        match self {
            Msg::Submit(tables) => {
                // SSubmitReq2Msg: SMsgHead (network order, contLen patched below) + be64 version 1.
                e.raw(&[0; 4])
                    .raw(&vg_id.to_be_bytes())
                    .raw(&1i64.to_be_bytes());
                e.start().uv(tables.len() as u64);
                for t in tables {
                    submit_table(&mut e, t);
                }
                e.end();
            }
            Msg::Delete {
                suid,
                uids,
                start,
                end,
                table_fname,
            } => {
                msg_head(&mut e, vg_id);
                e.u64(*suid).iv(uids.len() as i64);
                for u in uids {
                    e.u64(*u);
                }
                e.i64(*start)
                    .i64(*end)
                    .iv(uids.len() as i64)
                    .cstr(table_fname)
                    .cstr("ts")
                    .i64(1_700_000_000_000)
                    .i8(0);
            }
            Msg::BatchDelete { suid, items } => {
                msg_head(&mut e, vg_id);
                e.i64(*suid).i32(items.len() as i32);
                for (name, s, t) in items {
                    e.cstr(name).i64(*s).i64(*t);
                }
                e.i64(1_700_000_000_000).i8(0);
            }
            Msg::CreateTables(reqs) => {
                msg_head(&mut e, vg_id);
                e.start().iv(reqs.len() as i64);
                for r in reqs {
                    create_table(&mut e, r);
                }
                e.i8(0).end();
            }
            Msg::DropTables(reqs) => {
                msg_head(&mut e, vg_id);
                e.start().iv(reqs.len() as i64);
                for r in reqs {
                    e.start()
                        .cstr(&r.name)
                        .u64(r.suid as u64)
                        .i64(r.uid)
                        .i8(0)
                        .i8(0)
                        .end();
                }
                e.end();
            }
            Msg::AlterTable { name, action } => {
                msg_head(&mut e, vg_id);
                e.start().cstr(name).i8(*action).i32(2);
                match *action {
                    ALTER_UPDATE_TAG_VAL => {
                        e.cstr("t1")
                            .i8(0)
                            .i8(TSDB_DATA_TYPE_INT)
                            .binary(&7i32.to_le_bytes());
                    }
                    ALTER_ADD_COLUMN => {
                        e.cstr("c9").i8(TSDB_DATA_TYPE_INT).i8(0).iv(4);
                    }
                    ALTER_UPDATE_OPTIONS => {
                        e.i8(1).iv(10).iv(0);
                    }
                    _ => {}
                }
                e.end();
            }
            Msg::CreateStable { name, suid } | Msg::AlterStable { name, suid } => {
                msg_head(&mut e, vg_id);
                e.start().cstr(name).i64(*suid).i8(0);
                schema_wrapper(
                    &mut e,
                    &[(TSDB_DATA_TYPE_TIMESTAMP, "ts"), (TSDB_DATA_TYPE_INT, "v")],
                );
                schema_wrapper(&mut e, &[(TSDB_DATA_TYPE_INT, "t1")]);
                e.i32(0).i8(0).i8(0);
                e.iv(0).iv(1); // SColCmprWrapper with no columns
                e.i64(3650 * 1440).i8(0).i8(0).end();
            }
            Msg::DropStable { name, suid } => {
                msg_head(&mut e, vg_id);
                e.start().cstr(name).i64(*suid).end();
            }
            Msg::DropTtl(uids) => {
                msg_head(&mut e, vg_id);
                e.start()
                    .i32(1_700_000_000)
                    .i32(10_000)
                    .i32(uids.len() as i32);
                for u in uids {
                    e.i64(*u);
                }
                e.end();
            }
            Msg::Other { body, .. } => {
                e.raw(body);
            }
        }
        let mut body = e.finish();
        match self {
            Msg::Other { .. } => {}
            // vnodePreProcessDeleteMsg writes its SMsgHead in host order.
            Msg::Delete { .. } => {
                let len = body.len() as i32;
                body[..4].copy_from_slice(&len.to_le_bytes());
                body[4..8].copy_from_slice(&vg_id.to_le_bytes());
            }
            _ => {
                let len = body.len() as i32;
                body[..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        body
    }
}

fn msg_head(e: &mut Encoder, vg_id: i32) {
    e.raw(&[0; 4]).raw(&vg_id.to_be_bytes());
}

fn schema_wrapper(e: &mut Encoder, cols: &[(i8, &str)]) {
    e.iv(cols.len() as i64).iv(1);
    for (i, (ty, name)) in cols.iter().enumerate() {
        let bytes = if *ty == TSDB_DATA_TYPE_TIMESTAMP {
            8
        } else {
            4
        };
        e.i8(*ty).i8(0).iv(bytes).iv(i as i64 + 1).cstr(name);
    }
}

/// One `SVCreateTbReq` as `tEncodeSVCreateTbReq` writes it (the form a submit's auto-create
/// request and TMQ's meta+data responses carry), with the same simplifications as in the WAL
/// records: no tag values, a fixed creation time.
pub fn create_table_req(r: &CreateTable) -> Vec<u8> {
    let mut e = Encoder::new();
    create_table(&mut e, r);
    e.finish()
}

fn create_table(e: &mut Encoder, r: &CreateTable) {
    e.start()
        .iv(0)
        .cstr(&r.name)
        .i64(r.uid)
        .i64(1_700_000_000_000)
        .i32(0);
    match &r.kind {
        CreateKind::Child { stable, suid } => {
            e.i8(2).i32(0).cstr(stable).u8(1).i64(*suid);
            // STag {i8 flags, i16 len, i16 nTag, i32 ver} with no values.
            let mut tag = Vec::new();
            tag.push(0u8);
            tag.extend_from_slice(&9i16.to_le_bytes());
            tag.extend_from_slice(&0i16.to_le_bytes());
            tag.extend_from_slice(&1i32.to_le_bytes());
            e.binary(&tag).i32(0);
            e.i32(0); // sqlLen
        }
        CreateKind::Normal => {
            e.i8(3).i32(0);
            schema_wrapper(
                e,
                &[(TSDB_DATA_TYPE_TIMESTAMP, "ts"), (TSDB_DATA_TYPE_INT, "v")],
            );
            e.i32(0); // sqlLen
            e.iv(2).iv(1).iv(1).u32(0).iv(2).u32(0); // SColCmprWrapper
        }
    }
    e.i8(0).end();
}

fn submit_table(e: &mut Encoder, t: &SubmitTable) {
    let mut flags: i64 = 0;
    if t.auto_create.is_some() {
        flags |= 0x1;
    }
    let version = match t.format {
        RowFormat::Rows | RowFormat::Columns => 1,
        RowFormat::ColumnsV0 => 0,
    };
    if t.format != RowFormat::Rows {
        flags |= 0x2;
    }
    flags |= version << 8;
    e.start().iv(flags);
    if let Some(c) = &t.auto_create {
        create_table(e, c);
    }
    let sver = 1;
    e.i64(t.suid).i64(t.uid).iv(sver);
    let n = t.timestamps.len();
    match t.format {
        RowFormat::Rows => {
            e.uv(n as u64);
            for (i, ts) in t.timestamps.iter().enumerate() {
                // SRow: u8 flag, u8 numOfPKs, u16 sver, u32 len, i64 ts, data (one INT).
                e.u8(HAS_VALUE as u8)
                    .u8(0)
                    .u16(sver as u16)
                    .u32(20)
                    .i64(*ts)
                    .i32(i as i32);
            }
        }
        RowFormat::Columns | RowFormat::ColumnsV0 => {
            e.uv(2);
            e.iv(1)
                .i8(TSDB_DATA_TYPE_TIMESTAMP)
                .iv(n as i64)
                .i8(HAS_VALUE);
            for ts in &t.timestamps {
                e.i64(*ts);
            }
            if version == 1 {
                e.i8(0);
            }
            e.iv(2).i8(TSDB_DATA_TYPE_INT).iv(n as i64).i8(HAS_VALUE);
            for i in 0..n {
                e.i32(i as i32);
            }
            if version == 1 {
                e.i8(0);
            }
        }
    }
    e.i64(1_700_000_000_000).end();
}
