//! The browser protocol (DESIGN.md §2): client frames in, server frames out. Pure: no I/O, no state.
//!
//! Field names and messages are those of the replaced system, which existing clients depend on; change
//! nothing here without a compatibility note.

use bytes::Bytes;
use crier_proto::Position;
use serde::{Deserialize, Serialize};

use crate::frame;

/// `message` of the `ready` frame.
pub const READY_MESSAGE: &str = "Send auth message with JWT token";

/// A frame a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Authenticate with a JWT, or with a bare user id in dev auth.
    Auth {
        /// The connection JWT.
        token: Option<String>,
        /// Dev auth only.
        #[serde(rename = "userId")]
        user_id: Option<String>,
        /// Opt into notification frames with positions (same as `?positions=1`).
        #[serde(default)]
        positions: bool,
    },
    /// Start receiving a conversation's notifications.
    Subscribe {
        /// The conversation.
        #[serde(rename = "conversationId")]
        conversation_id: String,
        /// Recovery position of the last notification the client saw.
        since: Option<String>,
        /// A subscription token for this user and conversation (DESIGN.md §3).
        token: Option<String>,
        /// Also deliver the newest `last` (1..=100) retained notifications first; `since` wins.
        last: Option<i64>,
    },
    /// Stop receiving a conversation's notifications.
    Unsubscribe {
        /// The conversation.
        #[serde(rename = "conversationId")]
        conversation_id: String,
    },
    /// Application-level keepalive; answered with `pong`.
    Ping,
    /// Replace the connection token before it expires; the new one must carry the same user.
    Refresh {
        /// The new connection JWT.
        token: String,
    },
}

/// Why a client frame could not be understood; each maps to one error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, not an object, or a known action with missing or mistyped fields.
    Invalid,
    /// A JSON object whose `action` crier does not know.
    UnknownAction(String),
}

impl DecodeError {
    /// The `message` of the error frame answering it.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Invalid => "Invalid message".to_owned(),
            Self::UnknownAction(action) => format!("Unknown action: {action}"),
        }
    }
}

/// Parses one client text frame.
pub fn decode(text: &[u8]) -> Result<ClientFrame, DecodeError> {
    serde_json::from_slice(text).map_err(|_| {
        #[derive(Deserialize)]
        struct ActionOnly {
            action: String,
        }
        match serde_json::from_slice::<ActionOnly>(text) {
            Ok(ActionOnly { action }) if !KNOWN_ACTIONS.contains(&action.as_str()) => {
                DecodeError::UnknownAction(action.chars().take(64).collect())
            }
            _ => DecodeError::Invalid,
        }
    })
}

const KNOWN_ACTIONS: &[&str] = &["auth", "subscribe", "unsubscribe", "ping", "refresh"];

/// A frame the server sends (other than notifications, which are the published payload verbatim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// Sent on open.
    Ready {
        /// Always [`READY_MESSAGE`].
        message: &'a str,
    },
    /// Auth succeeded.
    Authenticated {
        /// The authenticated user.
        #[serde(rename = "userId")]
        user_id: &'a str,
    },
    /// A subscription is live: every notification appended from now on will be delivered.
    Subscribed {
        /// The conversation.
        #[serde(rename = "conversationId")]
        conversation_id: &'a str,
        /// Present when the client asked to recover with `since`.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// For sessions with positions: a position to resubscribe from (`since`) if the connection drops
        /// before any notification arrives.
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<String>,
    },
    /// A subscription ended, on request or (with a reason) by the server.
    Unsubscribed {
        /// The conversation.
        #[serde(rename = "conversationId")]
        conversation_id: &'a str,
        /// Why the server ended it; absent when the client asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    /// Answer to `{"action":"ping"}`.
    Pong,
    /// A `refresh` succeeded.
    Refreshed {
        /// `exp` of the new token, seconds since the Unix epoch.
        #[serde(rename = "expiresAt")]
        expires_at: u64,
    },
    /// Something the client sent was refused; the connection stays open unless a close follows.
    Error {
        /// Human-readable reason, e.g. "Invalid message".
        message: &'a str,
        /// The conversation concerned, if any.
        #[serde(rename = "conversationId", skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// The frame as an encoded WebSocket text frame.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        // Serializing these plain structs into a Vec cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        frame::text(&json)
    }

    /// An error frame without a conversation.
    #[must_use]
    pub fn error(message: &str) -> ServerFrame<'_> {
        ServerFrame::Error { message, conversation_id: None }
    }
}

