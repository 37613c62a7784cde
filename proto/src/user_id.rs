//! The shape of a user id, one rule for every place one enters crier: the edge (the token's user claim, or
//! the `userId` of dev auth) and the broker (`AccessService` calls). 1..=256 bytes, no control characters:
//! user ids appear in logs, frames and Redis keys.

/// Longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// Checks `id` against the user-id rule; `Err` is the reason (it never echoes the id).
pub fn validate_user_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_USER_ID_BYTES {
        return Err("user id must be 1-256 bytes");
    }
    if id.chars().any(char::is_control) {
        return Err("user id must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_control_characters() {
        assert_eq!(validate_user_id("alice"), Ok(()));
        assert_eq!(validate_user_id("é-ü"), Ok(()));
        assert_eq!(validate_user_id(&"x".repeat(MAX_USER_ID_BYTES)), Ok(()));
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id(&"x".repeat(MAX_USER_ID_BYTES + 1)).is_err());
        assert!(validate_user_id("a\nb").is_err());
        assert!(validate_user_id("a\u{7f}").is_err());
    }
}
