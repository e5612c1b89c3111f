//! A writer of TDengine 3.x vnode WAL directories, for testing the `wal` change feed.
//!
//! Written from `docs/wal-format.md` (the format as taken from TDengine's source at commit
//! `a4874a8c64bbcfd0ef9865bcaa4df7951a9f9557`, 3.3.7 line), independently of the reader in
//! `taosbackup-source`, so that round trips between the two test the reader against the
//! document rather than against itself.
//!
//! - [`VnodeWal`]: one vnode's `vnode.json`, `wal/meta-ver<N>` and `<firstVer>.log/.idx`
//!   segments; [`VnodeWal::append`] writes a record, [`VnodeWal::roll`] rotates,
//!   [`VnodeWal::purge_through`] deletes old segments, [`VnodeWal::append_partial`] leaves a
//!   write in progress.
//! - [`Msg`]: the message bodies (submit in row and column formats with auto-create, delete,
//!   batch delete, create/drop/alter table, super table messages, TTL drops).

mod encode;
mod msg;
mod writer;

pub use encode::{Encoder, crc32c};
pub use msg::{
    ALTER_ADD_COLUMN, ALTER_UPDATE_OPTIONS, ALTER_UPDATE_TAG_VAL, CreateKind, CreateTable,
    DropTable, Msg, RowFormat, SubmitTable, TDMT_VND_ALTER_STB, TDMT_VND_ALTER_TABLE,
    TDMT_VND_BATCH_DEL, TDMT_VND_COMMIT, TDMT_VND_CREATE_STB, TDMT_VND_CREATE_TABLE,
    TDMT_VND_DELETE, TDMT_VND_DROP_STB, TDMT_VND_DROP_TABLE, TDMT_VND_DROP_TTL_TABLE,
    TDMT_VND_SUBMIT, TDMT_VND_TMQ_COMMIT_OFFSET, TDMT_VND_TMQ_SUBSCRIBE, create_table_req,
};
pub use writer::{HEAD_LEN, RecordLocation, VnodeOptions, VnodeWal, WAL_MAGIC};
