//! `TCP_NODELAY` on the connector's sockets.
//!
//! Why: taos-ws 0.12.3, the newest `taos-ws` on crates.io, opens its query connections
//! (`WsTaos::from_wsinfo`, taos-ws `src/query/asyn.rs`) with `ws_tool_build_stream`
//! (`src/lib.rs`), which builds ws-tool 0.11.1's client from `ClientConfig::default()`: its
//! read and write buffers are 0 bytes (ws-tool `src/simple.rs`), and ws-tool never sets
//! `TCP_NODELAY`. So Nagle's algorithm is on, and the frame codec's two `write_all` calls,
//! the header and then the payload (ws-tool `src/codec/deflate/non_blocking.rs`), reach the
//! socket apart: `strace` shows a 6-byte `sendto`, then the payload's. (Its TMQ consumer,
//! tokio-tungstenite's `connect_async`, also leaves Nagle on, but tungstenite writes a frame
//! from one buffer.) The payload then waits until the server acknowledges the header, and a
//! Linux server delays that ACK by up to 40 ms in request/response traffic: taosAdapter
//! serves through Go's `net/http` (taosadapter `main.go`), which sets `TCP_NODELAY` on its
//! own side but never `TCP_QUICKACK`. Every request, a fetch of each table's rows as much as
//! a login, would wait ~40 ms. The connector has no option for it in 0.12.3
//! (taos-connector-rust added a `tcp_nodelay` DSN option, on by default, in its pull request
//! 521 of 2025-10-30, not released to crates.io; its main branch of 2026-05-12 connects
//! through a git fork of tokio-tungstenite instead of ws-tool), and it does not hand out its
//! socket.
//!
//! How: after opening connections, [`disable_nagle`] sets `TCP_NODELAY` on every connected
//! TCP socket of the process. It lists the process's descriptors (`/proc/self/fd`) and takes
//! a duplicate of each socket through a pidfd (`pidfd_getfd`, Linux 5.6): a duplicate shares
//! the socket, so the option applies to the connector's descriptor too. Where the kernel
//! refuses `pidfd_getfd` (Docker's default seccomp profile without `CAP_SYS_PTRACE`, older
//! kernels) it borrows each descriptor by its number instead: the one `unsafe` of this
//! crate (docs/architecture.md). It changes every TCP socket of the process, not only
//! the connector's: `TCP_NODELAY` is what request/response traffic wants on any of them
//! (object_store's HTTP client sets it on its own).

use std::io;
use std::net::SocketAddr;

