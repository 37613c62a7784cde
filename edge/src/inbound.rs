//! Client messages off the wire: RFC 6455 client frames parsed from a read buffer that exists only while
//! bytes are waiting, reassembled into messages under a total size cap, text checked for UTF-8, control
//! frames answered through the session's outbox.
//!
//! Why not fastwebsockets' reader: it keeps an 8 KiB buffer per connection for the connection's whole life,
//! four times the 2 KiB budget for an idle subscribed connection, and its fragment collector has no cap on a
//! fragmented message's total size. fastwebsockets still does the HTTP upgrade and unmasking here.
//! A frame's declared length is checked against the cap before any of it is buffered, and the cap covers the
//! partial message and the frame being buffered together: a connection holds at most the cap, a frame header
//! and one read chunk, however it fragments. Buffers are sized exactly and given back after each message.

use bytes::Bytes;
use fastwebsockets::OpCode;

use crate::error::CloseReason;
use crate::frame;
use crate::outbox::Outbox;
use crate::stream::Stream;

/// Bytes asked of the socket per read; the buffer grows past it only for a message that needs it.
const READ_CHUNK: usize = 4 * 1024;

/// One complete client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text message, valid UTF-8.
    Text(Vec<u8>),
    /// A binary message (crier's protocol has none).
    Binary,
    /// A WebSocket ping, already answered: no message, but it costs the sender like one.
    Ping,
    /// A non-final fragment, kept for the message being assembled: it costs the sender like a message.
    Fragment,
    /// The client closed; this is the echo to send back (RFC 6455 §5.5.1), its code and reason.
    Close(Bytes),
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum InboundError {
    /// A message exceeded the size cap.
    TooBig,
    /// A text message was not UTF-8.
    InvalidUtf8,
    /// The client broke the WebSocket framing rules.
    Protocol(&'static str),
    /// The connection is gone; nothing can be sent.
    Gone,
}

impl InboundError {
    /// The close to answer with, if the connection can still take one.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::TooBig => Some(CloseReason::TooBig),
            Self::InvalidUtf8 => Some(CloseReason::InvalidUtf8),
            Self::Protocol(_) => Some(CloseReason::ProtocolError),
            Self::Gone => None,
        }
    }
}

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header length: where the payload starts.
    start: usize,
    /// Payload length.
    len: usize,
}

/// Parses the header at the start of `buf`: `Ok(None)` until it is complete. Data payloads over `max` are
/// refused from the header alone (control frames have their own 125-byte limit).
fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, InboundError> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err(InboundError::Protocol("reserved bits set"));
    }
    let opcode = OpCode::try_from(first & 0x0f).map_err(|_| InboundError::Protocol("unknown opcode"))?;
    let fin = first & 0x80 != 0;
    if second & 0x80 == 0 {
        return Err(InboundError::Protocol("client frame not masked"));
    }
    let (at, len) = match second & 0x7f {
        126 => (4, buf.get(2..4).map(|b| u64::from(u16::from_be_bytes([b[0], b[1]])))),
        127 => (10, buf.get(2..10).map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))),
        short => (2, Some(u64::from(short))),
    };
    let Some(len) = len else { return Ok(None) };
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && (!fin || len > 125) {
        return Err(InboundError::Protocol("fragmented or oversized control frame"));
    }
    let len = usize::try_from(len).ok().filter(|&len| control || len <= max).ok_or(InboundError::TooBig)?;
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    Ok(Some(Header { fin, opcode, mask, start: at + 4, len }))
}

/// Reads client messages from a connection's socket.
pub struct MessageReader {
    /// Received bytes not yet parsed; no allocation while nothing is waiting.
    // Bound: one message (≤ `max_bytes`, --max-frame-bytes, else 1009) plus one READ_CHUNK: `fill` reads
    // only after `next` has consumed every complete frame.
    buf: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and the bytes so far. Boxed: rare, and the
    /// reader is part of every idle connection.
    // Bound: `max_bytes`; a longer fragmented message is refused with 1009.
    partial: Option<Box<(OpCode, Vec<u8>)>>,
    /// u32, not usize: the reader is part of every idle connection, and this keeps it 8 bytes smaller.
    max_bytes: u32,
    /// Set on every frame (pongs included); the dead-peer check reads and clears it.
    pub heard: bool,
}

