//! Integration tests of the source against the emulator (`taos-emu` over a socket), compiled
//! into one binary.

mod conformance;
mod emulator;
mod feed_suite;
mod tmq_feed;
mod wal_feed;

/// Held by the tests' own `TCP_NODELAY` calls ([`nodelay`]) and by the tests that check the
/// source turns Nagle's algorithm off by itself: the option is set process-wide, so between
/// such a test's connect and its check no other test may set it for the source.
pub(crate) static NAGLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens `taos`'s socket (taos-ws connects at the first request) and turns Nagle's
/// algorithm off on it, as the source does on its own (`taosbackup_core::net`): the
/// emulator, like taosAdapter, does not acknowledge at once, so every request would wait up
/// to 40 ms.
pub(crate) async fn nodelay(taos: &taos::Taos) {
    use taos::AsyncQueryable;
    taos.exec("SELECT SERVER_VERSION()")
        .await
        .expect("the first request");
    let _only_one = NAGLE.lock().await;
    taosbackup_core::net::disable_nagle().expect("TCP_NODELAY on the test's sockets");
}

/// The (local, server) addresses of this process's connections to `server` that have Nagle's
/// algorithm on.
pub(crate) fn nagle_on_to(
    server: std::net::SocketAddr,
) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
    taosbackup_core::net::sockets_with_nagle()
        .unwrap()
        .into_iter()
        .filter(|(_, peer)| *peer == server)
        .collect()
}
