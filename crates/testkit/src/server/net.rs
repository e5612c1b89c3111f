//! The server's TCP stream, with delayed ACKs turned off.
//!
//! taos-ws 0.12.3 writes a WebSocket frame's header and payload with separate `write` calls
//! (its buffered stream has zero capacity) and leaves Nagle's algorithm on. The payload then
//! waits for the ACK of the header, and Linux delays that ACK by up to 40 ms in
//! request/response traffic: every request would cost ~40 ms (measured: 45 ms per fetch,
//! 90 k rows/s for `SELECT *`). Re-arming `TCP_QUICKACK` after every read makes the server ACK
//! at once. The option is not sticky on Linux, hence the re-arming.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that acknowledges received data immediately.
pub(crate) struct QuickAckStream {
    inner: TcpStream,
}

impl QuickAckStream {
    pub(crate) fn new(inner: TcpStream) -> Self {
        let _ = inner.set_nodelay(true);
        let s = QuickAckStream { inner };
        s.quickack();
        s
    }

    fn quickack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Best effort: without it the server is slower, not wrong.
            let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAckStream {
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

impl AsyncWrite for QuickAckStream {
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
