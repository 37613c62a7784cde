//! Client messages off the wire: frames reassembled into messages under a total size cap, text checked for
//! UTF-8, control frames answered through the session's outbox.
//!
//! fastwebsockets' own fragment collector has no cap on a fragmented message's total size, so the
//! reassembly lives here: every message, fragmented or not, is limited to `max_bytes`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use tokio::io::AsyncRead;

use crate::error::CloseCode;
use crate::frame;
use crate::outbox::Outbox;

/// One complete client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text message, valid UTF-8.
    Text(Vec<u8>),
    /// A binary message (crier's protocol has none).
    Binary,
    /// The client closed; the echo is already queued.
    Close,
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum InboundError {
    /// A message exceeded the size cap.
    TooBig,
    /// A text message was not UTF-8.
    InvalidUtf8,
    /// The client broke the WebSocket framing rules.
    Protocol(String),
    /// The connection is gone; nothing can be sent.
    Gone,
}

impl InboundError {
    /// The close code to answer with, if the connection can still take one.
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::TooBig => Some(CloseCode::TooBig),
            Self::InvalidUtf8 => Some(CloseCode::InvalidPayload),
            Self::Protocol(_) => Some(CloseCode::ProtocolError),
            Self::Gone => None,
        }
    }
}

/// Reads client messages from the read half of an upgraded connection.
pub struct MessageReader<R> {
    ws: WebSocketRead<R>,
    /// A fragmented message being reassembled: its opcode and the bytes so far.
    partial: Option<(OpCode, Vec<u8>)>,
    max_bytes: usize,
    /// Set on every frame read (pongs included): the session's dead-peer check clears and reads it.
    heard: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Reads from `read`, refusing messages over `max_bytes`.
    pub fn new(read: R, max_bytes: usize) -> Self {
        let (mut ws, _) =
            fastwebsockets::after_handshake_split(read, tokio::io::sink(), fastwebsockets::Role::Server);
        ws.set_max_message_size(max_bytes + 1);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        Self { ws, partial: None, max_bytes, heard: Arc::default() }
    }

    /// The flag set whenever a frame arrives.
    #[must_use]
    pub fn heard(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.heard)
    }

    /// The next complete message. Pongs and close echoes go to `outbox`.
    pub async fn read(&mut self, outbox: &Outbox) -> Result<Inbound, InboundError> {
        let mut obligated = |reply: Frame<'_>| {
            let _ = outbox.push(frame::encode(reply.opcode, &reply.payload));
            std::future::ready(Ok::<(), Infallible>(()))
        };
        loop {
            let frame = self.ws.read_frame(&mut obligated).await.map_err(from_ws_error)?;
            self.heard.store(true, Ordering::Relaxed);
            let message =
                accumulate(&mut self.partial, self.max_bytes, frame.opcode, frame.fin, &frame.payload)?;
            if let Some(message) = message {
                return Ok(message);
            }
        }
    }
}

/// Adds one frame to the message being assembled in `partial`; returns the message once complete.
fn accumulate(
    partial: &mut Option<(OpCode, Vec<u8>)>,
    max_bytes: usize,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
) -> Result<Option<Inbound>, InboundError> {
    let (opcode, data) = match (opcode, partial.take()) {
        (OpCode::Close, _) => return Ok(Some(Inbound::Close)),
        (OpCode::Ping | OpCode::Pong, kept) => {
            *partial = kept;
            return Ok(None);
        }
        (OpCode::Continuation, Some((opcode, mut data))) => {
            data.extend_from_slice(payload);
            (opcode, data)
        }
        (OpCode::Text | OpCode::Binary, None) => (opcode, payload.to_vec()),
        _ => return Err(InboundError::Protocol("unexpected continuation or interleaved message".into())),
    };
    if data.len() > max_bytes {
        return Err(InboundError::TooBig);
    }
    if !fin {
        *partial = Some((opcode, data));
        return Ok(None);
    }
    match opcode {
        OpCode::Text if std::str::from_utf8(&data).is_err() => Err(InboundError::InvalidUtf8),
        OpCode::Text => Ok(Some(Inbound::Text(data))),
        _ => Ok(Some(Inbound::Binary)),
    }
}

fn from_ws_error(err: WebSocketError) -> InboundError {
    match err {
        WebSocketError::FrameTooLarge => InboundError::TooBig,
        WebSocketError::InvalidUTF8 => InboundError::InvalidUtf8,
        WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) | WebSocketError::ConnectionClosed => {
            InboundError::Gone
        }
        other => InboundError::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Assembler {
        partial: Option<(OpCode, Vec<u8>)>,
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
        assert_eq!(r.accumulate(OpCode::Text, false, b"abcd"), Ok(None));
        assert_eq!(r.accumulate(OpCode::Ping, true, b""), Ok(None));
        assert_eq!(
            r.accumulate(OpCode::Continuation, true, b"ef"),
            Ok(Some(Inbound::Text(b"abcdef".to_vec())))
        );
        assert_eq!(r.accumulate(OpCode::Text, false, b"abcde"), Ok(None));
        assert_eq!(r.accumulate(OpCode::Continuation, false, b"fghi"), Err(InboundError::TooBig));
    }

    /// UTF-8 split across fragments is fine; invalid UTF-8 is refused once the message is whole.
    #[test]
    fn utf8_is_checked_on_the_whole_message() {
        let mut r = reader(64);
        let e_acute = "é".as_bytes();
        assert_eq!(r.accumulate(OpCode::Text, false, &e_acute[..1]), Ok(None));
        assert_eq!(
            r.accumulate(OpCode::Continuation, true, &e_acute[1..]),
            Ok(Some(Inbound::Text(e_acute.to_vec())))
        );
        assert_eq!(r.accumulate(OpCode::Text, true, &[0xff, 0xfe]), Err(InboundError::InvalidUtf8));
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
