//! The shape of a conversation id, the one rule the broker (publish, access, admin calls) and the edge
//! (subscribe) both apply: 1..=max bytes of printable ASCII (0x20..=0x7E). The maximum is deployment config
//! (`--max-conversation-id-bytes`), so it is a parameter here; brokers and edges must be given the same one,
//! or notifications could be published to conversations no client may subscribe to.

/// Longest conversation id by default, in bytes.
pub const DEFAULT_MAX_CONVERSATION_ID_BYTES: usize = 256;

/// Highest accepted `--max-conversation-id-bytes`: ids become Redis key parts and frame fields, and are
/// held per subscription, so they stay small.
pub const MAX_CONVERSATION_ID_BYTES_LIMIT: usize = 1024;

/// Checks `id` against the conversation-id rule with `max_bytes`; `Err` is the reason, for the caller's
/// error message (it never echoes the id).
pub fn validate_conversation_id(id: &str, max_bytes: usize) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    validate_printable(id, max_bytes)
}

/// Checks that `text` has at most `max_bytes` bytes, all printable ASCII (0x20..=0x7E); empty passes.
pub fn validate_printable(text: &str, max_bytes: usize) -> Result<(), String> {
    if text.len() > max_bytes {
        return Err(format!("{} bytes, at most {max_bytes} allowed", text.len()));
    }
    if let Some(pos) = text.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
        return Err(format!("byte {pos} is not printable ASCII"));
    }
    Ok(())
}

/// The config problem with a `--max-conversation-id-bytes` of `max_bytes`, if any.
#[must_use]
pub fn max_bytes_problem(max_bytes: usize) -> Option<String> {
    (!(1..=MAX_CONVERSATION_ID_BYTES_LIMIT).contains(&max_bytes)).then(|| {
        format!("--max-conversation-id-bytes must be 1..={MAX_CONVERSATION_ID_BYTES_LIMIT}, got {max_bytes}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths at and around the limit, for the default and a small configured maximum.
    #[test]
    fn length_boundaries() {
        for max in [DEFAULT_MAX_CONVERSATION_ID_BYTES, 8, 1] {
            assert_eq!(validate_conversation_id(&"x".repeat(max), max), Ok(()));
            let over = validate_conversation_id(&"x".repeat(max + 1), max).unwrap_err();
            assert_eq!(over, format!("{} bytes, at most {max} allowed", max + 1));
        }
        assert_eq!(validate_conversation_id("", 8).unwrap_err(), "must not be empty");
    }

    /// Only printable ASCII: control characters, DEL and multi-byte UTF-8 are refused with their position.
    #[test]
    fn printable_ascii_only() {
        assert!(validate_conversation_id("job-123 /c:1~", 256).is_ok());
        assert_eq!(validate_conversation_id("a\nb", 256).unwrap_err(), "byte 1 is not printable ASCII");
        assert!(validate_conversation_id("a\u{7f}", 256).is_err());
        assert!(validate_conversation_id("é", 256).is_err());
        assert_eq!(validate_printable("", 0), Ok(()));
    }

    /// The configurable maximum is 1..=1024.
    #[test]
    fn configurable_range() {
        assert_eq!(max_bytes_problem(1), None);
        assert_eq!(max_bytes_problem(DEFAULT_MAX_CONVERSATION_ID_BYTES), None);
        assert_eq!(max_bytes_problem(MAX_CONVERSATION_ID_BYTES_LIMIT), None);
        let zero = max_bytes_problem(0).unwrap_or_default();
        assert_eq!(zero, "--max-conversation-id-bytes must be 1..=1024, got 0");
        assert!(max_bytes_problem(1025).is_some());
    }
}
