//! Integration tests of the emulator and the fakes, compiled into one binary.

mod faults;
mod feed_suite;
mod protocol;
mod raw_block;
mod sql;
mod sync_api;
mod tmq;
mod versions;
mod wal_files;
mod walfile;

/// Opens `taos`'s socket (taos-ws connects at the first request) and turns Nagle's algorithm
/// off on it, as taosbackup does on its own connections (`taosbackup_core::net`): the
/// emulator, like taosAdapter, does not acknowledge at once, so with Nagle on every request
/// would wait up to 40 ms for a delayed ACK.
pub(crate) async fn nodelay(taos: &taos::Taos) {
    use taos::AsyncQueryable;
    taos.exec("SELECT SERVER_VERSION()")
        .await
        .expect("the first request");
    nagle_off();
}

/// Turns Nagle's algorithm off on the test's open sockets (a TMQ consumer's is open once
/// built).
pub(crate) fn nagle_off() {
    taosbackup_core::net::disable_nagle().expect("TCP_NODELAY on the test's sockets");
}
