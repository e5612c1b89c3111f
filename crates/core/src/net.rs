//! `TCP_NODELAY` on the connector's sockets.
//!
//! Why: taos-ws 0.12.3, the newest `taos-ws` on crates.io, connects with Nagle's algorithm
//! on (`connect_async_with_config(…, false)` in `TaosBuilder::build_stream`, taos-ws
//! `src/lib.rs`; `connect_async` for its TMQ consumer), and tungstenite 0.23 under it sends
//! a WebSocket frame's header and payload with two `write` calls. The payload then waits
//! until the server acknowledges the header, and a Linux server delays that ACK by up to
//! 40 ms in request/response traffic: taosAdapter serves through Go's `net/http` (taosadapter
//! `main.go`), which sets `TCP_NODELAY` on its own side but never `TCP_QUICKACK`. Every
//! request, a fetch of each table's rows as much as a login, would wait ~40 ms. The connector
//! has no option for it in 0.12.3 (taos-connector-rust added a `tcp_nodelay` DSN option,
//! on by default, in its pull request 521 of 2025-10-30, not released to crates.io), and it
//! does not hand out its socket.
//!
//! How: after opening connections, [`disable_nagle`] sets `TCP_NODELAY` on every connected
//! TCP socket of the process. It lists the process's descriptors (`/proc/self/fd`) and takes
//! a duplicate of each socket through a pidfd (`pidfd_getfd`, Linux 5.6): a duplicate shares
//! the socket, so the option applies to the connector's descriptor too, and no `unsafe` is
//! needed to borrow a descriptor by number. Sockets the process does not own the connection
//! of are TCP sockets all the same; `TCP_NODELAY` is what request/response traffic wants on
//! any of them (object_store's HTTP client sets it on its own).

use std::io;
use std::net::SocketAddr;

/// Sets `TCP_NODELAY` on every connected TCP socket of this process that does not have it
/// yet; returns how many it changed.
///
/// # Errors
///
/// The kernel refuses the pidfd calls (before Linux 5.6, or a seccomp filter), `/proc` is
/// not mounted, or the platform is not Linux (`Unsupported`). The caller decides what to do
/// about it: connections still work, with Nagle's algorithm on.
pub fn disable_nagle() -> io::Result<usize> {
    imp::disable_nagle()
}

/// The local and peer addresses of this process's connected TCP sockets that still have
/// Nagle's algorithm on (for tests and diagnostics).
///
/// # Errors
///
/// As [`disable_nagle`].
pub fn sockets_with_nagle() -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
    imp::sockets_with_nagle()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::OwnedFd;

    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketType, sockopt};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    /// Calls `f` with each connected TCP socket's duplicate and its peer.
    fn each(mut f: impl FnMut(&OwnedFd, SocketAddr) -> io::Result<()>) -> io::Result<()> {
        let pidfd = pidfd_open(getpid(), PidfdFlags::empty())?;
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // Only sockets: duplicating anything else would be harmless but pointless.
            match std::fs::read_link(entry.path()) {
                Ok(target) if target.to_string_lossy().starts_with("socket:") => {}
                _ => continue,
            }
            let dup = match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
                Ok(d) => d,
                // Not allowed or not there at all: nothing will work, say so.
                Err(e) if e == Errno::NOSYS || e == Errno::PERM => return Err(e.into()),
                // Closed since it was listed.
                Err(_) => continue,
            };
            let tcp = sockopt::socket_type(&dup).is_ok_and(|t| t == SocketType::STREAM)
                && sockopt::socket_domain(&dup)
                    .is_ok_and(|d| d == AddressFamily::INET || d == AddressFamily::INET6);
            if !tcp {
                continue;
            }
            let peer = match rustix::net::getpeername(&dup) {
                Ok(Some(addr)) => match SocketAddr::try_from(addr) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                // Not connected (a listener, or a connection not yet made).
                _ => continue,
            };
            f(&dup, peer)?;
        }
        Ok(())
    }

    pub(super) fn disable_nagle() -> io::Result<usize> {
        let mut changed = 0;
        each(|fd, _| {
            if !sockopt::tcp_nodelay(fd)? {
                sockopt::set_tcp_nodelay(fd, true)?;
                changed += 1;
            }
            Ok(())
        })?;
        Ok(changed)
    }

    pub(super) fn sockets_with_nagle() -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
        let mut found = Vec::new();
        each(|fd, peer| {
            if !sockopt::tcp_nodelay(fd)? {
                let local = rustix::net::getsockname(fd)?;
                if let Ok(local) = SocketAddr::try_from(local) {
                    found.push((local, peer));
                }
            }
            Ok(())
        })?;
        Ok(found)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "setting TCP_NODELAY on the connector's sockets needs Linux (pidfd_getfd)",
        )
    }

    pub(super) fn disable_nagle() -> io::Result<usize> {
        Err(unsupported())
    }

    pub(super) fn sockets_with_nagle() -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
        Err(unsupported())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_connected_socket_gets_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        client.set_nodelay(false).expect("nagle on");
        let mine = (client.local_addr().expect("local"), addr);
        assert!(sockets_with_nagle().expect("scan").contains(&mine));
        assert!(disable_nagle().expect("set") >= 1);
        assert!(client.nodelay().expect("read option"));
        assert!(!sockets_with_nagle().expect("scan").contains(&mine));
    }
}
