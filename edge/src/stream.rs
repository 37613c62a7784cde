//! A session's connection: a TCP stream, or a TLS session over one. Sessions wait on readiness and then
//! read or write what the socket takes without blocking (`try_*`); this gives TLS the same shape.
//!
//! Over TLS, rustls holds decrypted bytes not yet asked for (reads are capped per call) and encrypted bytes
//! the socket did not take yet: the first makes the stream readable without the socket being so, the
//! second makes the session wait for the socket to be writable until they are out ([`Stream::wants_flush`]).
//! The plaintext case is a match arm away from the plain `TcpStream` calls: no buffer, no box.

use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};

use rustls::ServerConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A session's connection.
pub enum Stream {
    /// Plain TCP (`ws://`).
    Plain(TcpStream),
    /// TLS over TCP (`wss://`); boxed: the rustls state is large, and plaintext sessions should not pay it.
    Tls(Box<TlsConnection>),
}

/// A TLS session after its handshake, driven without blocking.
pub struct TlsConnection {
    tcp: TcpStream,
    tls: ServerConnection,
    /// rustls may hold decrypted bytes: read before waiting on the socket.
    plaintext_ready: bool,
}

impl TlsConnection {
    /// The session over `tcp` whose state is `tls` (handshake done; maybe with bytes already decrypted).
    #[must_use]
    pub fn new(tcp: TcpStream, tls: ServerConnection) -> Self {
        Self { tcp, tls, plaintext_ready: true }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => {
                    self.plaintext_ready = n > 0;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.plaintext_ready = false,
                Err(err) => return Err(err),
            }
            if self.tls.read_tls(&mut SocketIo(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(err) = self.tls.process_new_packets() {
                // The alert rustls queued is worth a try; the connection is over either way.
                let _ = self.try_flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            // Handshake-level answers (key updates, tickets) go out as the socket takes them.
            match self.try_flush() {
                Err(err) if err.kind() != io::ErrorKind::WouldBlock => return Err(err),
                _ => {}
            }
        }
    }

    fn try_write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_flush()?;
        let accepted = self.tls.writer().write_vectored(bufs)?;
        match self.try_flush() {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => Err(err),
            _ => Ok(accepted),
        }
    }

    fn try_flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut SocketIo(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The socket as `std::io`, for rustls: `WouldBlock` when it has nothing or takes nothing.
struct SocketIo<'a>(&'a TcpStream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Ready when a read may find bytes (or the end).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(conn) if conn.plaintext_ready => Poll::Ready(Ok(())),
            Self::Tls(conn) => conn.tcp.poll_read_ready(cx),
        }
    }

    /// Ready when the socket may take bytes.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => tcp.poll_write_ready(cx),
            Self::Tls(conn) => conn.tcp.poll_write_ready(cx),
        }
    }

    /// Reads what can be read now into `buf` (decrypted, over TLS); `Ok(0)` at the end of the stream (over
    /// TLS: the peer's `close_notify`, or EOF), `WouldBlock` when there is nothing yet.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_read(buf),
            Self::Tls(conn) => conn.try_read(buf),
        }
    }

    /// Writes what the connection takes now; `WouldBlock` when it takes nothing.
    pub fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_write_vectored(bufs),
            Self::Tls(conn) => conn.try_write(bufs),
        }
    }

    /// Bytes accepted by a write are still waiting for the socket (TLS records).
    #[must_use]
    pub fn wants_flush(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(conn) => conn.tls.wants_write(),
        }
    }

    /// Sends what [`Stream::wants_flush`] holds, as far as the socket takes it now.
    pub fn try_flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(_) => Ok(()),
            Self::Tls(conn) => conn.try_flush(),
        }
    }

    /// Ends the write side once all accepted bytes are out: over TLS queues `close_notify` (once) and sends
    /// what the socket takes now; then shuts the TCP write side down (FIN). `Ok(false)` while TLS records
    /// still wait for the socket: call again once it is writable. Never waits.
    pub async fn try_shutdown(&mut self) -> io::Result<bool> {
        let tcp = match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(conn) => {
                conn.tls.send_close_notify();
                match conn.try_flush() {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    flushed => flushed?,
                }
                &mut conn.tcp
            }
        };
        // A TCP shutdown is immediate: `shutdown(2)` on the write side, no waiting.
        tcp.shutdown().await.map(|()| true)
    }

    /// Waits until the socket may take bytes.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }
}