/// Sets `TCP_NODELAY` on every connected TCP socket of this process that does not have it
/// yet; returns how many it changed.
///
/// # Errors
///
/// `/proc` is not mounted, or the platform is not Linux (`Unsupported`). The caller decides
/// what to do about it: connections still work, with Nagle's algorithm on.
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
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::path::Path;

    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketType, sockopt};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    /// How the process's descriptors are reached.
    enum Access {
        /// Duplicates through a pidfd of the process (`pidfd_getfd`).
        Pidfd(OwnedFd),
        /// The descriptor numbers themselves, where the kernel refuses `pidfd_getfd`:
        /// Docker's default seccomp profile allows it only with `CAP_SYS_PTRACE`
        /// (moby `profiles/seccomp/default_linux.go`), and kernels before 5.6 lack it.
        Borrow,
    }

    /// Whether the kernel refuses the pidfd calls altogether.
    fn refused(e: Errno) -> bool {
        e == Errno::NOSYS || e == Errno::PERM || e == Errno::ACCESS
    }

    /// Where Linux lists the process's open descriptors.
    const DESCRIPTORS: &str = "/proc/self/fd";

    /// The entries of `dir`; its error names `dir`, since "No such file or directory" alone
    /// would not tell an operator that `/proc` is missing (a container or chroot without
    /// it).
    pub(super) fn list_descriptors(dir: &Path) -> io::Result<std::fs::ReadDir> {
        std::fs::read_dir(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot list the process's sockets in {} (is /proc mounted?): {e}",
                    dir.display()
                ),
            )
        })
    }

    /// A pidfd of this process, or [`Access::Borrow`] where the kernel refuses one.
    fn access() -> io::Result<Access> {
        match pidfd_open(getpid(), PidfdFlags::empty()) {
            Ok(pidfd) => Ok(Access::Pidfd(pidfd)),
            Err(e) if refused(e) => Ok(Access::Borrow),
            Err(e) => Err(e.into()),
        }
    }

    /// Calls `f` with each connected TCP socket of the process and its peer, reached
    /// through `access` (which falls back to borrowing once `pidfd_getfd` is refused).
    fn each(
        mut access: Access,
        mut f: impl FnMut(BorrowedFd<'_>, SocketAddr) -> io::Result<()>,
    ) -> io::Result<()> {
        for entry in list_descriptors(Path::new(DESCRIPTORS))? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // Only sockets: the others would refuse the socket calls anyway.
            match std::fs::read_link(entry.path()) {
                Ok(target) if target.to_string_lossy().starts_with("socket:") => {}
                _ => continue,
            }
            let dup = match &access {
                Access::Pidfd(pidfd) => match pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()) {
                    Ok(d) => Some(d),
                    Err(e) if refused(e) => {
                        access = Access::Borrow;
                        None
                    }
                    // Closed since it was listed.
                    Err(_) => continue,
                },
                Access::Borrow => None,
            };
            let borrowed = match &dup {
                Some(d) => d.as_fd(),
                #[allow(unsafe_code)]
                // SAFETY: `fd` was listed in /proc/self/fd just now, so it names an open
                // descriptor of this process, and the borrow lasts only for the socket
                // calls below (getsockopt, getpeername, setsockopt of TCP_NODELAY). If
                // another thread closes it meanwhile and the number is reused, those calls
                // act on whatever the number then names: a TCP socket gets TCP_NODELAY,
                // anything else refuses them. No memory is reached through the descriptor.
                None => unsafe { BorrowedFd::borrow_raw(fd) },
            };
            let tcp = sockopt::socket_type(borrowed).is_ok_and(|t| t == SocketType::STREAM)
                && sockopt::socket_domain(borrowed)
                    .is_ok_and(|d| d == AddressFamily::INET || d == AddressFamily::INET6);
            if !tcp {
                continue;
            }
            let peer = match rustix::net::getpeername(borrowed) {
                Ok(Some(addr)) => match SocketAddr::try_from(addr) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                // Not connected (a listener, or a connection not yet made).
                _ => continue,
            };
            f(borrowed, peer)?;
        }
        Ok(())
    }

    pub(super) fn disable_nagle() -> io::Result<usize> {
        disable_nagle_with(access()?)
    }

    /// [`disable_nagle`], borrowing the descriptors by number as where `pidfd_getfd` is
    /// refused.
    #[cfg(test)]
    pub(super) fn disable_nagle_borrowing() -> io::Result<usize> {
        disable_nagle_with(Access::Borrow)
    }

    fn disable_nagle_with(access: Access) -> io::Result<usize> {
        let mut changed = 0;
        each(access, |fd, _| {
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
        each(access()?, |fd, peer| {
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
    use std::sync::Mutex;

    /// The option is set process-wide: one test at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// A loopback connection (client, server, server address), the client with Nagle on.
    fn connected_with_nagle() -> (TcpStream, TcpStream, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client.set_nodelay(false).expect("nagle on");
        (client, server, addr)
    }

    #[test]
    fn a_connected_socket_gets_tcp_nodelay() {
        let _one = ONE_AT_A_TIME.lock();
        let (client, _server, addr) = connected_with_nagle();
        let mine = (client.local_addr().expect("local"), addr);
        assert!(sockets_with_nagle().expect("scan").contains(&mine));
        assert!(disable_nagle().expect("set") >= 1);
        assert!(client.nodelay().expect("read option"));
        assert!(!sockets_with_nagle().expect("scan").contains(&mine));
    }

    /// Without `/proc` (a container or chroot that lacks it) the error names the directory
    /// and asks whether `/proc` is mounted, so that the source's one warning says what to fix.
    #[test]
    fn a_missing_descriptor_list_is_an_error_naming_it() {
        let missing = std::path::Path::new("/nonexistent/proc/self/fd");
        let e = imp::list_descriptors(missing).expect_err("no such directory");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let text = e.to_string();
        assert!(text.contains("/nonexistent/proc/self/fd"), "{text}");
        assert!(text.contains("is /proc mounted?"), "{text}");
    }

    /// Where the kernel refuses `pidfd_getfd` (Docker's default seccomp profile), the
    /// descriptors are borrowed by number; the same socket gets the same option.
    #[test]
    fn borrowing_the_descriptor_sets_tcp_nodelay_too() {
        let _one = ONE_AT_A_TIME.lock();
        let (client, _server, _) = connected_with_nagle();
        assert!(imp::disable_nagle_borrowing().expect("set") >= 1);
        assert!(client.nodelay().expect("read option"));
    }
}
