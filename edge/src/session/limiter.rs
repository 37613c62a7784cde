//! A connection's message rate limit: a token bucket of `--message-burst` tokens refilled at
//! `--messages-per-second` (governor's GCRA), on the tokio clock, so tests drive refills with
//! `tokio::time::pause()` and `advance()`.

use std::num::NonZeroU32;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// The tokio clock as governor reads it: time since the limiter was made, in 8-byte nanoseconds (the
/// limiter is part of every idle connection).
#[derive(Clone, Copy, Debug)]
pub(super) struct TokioClock(Instant);

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        self.0.elapsed().into()
    }
}

/// One connection's bucket.
pub(super) struct Limiter(RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>);

impl Limiter {
    /// A full bucket of `burst` tokens refilled at `per_second`; zero (refused by config validation)
    /// counts as one.
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self(RateLimiter::direct_with_clock(quota, TokioClock(Instant::now())))
    }

    /// Takes a token; `false` when the bucket is empty.
    pub(super) fn take(&self) -> bool {
        self.0.check().is_ok()
    }

    /// Takes `n` tokens at once (work a client caused, such as recovery reads); `false` when the bucket
    /// holds fewer, or `n` exceeds the burst.
    pub(super) fn take_n(&self, n: NonZeroU32) -> bool {
        matches!(self.0.check_n(n), Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The burst is taken at once; then tokens come back at the rate, one per 1/rate, and not sooner.
    #[tokio::test(start_paused = true)]
    async fn burst_then_refill_at_the_rate() {
        let limiter = Limiter::new(20, 50);
        assert_eq!((0..60).filter(|_| limiter.take()).count(), 50, "the burst");
        assert!(!limiter.take());
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(!limiter.take(), "a token takes 50 ms at 20/s");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limiter.take() && !limiter.take(), "one token after 50 ms");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..60).filter(|_| limiter.take()).count(), 20, "20 tokens after a second");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!((0..60).filter(|_| limiter.take()).count(), 50, "refilled to the burst, no further");
    }
}
