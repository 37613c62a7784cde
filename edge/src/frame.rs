//! Server-to-client WebSocket frames, encoded once and written in batches.
//!
//! Server frames are never masked (RFC 6455 §5.1), so a notification's frame is the same bytes for every
//! recipient: [`text`] encodes header + payload once into one `Bytes` that every outbox shares. The
//! [`FrameWriter`] writes everything a session has queued with vectored writes: many frames per syscall.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::OpCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

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

/// Writes queued frames to a socket's write half.
pub struct FrameWriter<W> {
    io: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps the write half of an upgraded connection.
    pub fn new(io: W) -> Self {
        Self { io }
    }

    /// Writes and removes every frame of `frames`, as few syscalls as the kernel allows.
    pub async fn write_all(&mut self, frames: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        // Bytes of the front frame already written by an earlier partial write.
        let mut offset = 0;
        while !frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in frames.iter().take(MAX_IOVECS).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &frame[offset..] } else { frame });
                count += 1;
            }
            let mut written = self.io.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while let Some(front) = frames.front() {
                let left = front.len() - offset;
                if written < left {
                    offset += written;
                    break;
                }
                written -= left;
                offset = 0;
                frames.pop_front();
            }
        }
        self.io.flush().await
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

    /// Every queued frame is written, in order, even when the socket accepts only a few bytes at a time.
    #[tokio::test]
    async fn writes_all_frames_through_partial_writes() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut writer = FrameWriter::new(client);
        let mut frames: VecDeque<Bytes> = (0..50u8).map(|i| text(&[i; 20])).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let read = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            tokio::io::AsyncReadExt::read_exact(&mut server, &mut got).await.unwrap();
            assert_eq!(got, expected);
        });
        writer.write_all(&mut frames).await.unwrap();
        assert!(frames.is_empty());
        read.await.unwrap();
    }
}
