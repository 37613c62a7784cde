//! Server-to-client WebSocket frames, encoded once and written in batches.
//!
//! Server frames are never masked (RFC 6455 §5.1), so a notification's frame is the same bytes for every
//! recipient: [`text`] encodes header + payload once into one `Bytes` that every outbox shares.
//! [`Pending`] writes everything a session has queued with vectored writes: many frames per syscall.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::OpCode;

use crate::stream::Stream;

/// Frames gathered into one vectored write at most (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 256;

/// A final, unmasked frame of `opcode` carrying `payload`.
#[must_use]
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.put_u8(0x80 | opcode as u8);
    if len < 126 {
        // len < 126 fits the 7-bit length field.
        buf.put_u8(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(len16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.put_slice(payload);
    buf.freeze()
}

/// A text frame carrying `json`.
#[must_use]
pub fn text(json: &[u8]) -> Bytes {
    encode(OpCode::Text, json)
}

/// A close frame with `code` and a short `reason` (truncated to fit a control frame).
#[must_use]
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// Frames taken from a session's outbox and not yet fully written, written with vectored writes straight
/// from the shared frames: many frames per syscall, no copy. Nothing here waits while a write is possible.
#[derive(Default)]
pub struct Pending {
    // Bound: frames taken from the outbox in one drain, so ≤ its `max_bytes`.
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written by an earlier partial write.
    offset: usize,
}

impl Pending {
    /// Nothing left to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The queue to drain an outbox into.
    pub fn frames(&mut self) -> &mut VecDeque<Bytes> {
        &mut self.frames
    }

    /// Bytes left to write.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum::<usize>() - self.offset
    }

    /// Writes as much as the socket takes now; `Ok` with frames left when it would block.
    pub fn try_write(&mut self, stream: &mut Stream) -> io::Result<()> {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(&self.frames) {
                *slot = IoSlice::new(if count == 0 { &frame[self.offset..] } else { frame });
                count += 1;
            }
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        // Idle sessions hold no queue memory.
        self.frames = VecDeque::new();
        match stream.try_flush() {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => Err(err),
            _ => Ok(()),
        }
    }

    /// Writes everything, waiting for the socket as needed.
    pub async fn write_all(&mut self, stream: &mut Stream) -> io::Result<()> {
        loop {
            self.try_write(stream)?;
            if self.is_empty() && !stream.wants_flush() {
                return Ok(());
            }
            stream.writable().await?;
        }
    }

    /// Drops every frame not yet begun: after a partial write, the rest of that frame must still go out before
    /// anything else (a close) can.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.offset > 0);
        self.frames.truncate(keep);
    }

    fn advance(&mut self, mut written: usize) {
        while let Some(front) = self.frames.front() {
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header lengths switch at 126 and 65536 bytes, as RFC 6455 §5.2 says.
    #[test]
    fn encodes_all_three_length_forms() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = text(&[b'x'; 126]);
        assert_eq!(&mid[..4], &[0x81, 126, 0, 126]);
        assert_eq!(mid.len(), 4 + 126);
        let big = text(&vec![b'x'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    /// Close frames carry the code big-endian, and reasons are cut to the 125-byte control limit.
    #[test]
    fn close_frames_fit_control_limit() {
        assert_eq!(&close(4001, "x")[..], &[0x88, 3, 0x0f, 0xa1, b'x']);
        assert_eq!(close(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
    }

    /// Every queued frame is written, in order, also through partial writes and a full socket buffer.
    #[tokio::test]
    async fn writes_all_frames_through_partial_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut client = Stream::Plain(client);
        let (mut server, _) = listener.accept().await.unwrap();
        // More than the kernel buffers hold, so writes go partial and wait for the reader.
        let mut pending = Pending::default();
        pending.frames().extend((0..10_000u32).map(|i| text(&[(i % 251) as u8; 1_000])));
        let expected: Vec<u8> = pending.frames.iter().flat_map(|f| f.to_vec()).collect();
        let read = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            tokio::io::AsyncReadExt::read_exact(&mut server, &mut got).await.unwrap();
            assert!(got == expected, "bytes differ");
        });
        pending.write_all(&mut client).await.unwrap();
        assert!(pending.is_empty());
        read.await.unwrap();
    }
}
