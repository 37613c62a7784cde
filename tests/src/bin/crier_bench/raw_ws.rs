//! [`RawWs`]: the cheapest client that speaks crier's browser protocol, so the machine measures the server,
//! not the load generator. A tokio `TcpStream` bound to a chosen source address, a hand-written HTTP
//! upgrade, masked client text frames, and a read buffer parsed in place: receiving a notification costs a
//! header parse and a counter increment (plus a timestamp scan when measuring latency).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::fleet::Tally;
use crate::payload;
use crate::recorder::Recorder;
use crate::ws_frame::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Read buffer of a fresh connection: enough for the handshake and a few notifications.
const INITIAL_BUFFER: usize = 4 * 1024;
/// A busy connection's buffer grows to this, so one read takes hundreds of frames.
const BULK_BUFFER: usize = 64 * 1024;
/// Largest server frame accepted (the edge's frames are far smaller).
const MAX_FRAME: usize = 1024 * 1024 + 16;

/// How a receiving connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The bench stopped it.
    Stopped,
    /// The server closed it (close frame or EOF).
    Closed,
}

/// One upgraded, authenticated, subscribed connection.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..filled]`.
    start: usize,
    filled: usize,
    mask: [u8; 4],
}

impl RawWs {
    /// Connects from `source` to `server`, upgrades on `path`, authenticates as `user` (dev auth) and
    /// subscribes to `conversation`; returns once `subscribed` has arrived.
    pub async fn open(
        source: IpAddr,
        server: SocketAddr,
        path: &str,
        user: &str,
        conversation: &str,
    ) -> anyhow::Result<Self> {
        let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("bind {source}"))?;
        let stream = socket.connect(server).await.with_context(|| format!("connect {server}"))?;
        stream.set_nodelay(true)?;
        let mask = u32::from(stream.local_addr()?.port()).wrapping_mul(2_654_435_761).to_be_bytes();
        let mut ws = Self { stream, buf: vec![0; INITIAL_BUFFER], start: 0, filled: 0, mask };
        ws.upgrade(server, path).await?;
        let auth = format!(r#"{{"action":"auth","userId":"{user}"}}"#);
        let subscribe = format!(r#"{{"action":"subscribe","conversationId":"{conversation}"}}"#);
        ws.send_texts(&[auth.as_bytes(), subscribe.as_bytes()]).await?;
        ws.await_subscribed().await?;
        Ok(ws)
    }

    async fn upgrade(&mut self, server: SocketAddr, path: &str) -> anyhow::Result<()> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            let head = &self.buf[..self.filled];
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 101") {
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    bail!("upgrade refused: {}", String::from_utf8_lossy(line));
                }
                self.start = end + 4;
                return Ok(());
            }
            if self.read_more().await? == 0 {
                bail!("connection closed during the upgrade");
            }
        }
    }

    async fn send_texts(&mut self, messages: &[&[u8]]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 14).sum());
        for message in messages {
            ws_frame::encode_masked(&mut out, OP_TEXT, message, self.mask);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads until `subscribed`; `ready` and `authenticated` pass by, an `error` or a close fails.
    async fn await_subscribed(&mut self) -> anyhow::Result<()> {
        loop {
            while let Some(frame) = self.next_frame()? {
                let payload = frame.payload(&self.buf[self.start - frame.len..]);
                match frame.opcode {
                    OP_TEXT if contains(payload, br#""type":"subscribed""#) => return Ok(()),
                    OP_TEXT if contains(payload, br#""type":"error""#) => {
                        bail!("server error: {}", String::from_utf8_lossy(payload))
                    }
                    OP_CLOSE => bail!("server closed: {}", String::from_utf8_lossy(payload)),
                    _ => {}
                }
            }
            if self.read_more().await? == 0 {
                bail!("connection closed before subscribed");
            }
        }
    }

    /// Counts notifications into `tally` (as conversation index `conversation`; their latency into
    /// `recorder`) until the server closes the connection or `stop` is cancelled. Pings are answered.
    pub async fn receive(
        mut self,
        tally: &Tally,
        conversation: usize,
        recorder: Option<&Recorder>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Ending> {
        let mut pong = Vec::new();
        loop {
            let (texts, closed) = self.take_frames(recorder, &mut pong)?;
            if texts > 0 {
                tally.add(conversation, texts);
            }
            if closed {
                return Ok(Ending::Closed);
            }
            if !pong.is_empty() {
                self.stream.write_all(&pong).await?;
                pong.clear();
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(Ending::Stopped),
                read = self.read_more() => if read? == 0 { return Ok(Ending::Closed) },
            }
        }
    }

    /// Consumes every complete frame in the buffer: counts text frames (recording the latency of stamped
    /// ones, against one clock reading per socket read), queues pongs for pings. `true` on a close frame.
    fn take_frames(
        &mut self,
        recorder: Option<&Recorder>,
        pong: &mut Vec<u8>,
    ) -> anyhow::Result<(u64, bool)> {
        let now_ns = recorder.map_or(0, |r| r.clock.now_ns());
        let mut texts = 0;
        let mut histogram = None;
        while let Some(frame) = self.next_frame()? {
            let payload = frame.payload(&self.buf[self.start - frame.len..]);
            match frame.opcode {
                OP_TEXT => {
                    texts += 1;
                    if let (Some(recorder), Some(sent)) = (recorder, payload::sent_ns(payload)) {
                        let histogram = histogram.get_or_insert_with(|| recorder.lock());
                        Recorder::record(histogram, sent, now_ns);
                    }
                }
                OP_PING => ws_frame::encode_masked(pong, OP_PONG, payload, self.mask),
                OP_CLOSE => return Ok((texts, true)),
                _ => {}
            }
        }
        Ok((texts, false))
    }

    /// The next complete frame in the buffer, consumed (`self.start` moves past it).
    fn next_frame(&mut self) -> anyhow::Result<Option<ws_frame::Frame>> {
        let frame = ws_frame::parse(&self.buf[self.start..self.filled], MAX_FRAME)?;
        if let Some(frame) = frame {
            self.start += frame.len;
        }
        Ok(frame)
    }

    /// Moves unparsed bytes to the front, grows the buffer when it is full, and reads once.
    async fn read_more(&mut self) -> anyhow::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.filled == self.buf.len() {
            // A frame larger than the buffer, or a burst: either way, more room.
            let grown = (self.buf.len() * 2).min(MAX_FRAME);
            if grown == self.buf.len() {
                bail!("server frame over {MAX_FRAME} bytes");
            }
            self.buf.resize(grown, 0);
        }
        let read = self.stream.read(&mut self.buf[self.filled..]).await?;
        self.filled += read;
        if self.filled == self.buf.len() && self.buf.len() < BULK_BUFFER {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(read)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
