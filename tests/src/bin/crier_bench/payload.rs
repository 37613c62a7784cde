//! The notification the bench publishes: a JSON object of exactly [`PAYLOAD_BYTES`] bytes whose first field
//! is the send time, `{"t":"<20 digits>",...}` (a string: JSON numbers have no leading zeros), in nanoseconds of the publishing process's monotonic
//! [`Clock`]. Publisher and receivers of a latency run share one process, hence one clock.

use std::time::Instant;

use bytes::Bytes;

/// The payload size of DESIGN.md §8's reference runs.
pub const PAYLOAD_BYTES: usize = 204;

const PREFIX: &[u8] = br#"{"t":""#;
const DIGITS: usize = 20;
const MIDDLE: &[u8] = br#"","type":"bench","pad":""#;
const SUFFIX: &[u8] = br#""}"#;

/// A monotonic clock with a process-wide origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A [`PAYLOAD_BYTES`]-byte JSON object stamped with `sent_ns`.
pub fn stamped(sent_ns: u64) -> Bytes {
    let pad = PAYLOAD_BYTES - PREFIX.len() - DIGITS - MIDDLE.len() - SUFFIX.len();
    let mut out = Vec::with_capacity(PAYLOAD_BYTES);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(format!("{sent_ns:020}").as_bytes());
    out.extend_from_slice(MIDDLE);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(SUFFIX);
    Bytes::from(out)
}

/// The send time stamped into a bench payload; `None` for any other frame.
pub fn sent_ns(payload: &[u8]) -> Option<u64> {
    let digits = payload.strip_prefix(PREFIX)?.get(..DIGITS)?;
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload is valid JSON of the reference size and its stamp reads back.
    #[test]
    fn stamp_round_trips_at_reference_size() {
        let payload = stamped(1_234_567_890);
        assert_eq!(payload.len(), PAYLOAD_BYTES);
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(json["t"], "00000000001234567890");
        assert_eq!(sent_ns(&payload), Some(1_234_567_890));
        assert_eq!(sent_ns(br#"{"type":"subscribed"}"#), None);
    }
}
