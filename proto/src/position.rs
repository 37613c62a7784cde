//! Stream ids and positions. A [`StreamId`] is a Redis stream entry id (`<ms>-<seq>`); the in-memory log uses
//! the same shape so both logs are interchangeable. A [`Position`] names a partition, the partition's epoch
//! and a stream id; clients see it as an opaque string (`<partition>:<epoch hex>:<ms>-<seq>`) and may hand it
//! back later as `since`.
//!
//! The epoch is a random id created together with a partition's stream. When Redis loses a stream (a restart
//! without persistence, a failover to an empty replica) the next writer or reader creates a new epoch, so a
//! position from before the loss can never be mistaken for one in the new stream.

use std::fmt;
use std::str::FromStr;

/// A stream entry id; ordered like Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The id before every entry (`0-0`): reading after it yields the whole stream.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// Builds an id.
    #[must_use]
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The greatest id below this one ([`StreamId::ZERO`] for zero).
    #[must_use]
    pub const fn prev(self) -> Self {
        match (self.ms, self.seq) {
            (0, 0) => Self::ZERO,
            (ms, 0) => Self { ms: ms - 1, seq: u64::MAX },
            (ms, seq) => Self { ms, seq: seq - 1 },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not a valid stream id or position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid position or stream id {:?}", self.0)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for StreamId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(err)?;
        Ok(Self { ms: ms.parse().map_err(|_| err())?, seq: seq.parse().map_err(|_| err())? })
    }
}

/// Where a notification sits in the partitioned log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The partition the notification was appended to.
    pub partition: u32,
    /// The partition stream's epoch.
    pub epoch: u64,
    /// Its id in that partition's stream.
    pub id: StreamId,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:x}:{}", self.partition, self.epoch, self.id)
    }
}

impl FromStr for Position {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError(s.to_owned());
        let (partition, rest) = s.split_once(':').ok_or_else(err)?;
        let (epoch, id) = rest.split_once(':').ok_or_else(err)?;
        if epoch.is_empty() || epoch.len() > 16 {
            return Err(err());
        }
        Ok(Self {
            partition: partition.parse().map_err(|_| err())?,
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| err())?,
            id: id.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions survive a round trip through their string form.
    #[test]
    fn position_round_trips() {
        let p = Position { partition: 17, epoch: 0xbeef, id: StreamId::new(1_700_000_000_123, 4) };
        assert_eq!(p.to_string(), "17:beef:1700000000123-4");
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
    }

    /// Garbage is rejected rather than read as some other position.
    #[test]
    fn malformed_positions_are_rejected() {
        for bad in [
            "", "17", "17:", "x:1:1-2", "1:2", "1:a:2-", "1:a:-3", "1:a:a-b", "-1:a:1-1", "1::1-1", "1:g:1-1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} parsed");
        }
    }

    /// `prev` is the greatest smaller id, crossing millisecond boundaries.
    #[test]
    fn prev_is_the_greatest_smaller_id() {
        assert_eq!(StreamId::new(5, 2).prev(), StreamId::new(5, 1));
        assert_eq!(StreamId::new(5, 0).prev(), StreamId::new(4, u64::MAX));
        assert_eq!(StreamId::ZERO.prev(), StreamId::ZERO);
    }

    /// Stream ids order by millisecond, then sequence, as Redis orders them.
    #[test]
    fn stream_ids_order_like_redis() {
        assert!(StreamId::new(1, 9) < StreamId::new(2, 0));
        assert!(StreamId::new(2, 0) < StreamId::new(2, 1));
    }
}
