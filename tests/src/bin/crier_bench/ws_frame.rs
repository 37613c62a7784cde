//! WebSocket framing for the load generator (RFC 6455 §5): client frames out (masked, as the RFC requires),
//! server frames in (never masked). Pure functions over byte slices, so the receive loop can parse many
//! frames per `read` without copying them.

/// Opcodes the bench cares about.
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One complete server frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The frame's opcode (low four bits of the first byte).
    pub opcode: u8,
    /// Where the payload starts, relative to the start of the frame.
    pub payload_start: usize,
    /// Header plus payload length: where the next frame starts.
    pub len: usize,
}

impl Frame {
    /// The payload of this frame, given the buffer it was parsed from.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_start..self.len]
    }
}

/// Why a server frame cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Servers must not mask (RFC 6455 §5.1).
    Masked,
    /// Longer than the receiver is willing to buffer.
    TooLong(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Masked => write!(f, "server sent a masked frame"),
            Self::TooLong(len) => write!(f, "server frame of {len} bytes is over the bench's limit"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses the frame at the start of `buf`; `Ok(None)` when `buf` holds only part of it.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<Frame>, FrameError> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if second & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header, payload_len) = match second & 0x7f {
        126 if buf.len() >= 4 => (4, u64::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut len = [0; 8];
            len.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(len))
        }
        126 | 127 => return Ok(None),
        short => (2, u64::from(short)),
    };
    let total = usize::try_from(payload_len)
        .ok()
        .and_then(|len| len.checked_add(header))
        .filter(|&total| total <= max_len)
        .ok_or(FrameError::TooLong(payload_len))?;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame { opcode: first & 0x0f, payload_start: header, len: total }))
}

/// Appends a final, masked client frame of `opcode` carrying `payload` to `out`.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        // Fits the 7-bit length field.
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            len @ 0..=125 => out.push(len as u8),
            len @ 126..=65535 => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// All three length forms parse, and the payload slice is exactly what was framed.
    #[test]
    fn parses_each_length_form() {
        for len in [0, 125, 126, 204, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let bytes = server_frame(OP_TEXT, &payload);
            let frame = parse(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!((frame.opcode, frame.len), (OP_TEXT, bytes.len()), "len {len}");
            assert_eq!(frame.payload(&bytes), &payload[..]);
        }
    }

    /// Any strict prefix of a frame is "need more", never an error or a wrong frame.
    #[test]
    fn prefixes_need_more_bytes() {
        for len in [3, 204, 70_000] {
            let bytes = server_frame(OP_TEXT, &vec![b'y'; len]);
            for cut in [0, 1, 2, 3, 9, bytes.len() - 1].into_iter().filter(|&cut| cut < bytes.len()) {
                assert_eq!(parse(&bytes[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    /// Several frames back to back are found one after the other.
    #[test]
    fn walks_consecutive_frames() {
        let mut bytes = server_frame(OP_TEXT, b"{\"a\":1}");
        bytes.extend(server_frame(OP_PING, b"p"));
        bytes.extend(server_frame(OP_CLOSE, &[0x03, 0xe8]));
        let mut at = 0;
        let mut opcodes = Vec::new();
        while let Some(frame) = parse(&bytes[at..], 1024).unwrap() {
            opcodes.push(frame.opcode);
            at += frame.len;
        }
        assert_eq!((opcodes, at), (vec![OP_TEXT, OP_PING, OP_CLOSE], bytes.len()));
    }

    /// Masked server frames and frames over the limit are refused.
    #[test]
    fn refuses_masked_and_oversized() {
        assert_eq!(parse(&[0x81, 0x81, 0, 0, 0, 0, b'x'], 1024), Err(FrameError::Masked));
        assert_eq!(parse(&server_frame(OP_TEXT, &[0; 300]), 100), Err(FrameError::TooLong(300)));
    }

    /// A masked client frame unmasks back to its payload.
    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        let payload = br#"{"action":"auth","userId":"u1"}"#;
        let mut out = Vec::new();
        encode_masked(&mut out, OP_TEXT, payload, mask);
        assert_eq!(&out[..2], &[0x81, 0x80 | payload.len() as u8]);
        assert_eq!(&out[2..6], &mask);
        let unmasked: Vec<u8> = out[6..].iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k).collect();
        assert_eq!(unmasked, payload);
    }
}
