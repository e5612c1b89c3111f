//! The server's TCP stream: read ahead, and acknowledging at once only when asked to.
//!
//! taos-ws 0.12.3 sends a query connection's WebSocket frames with ws-tool 0.11.1 built from
//! `ClientConfig::default()` (`ws_tool_build_stream`, taos-ws `src/lib.rs`): no write buffer
//! (ws-tool `src/simple.rs`), so a frame's header and payload reach the socket in separate
//! `write` calls, and no `TCP_NODELAY`, so Nagle's algorithm is on. The payload then waits
//! for the server's ACK of the header, which Linux delays by up to 40 ms in request/response
//! traffic: every request costs ~40 ms (measured: 45 ms per fetch, 90 k rows/s for
//! `SELECT *`). taosAdapter does nothing about it: it serves through Go's
//! `net.Listen` and `http.Server` (taosadapter `main.go`, `system/main.go`), which set
//! `TCP_NODELAY` on accepted connections and never `TCP_QUICKACK`. So by default the emulator
//! does not either ([`crate::EmulatorConfig::quick_ack`] is `false`), and a client that
//! leaves Nagle on is as slow here as against TDengine: taosbackup turns it off on its
//! connections (`taosbackup_core::net`). With `quick_ack` the server re-arms `TCP_QUICKACK`
//! after every socket read (the option is not sticky on Linux), which hides the delay: a
//! leniency for clients that cannot set `TCP_NODELAY`, off unless asked for.
//!
//! tungstenite 0.23 reads its socket 4,096 bytes at a time, so a raw-block write of a few
//! hundred KiB cost the server a `recv` (and, quick-acking, a `setsockopt`) per 4 KiB (in a
//! restore's profile 12% of the emulator's CPU went to those reads, half of it to
//! re-arming). The server therefore reads the socket through a buffer of [`READ_AHEAD`]
//! bytes ([`QuickAckStream`]), and re-arms after each read of the socket, not of the buffer.
//! On loopback the data arrives in small pieces, so the socket is still read often: in the
//! same profile re-arming fell only from 5.8% to 4.1%, the frame reads from 12.2% to 9.1%.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read from the socket at most at once.
const READ_AHEAD: usize = 256 * 1024;

/// The server's stream: the socket, read ahead, acknowledging what it receives at once if
/// asked to.
pub(crate) type QuickAckStream = BufReader<QuickAckSocket>;

/// Wraps an accepted connection; `quick_ack` as [`crate::EmulatorConfig::quick_ack`].
pub(crate) fn quick_ack_stream(inner: TcpStream, quick_ack: bool) -> QuickAckStream {
    BufReader::with_capacity(READ_AHEAD, QuickAckSocket::new(inner, quick_ack))
}

/// A [`TcpStream`] with `TCP_NODELAY` (as Go sets on accepted connections) that, with
/// `quick_ack`, acknowledges received data immediately.
pub(crate) struct QuickAckSocket {
    inner: TcpStream,
    quick_ack: bool,
}

impl QuickAckSocket {
    fn new(inner: TcpStream, quick_ack: bool) -> Self {
        let _ = inner.set_nodelay(true);
        let s = QuickAckSocket { inner, quick_ack };
        s.quickack();
        s
    }

    fn quickack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.quick_ack {
            // Best effort: without it the server is slower, not wrong.
            let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAckSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.quickack();
        }
        r
    }
}

impl AsyncWrite for QuickAckSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
