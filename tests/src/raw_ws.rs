//! [`RawWs`]: a WebSocket client over a bare `TcpStream` (or TLS over one), for what a conforming library
//! will not do: write thousands of frames in one go without reading, send unfinished fragments or unsolicited
//! pongs, and show exactly which frames arrived before the connection ended (a reset included).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::deadline::within;

/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Continuation frame opcode.
pub const OP_CONTINUATION: u8 = 0x0;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame: `opcode`, final or not, carrying `payload`.
#[must_use]
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, k)| b ^ k));
    out
}

/// A final text frame carrying `text`.
#[must_use]
pub fn text_frame(text: &str) -> Vec<u8> {
    client_frame(OP_TEXT, true, text.as_bytes())
}

/// One server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// Its opcode.
    pub opcode: u8,
    /// Its (unmasked) payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame with one.
    #[must_use]
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// The payload as text (lossy).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A raw WebSocket connection to an edge, over `S`.
pub struct RawWs<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `addr` and upgrades on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let stream = within("raw TCP connect", TcpStream::connect(addr)).await??;
        RawWs::upgrade(stream, addr, path).await
    }

    /// Connects to `addr` over TLS with `config` (`wss://`) and upgrades on `path`.
    pub async fn connect_tls(
        addr: SocketAddr,
        path: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<RawWs<TlsStream<TcpStream>>> {
        let stream = crate::pki::tls_connect(addr, config).await?;
        RawWs::upgrade(stream, addr, path).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawWs<S> {
    /// Upgrades `stream`, connected to `addr`, on `path`.
    async fn upgrade(stream: S, addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let mut ws = Self { stream, buf: Vec::new() };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.stream.write_all(request.as_bytes()).await?;
        within("the 101 response", async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if !ws.buf.starts_with(b"HTTP/1.1 101") {
                        bail!("upgrade refused: {}", String::from_utf8_lossy(&ws.buf));
                    }
                    ws.buf.drain(..end + 4);
                    return Ok(());
                }
                if ws.read_more().await? == 0 {
                    bail!("connection closed during the upgrade");
                }
            }
        })
        .await??;
        Ok(ws)
    }

    /// Writes `bytes` (frames made with [`client_frame`]) all at once, reading nothing meanwhile.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        within("a raw write", self.stream.write_all(bytes)).await?.context("raw write")
    }

    /// The next server frame; `None` when the connection ended (EOF or reset) first.
    pub async fn next_frame(&mut self) -> anyhow::Result<Option<ServerFrame>> {
        within("a server frame", async {
            loop {
                if let Some(frame) = self.parse() {
                    return Ok(Some(frame));
                }
                match self.read_more().await {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                }
            }
        })
        .await?
    }

    /// Every server frame until the close frame (included) or the end of the connection.
    pub async fn frames_until_close(&mut self) -> anyhow::Result<Vec<ServerFrame>> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame().await? {
            let close = frame.opcode == OP_CLOSE;
            frames.push(frame);
            if close {
                break;
            }
        }
        Ok(frames)
    }

    /// Reads until EOF after the server's close; `true` for a clean EOF (over TLS: `close_notify`, then EOF),
    /// `false` for a reset (or, over TLS, an EOF without `close_notify`).
    pub async fn ends_cleanly(&mut self) -> anyhow::Result<bool> {
        let mut rest = Vec::new();
        let read = within("the server's EOF", self.stream.read_to_end(&mut rest)).await?;
        Ok(read.is_ok())
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0; 16 * 1024];
        let read = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(read)
    }

    /// Takes one complete (unmasked, unfragmented) server frame off the buffer.
    fn parse(&mut self) -> Option<ServerFrame> {
        let [first, second, ..] = *self.buf.as_slice() else { return None };
        let (start, len) = match second & 0x7f {
            126 => (4, u16::from_be_bytes(self.buf.get(2..4)?.try_into().ok()?) as usize),
            127 => (10, u64::from_be_bytes(self.buf.get(2..10)?.try_into().ok()?) as usize),
            short => (2, usize::from(short)),
        };
        let payload = self.buf.get(start..start + len)?.to_vec();
        self.buf.drain(..start + len);
        Some(ServerFrame { opcode: first & 0x0f, payload })
    }
}

impl RawWs<TlsStream<TcpStream>> {
    /// Reads until the server's `close_notify`, then the TCP stream to its end: `true` when `close_notify`
    /// came and then a clean EOF (the server shut its write side down), `false` for a reset or an EOF without
    /// `close_notify`.
    pub async fn ends_with_close_notify_and_fin(&mut self) -> anyhow::Result<bool> {
        if !self.ends_cleanly().await? {
            return Ok(false);
        }
        let mut rest = Vec::new();
        let read = within("the server's FIN", self.stream.get_mut().0.read_to_end(&mut rest)).await?;
        Ok(read.is_ok() && rest.is_empty())
    }
}