/// `{"type":"notification","conversationId":..,"position":..,"data":<payload verbatim>}`, the frame of
/// sessions that opted into positions. Encoded once per notification and shared.
#[must_use]
pub fn notification(conversation_id: &str, position: &Position, payload: &[u8]) -> Bytes {
    let conversation = serde_json::to_string(conversation_id).unwrap_or_default();
    let position = position.to_string();
    let mut json = Vec::with_capacity(payload.len() + conversation.len() + position.len() + 64);
    json.extend_from_slice(br#"{"type":"notification","conversationId":"#);
    json.extend_from_slice(conversation.as_bytes());
    json.extend_from_slice(br#","position":""#);
    json.extend_from_slice(position.as_bytes());
    json.extend_from_slice(br#"","data":"#);
    json.extend_from_slice(payload);
    json.push(b'}');
    frame::text(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &ServerFrame<'_>) -> String {
        let bytes = frame.encode();
        // Short test frames have a 2-byte header.
        String::from_utf8(bytes[2..].to_vec()).unwrap()
    }

    /// Server frames are byte-for-byte those of the replaced system.
    #[test]
    fn server_frames_match_the_replaced_system() {
        assert_eq!(
            json(&ServerFrame::Ready { message: READY_MESSAGE }),
            r#"{"type":"ready","message":"Send auth message with JWT token"}"#
        );
        assert_eq!(
            json(&ServerFrame::Authenticated { user_id: "u1" }),
            r#"{"type":"authenticated","userId":"u1"}"#
        );
        assert_eq!(
            json(&ServerFrame::Subscribed { conversation_id: "c1", recovered: None, position: None }),
            r#"{"type":"subscribed","conversationId":"c1"}"#
        );
        assert_eq!(
            json(&ServerFrame::Unsubscribed { conversation_id: "c1", reason: None }),
            r#"{"type":"unsubscribed","conversationId":"c1"}"#
        );
        assert_eq!(json(&ServerFrame::Pong), r#"{"type":"pong"}"#);
        assert_eq!(json(&ServerFrame::Refreshed { expires_at: 7 }), r#"{"type":"refreshed","expiresAt":7}"#);
        assert_eq!(
            json(&ServerFrame::Error {
                message: "Access denied to conversation",
                conversation_id: Some("c9")
            }),
            r#"{"type":"error","message":"Access denied to conversation","conversationId":"c9"}"#
        );
        assert_eq!(
            json(&ServerFrame::error("Invalid message")),
            r#"{"type":"error","message":"Invalid message"}"#
        );
    }

    /// Client frames of the replaced system parse; extra fields are ignored.
    #[test]
    fn client_frames_parse() {
        assert_eq!(
            decode(br#"{"action":"auth","token":"t"}"#),
            Ok(ClientFrame::Auth { token: Some("t".into()), user_id: None, positions: false })
        );
        assert_eq!(
            decode(br#"{"action":"subscribe","conversationId":"c1","extra":1}"#),
            Ok(ClientFrame::Subscribe { conversation_id: "c1".into(), since: None, token: None, last: None })
        );
        assert_eq!(decode(br#"{"action":"ping"}"#), Ok(ClientFrame::Ping));
    }

    /// Notification frames with positions wrap the payload verbatim and escape the conversation id.
    #[test]
    fn notification_frame_wraps_payload_verbatim() {
        let position = Position { partition: 3, epoch: 0xab, id: crier_proto::StreamId::new(5, 1) };
        let frame = notification("c\"1", &position, br#"{"a": 1}"#);
        let json = String::from_utf8(frame[2..].to_vec()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"notification","conversationId":"c\"1","position":"3:ab:5-1","data":{"a": 1}}"#
        );
    }

    /// Garbage, wrong shapes and unknown actions each get their own answer.
    #[test]
    fn bad_frames_are_classified() {
        for bad in [&b"not json"[..], b"[]", b"{}", br#"{"action":"subscribe"}"#, br#"{"action":7}"#] {
            assert_eq!(decode(bad), Err(DecodeError::Invalid), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(br#"{"action":"dance"}"#), Err(DecodeError::UnknownAction("dance".into())));
    }

    proptest::proptest! {
        /// The decoder answers every input, however hostile, with a frame or a classified error: it never
        /// panics and never echoes more than 64 characters of an unknown action.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(DecodeError::UnknownAction(action)) = decode(&bytes) {
                proptest::prop_assert!(action.chars().count() <= 64);
            }
        }

        /// Structured junk around real actions parses or is classified, never panics.
        #[test]
        fn decode_handles_near_miss_json(action in "(auth|subscribe|refresh|ping|x{0,80})", field in ".{0,40}") {
            let text = format!(r#"{{"action":"{action}","conversationId":{field:?},"token":{field:?}}}"#);
            let _ = decode(text.as_bytes());
        }
    }
}