impl MessageReader {
    /// A reader refusing messages over `max_bytes` (at most 4 GiB); `early` holds bytes read along with the
    /// handshake.
    #[must_use]
    pub fn new(max_bytes: usize, early: &[u8]) -> Self {
        let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX);
        Self { buf: early.to_vec(), partial: None, max_bytes, heard: false }
    }

    fn max_bytes(&self) -> usize {
        usize::try_from(self.max_bytes).unwrap_or(usize::MAX)
    }

    /// Reads up to a chunk of what the socket has (after it reported readable): `Ok(false)` when it had
    /// nothing after all. Grows the buffer only by what arrived (a frame's full size is reserved once its
    /// header is known), never by doubling.
    pub fn fill(&mut self, stream: &mut Stream) -> Result<bool, InboundError> {
        let mut chunk = [0; READ_CHUNK];
        match stream.try_read(&mut chunk) {
            Ok(0) => Err(InboundError::Gone),
            Ok(read) => {
                self.buf.reserve_exact(read);
                self.buf.extend_from_slice(&chunk[..read]);
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => Err(InboundError::Gone),
        }
    }

    /// The next complete message among the bytes read so far, if any. Pongs and close echoes go to
    /// `outbox`.
    pub fn next(&mut self, outbox: &Outbox) -> Result<Option<Inbound>, InboundError> {
        let mut used = 0;
        let mut incomplete = 0;
        let max_bytes = self.max_bytes();
        let result = loop {
            let room = max_bytes.saturating_sub(self.partial.as_ref().map_or(0, |p| p.1.len()));
            let header = match parse_header(&self.buf[used..], room) {
                Ok(Some(header)) => header,
                Ok(None) => break Ok(None),
                Err(err) => break Err(err),
            };
            let end = used + header.start + header.len;
            let Some(payload) = self.buf.get_mut(used + header.start..end) else {
                incomplete = end - used;
                break Ok(None);
            };
            fastwebsockets::unmask(payload, header.mask);
            used = end;
            self.heard = true;
            let message = match header.opcode {
                OpCode::Ping => {
                    let _ = outbox.push(frame::encode(OpCode::Pong, payload));
                    Ok(Some(Inbound::Ping))
                }
                OpCode::Close => close_echo(payload),
                _ => accumulate(&mut self.partial, max_bytes, header.opcode, header.fin, payload),
            };
            match message {
                Ok(None) => {}
                other => break other,
            }
        };
        self.consume(used);
        // The frame being received gets its room once, exactly.
        self.buf.reserve_exact(incomplete.saturating_sub(self.buf.len()));
        result
    }

    /// Reads and drops whatever the socket has, without parsing: for a closing connection whose framing can
    /// no longer be followed. `Err(Gone)` once the peer has hung up.
    pub fn discard(&mut self, stream: &mut Stream) -> Result<(), InboundError> {
        self.buf = Vec::new();
        self.partial = None;
        let mut sink = [0; READ_CHUNK];
        loop {
            match stream.try_read(&mut sink) {
                Ok(0) => return Err(InboundError::Gone),
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(InboundError::Gone),
            }
        }
    }

    /// Drops `used` parsed bytes; frees the buffer once nothing is left in it, and shrinks it to what is left
    /// (the start of the next frame) after a big message.
    fn consume(&mut self, used: usize) {
        if used == self.buf.len() {
            self.buf = Vec::new();
        } else if used > 0 {
            self.buf.drain(..used);
            if self.buf.capacity() > READ_CHUNK.max(2 * self.buf.len()) {
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Bytes this reader holds on to: read buffer and partial message.
    #[cfg(test)]
    fn retained(&self) -> usize {
        self.buf.capacity() + self.partial.as_ref().map_or(0, |p| p.1.capacity())
    }
}

/// Echoes a well-formed close (RFC 6455 §5.5.1); a malformed one is a protocol error.
fn close_echo(payload: &[u8]) -> Result<Option<Inbound>, InboundError> {
    if payload.len() == 1 {
        return Err(InboundError::Protocol("close frame with a one-byte payload"));
    }
    if payload.len() > 2 && std::str::from_utf8(&payload[2..]).is_err() {
        return Err(InboundError::InvalidUtf8);
    }
    Ok(Some(Inbound::Close(frame::encode(OpCode::Close, payload))))
}

/// Adds one frame to the message being assembled in `partial`; returns the message once complete.
fn accumulate(
    partial: &mut Option<Box<(OpCode, Vec<u8>)>>,
    max_bytes: usize,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
) -> Result<Option<Inbound>, InboundError> {
    let (opcode, data) = match (opcode, partial.take()) {
        (OpCode::Close, _) => return Err(InboundError::Protocol("close frame in the data path")),
        (OpCode::Ping | OpCode::Pong, kept) => {
            *partial = kept;
            return Ok(None);
        }
        (OpCode::Continuation, Some(kept)) => {
            let (opcode, mut data) = *kept;
            data.reserve_exact(payload.len());
            data.extend_from_slice(payload);
            (opcode, data)
        }
        (OpCode::Text | OpCode::Binary, None) => (opcode, payload.to_vec()),
        _ => return Err(InboundError::Protocol("unexpected continuation or interleaved message")),
    };
    if data.len() > max_bytes {
        return Err(InboundError::TooBig);
    }
    if !fin {
        *partial = Some(Box::new((opcode, data)));
        return Ok(Some(Inbound::Fragment));
    }
    match opcode {
        OpCode::Text if std::str::from_utf8(&data).is_err() => Err(InboundError::InvalidUtf8),
        OpCode::Text => Ok(Some(Inbound::Text(data))),
        _ => Ok(Some(Inbound::Binary)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Assembler {
        partial: Option<Box<(OpCode, Vec<u8>)>>,
        max: usize,
    }

    impl Assembler {
        fn accumulate(
            &mut self,
            opcode: OpCode,
            fin: bool,
            payload: &[u8],
        ) -> Result<Option<Inbound>, InboundError> {
            accumulate(&mut self.partial, self.max, opcode, fin, payload)
        }
    }

    fn reader(max: usize) -> Assembler {
        Assembler { partial: None, max }
    }

    /// Fragments are joined, and the cap applies to the joined message, not to each fragment.
    #[test]
    fn fragmented_messages_are_capped_as_a_whole() {
        let mut r = reader(8);
        assert_eq!(r.accumulate(OpCode::Text, false, b"abcd"), Ok(Some(Inbound::Fragment)));
        assert_eq!(r.accumulate(OpCode::Ping, true, b""), Ok(None));
        assert_eq!(
            r.accumulate(OpCode::Continuation, true, b"ef"),
            Ok(Some(Inbound::Text(b"abcdef".to_vec())))
        );
        assert_eq!(r.accumulate(OpCode::Text, false, b"abcde"), Ok(Some(Inbound::Fragment)));
        assert_eq!(r.accumulate(OpCode::Continuation, false, b"fghi"), Err(InboundError::TooBig));
    }

    /// UTF-8 split across fragments is fine; invalid UTF-8 is refused once the message is whole.
    #[test]
    fn utf8_is_checked_on_the_whole_message() {
        let mut r = reader(64);
        let e_acute = "é".as_bytes();
        assert_eq!(r.accumulate(OpCode::Text, false, &e_acute[..1]), Ok(Some(Inbound::Fragment)));
        assert_eq!(
            r.accumulate(OpCode::Continuation, true, &e_acute[1..]),
            Ok(Some(Inbound::Text(e_acute.to_vec())))
        );
        assert_eq!(r.accumulate(OpCode::Text, true, &[0xff, 0xfe]), Err(InboundError::InvalidUtf8));
    }

    /// A masked client frame carrying `payload`.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7, 1, 9, 3];
        let mut out = vec![first];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
        out
    }

    fn read_all(max: usize, bytes: &[u8]) -> (Vec<Inbound>, Option<InboundError>, Outbox) {
        let outbox = Outbox::new(1 << 20);
        let mut reader = MessageReader::new(max, bytes);
        let mut messages = Vec::new();
        loop {
            match reader.next(&outbox) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => return (messages, None, outbox),
                Err(err) => return (messages, Some(err), outbox),
            }
        }
    }

    /// Frames of every length form unmask to their payload; several in one read come out one by one, and
    /// a ping in between is answered with a pong carrying its payload (and reported, to be charged).
    #[test]
    fn parses_masked_frames_of_every_length_form() {
        let long = "x".repeat(70_000);
        let mut bytes = client_frame(0x81, b"{\"a\":1}");
        bytes.extend(client_frame(0x89, b"hi"));
        bytes.extend(client_frame(0x81, "y".repeat(300).as_bytes()));
        bytes.extend(client_frame(0x81, long.as_bytes()));
        let (messages, error, outbox) = read_all(100_000, &bytes);
        assert_eq!(error, None);
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0], Inbound::Text(b"{\"a\":1}".to_vec()));
        assert_eq!(messages[1], Inbound::Ping);
        assert_eq!(messages[3], Inbound::Text(long.into_bytes()));
        let mut replies = std::collections::VecDeque::new();
        outbox.drain_into(&mut replies).unwrap();
        assert_eq!(replies, [crate::frame::encode(OpCode::Pong, b"hi")]);
    }

    /// A frame cut anywhere is "need more bytes", never an error or a message.
    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = client_frame(0x81, "z".repeat(200).as_bytes());
        for cut in [1, 2, 3, 5, 8, bytes.len() - 1] {
            let (messages, error, _) = read_all(1024, &bytes[..cut]);
            assert!(messages.is_empty() && error.is_none(), "cut at {cut}");
        }
    }

    /// Framing violations are protocol errors; a declared length over the cap is refused from the header.
    #[test]
    fn framing_violations_are_refused() {
        let unmasked = [0x81, 0x01, b'x'];
        assert!(matches!(read_all(64, &unmasked).1, Some(InboundError::Protocol(_))));
        let reserved = client_frame(0xC1, b"x");
        assert!(matches!(read_all(64, &reserved).1, Some(InboundError::Protocol(_))));
        let unknown_opcode = client_frame(0x83, b"x");
        assert!(matches!(read_all(64, &unknown_opcode).1, Some(InboundError::Protocol(_))));
        let fragmented_ping = client_frame(0x09, b"x");
        assert!(matches!(read_all(64, &fragmented_ping).1, Some(InboundError::Protocol(_))));
        let header_only = &client_frame(0x81, &[b'a'; 70_000])[..10];
        assert_eq!(read_all(1024, header_only).1, Some(InboundError::TooBig));
    }

    /// A close ends reading and carries its echo; a close with a one-byte payload is a protocol error.
    #[test]
    fn close_is_echoed() {
        let (messages, error, _) = read_all(64, &client_frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        let echo = crate::frame::encode(OpCode::Close, &[0x03, 0xe8, b'o', b'k']);
        assert_eq!((messages, error), (vec![Inbound::Close(echo)], None));
        assert!(matches!(read_all(64, &client_frame(0x88, &[3])).1, Some(InboundError::Protocol(_))));
    }

    /// The partial message and the frame being buffered share the cap: a continuation that could not fit is
    /// refused from its header, before any of its payload is buffered; a ping in between still passes.
    #[test]
    fn partial_and_buffered_bytes_share_the_cap() {
        let mut bytes = client_frame(0x01, &[b'a'; 1_000]);
        bytes.extend(client_frame(0x89, &[b'p'; 100]));
        bytes.extend(&client_frame(0x80, &[b'b'; 100])[..6]);
        let (messages, error, _) = read_all(1_024, &bytes);
        assert_eq!(messages, [Inbound::Fragment, Inbound::Ping]);
        assert_eq!(error, Some(InboundError::TooBig));
    }

    /// A big message's memory is given back once it is read: what stays is the start of the next frame. While
    /// it arrives, the reader holds the frame, its header and at most one read chunk more.
    #[tokio::test]
    async fn a_big_message_gives_its_memory_back() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut server = Stream::Plain(listener.accept().await.unwrap().0);
        let mut bytes = client_frame(0x81, &[b'x'; 60_000]);
        bytes.extend(&client_frame(0x81, b"next")[..3]);
        client.write_all(&bytes).await.unwrap();
        let outbox = Outbox::new(1 << 20);
        let mut reader = MessageReader::new(64 * 1024, &[]);
        let mut peak = 0;
        let message = loop {
            if let Some(message) = reader.next(&outbox).unwrap() {
                break message;
            }
            std::future::poll_fn(|cx| server.poll_read_ready(cx)).await.unwrap();
            reader.fill(&mut server).unwrap();
            peak = peak.max(reader.retained());
        };
        assert_eq!(message, Inbound::Text(vec![b'x'; 60_000]));
        assert!(peak <= 60_000 + 14 + READ_CHUNK, "peak {peak}");
        assert!(reader.retained() < 64, "kept {} bytes", reader.retained());
    }

    /// A continuation without a start is a protocol error.
    #[test]
    fn stray_continuation_is_a_protocol_error() {
        assert!(matches!(
            reader(8).accumulate(OpCode::Continuation, true, b"x"),
            Err(InboundError::Protocol(_))
        ));
    }
}
