//! Per-session deadlines in 8 bytes: a tokio `Instant` takes 16, and a session keeps four deadlines (auth
//! or token expiry, drain, idle, ping), so this saves 32 bytes of every connection's boxed `Session`.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::time::Instant;

/// Where moments count from: the real clock, read once per process. A paused test clock may stand before
/// it (it starts when its runtime is built), so moments are signed.
static ORIGIN: LazyLock<Instant> = LazyLock::new(|| Instant::from_std(std::time::Instant::now()));

/// Longest offset turned back into an `Instant`: "never" sleeps this long (as tokio's own far future).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A point on the tokio clock: signed nanoseconds from [`ORIGIN`] (±292 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Moment(i64);

impl Moment {
    /// No deadline: later than every other moment.
    pub(super) const NEVER: Self = Self(i64::MAX);

    /// The tokio clock's now (paused in tests).
    pub(super) fn now() -> Self {
        Self::at(Instant::now())
    }

    /// `instant` as a moment.
    pub(super) fn at(instant: Instant) -> Self {
        let origin = *ORIGIN;
        match instant.checked_duration_since(origin) {
            Some(after) => Self(nanos(after)),
            None => Self(-nanos(origin - instant)),
        }
    }

    /// `by` after this moment, saturating at [`Moment::NEVER`].
    pub(super) fn after(self, by: Duration) -> Self {
        Self(self.0.saturating_add(nanos(by)))
    }

    /// Whether this moment has come by `now`.
    pub(super) fn reached(self, now: Self) -> bool {
        self <= now
    }

    /// The moment as a tokio `Instant`, to sleep until; at most [`FAR_FUTURE`] after the origin.
    pub(super) fn instant(self) -> Instant {
        let origin = *ORIGIN;
        let offset = Duration::from_nanos(self.0.unsigned_abs()).min(FAR_FUTURE);
        if self.0 >= 0 { origin + offset } else { origin.checked_sub(offset).unwrap_or(origin) }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_round_trip_and_order_on_both_sides_of_the_origin() {
        let origin = *ORIGIN;
        for offset in [Duration::ZERO, Duration::from_nanos(1), Duration::from_secs(3600)] {
            let later = origin + offset;
            assert_eq!(Moment::at(later).instant(), later);
            if let Some(earlier) = origin.checked_sub(offset) {
                assert_eq!(Moment::at(earlier).instant(), earlier);
                assert!(Moment::at(earlier) <= Moment::at(later));
            }
        }
        let now = Moment::now();
        assert!(now < now.after(Duration::from_nanos(1)));
        assert_eq!(now.after(Duration::MAX), Moment::NEVER);
        assert!(!Moment::NEVER.reached(now) && now.reached(now));
        assert!(Moment::NEVER.instant() > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
    }
}
