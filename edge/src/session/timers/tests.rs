//! The session's clocks on a paused tokio clock: each fires at its moment and not before.

use std::collections::VecDeque;

use tokio::time::advance;

use super::*;

const SECOND: Duration = Duration::from_secs(1);
const PING: (Duration, Duration) = (Duration::from_secs(25), Duration::from_secs(10));

fn timers() -> Timers {
    Timers::new(Duration::from_secs(10), PING.0, None)
}

/// What is due for a session that is (`authenticated`) and has (`heard`) a frame since the last check.
fn due(timers: &mut Timers, authenticated: bool, outbox: &Outbox, heard: bool) -> Option<CloseReason> {
    timers.due(authenticated, outbox, &mut { heard }, PING)
}

fn frames(outbox: &Outbox) -> usize {
    let mut frames = VecDeque::new();
    outbox.drain_into(&mut frames).unwrap();
    frames.len()
}

/// No auth frame within 10 s: close 4001 `Authentication timeout`, at 10 s and not before.
#[tokio::test(start_paused = true)]
async fn auth_timeout_closes_after_ten_seconds() {
    let (mut timers, outbox) = (timers(), Outbox::new(1024));
    let start = Instant::now();
    assert_eq!(timers.next(), start + 10 * SECOND);
    advance(10 * SECOND - Duration::from_millis(1)).await;
    assert_eq!(due(&mut timers, false, &outbox, false), None);
    advance(Duration::from_millis(1)).await;
    let reason = due(&mut timers, false, &outbox, false).unwrap();
    assert_eq!(
        (reason, reason.code().code(), reason.text()),
        (CloseReason::AuthTimeout, 4001, "Authentication timeout")
    );
}

/// An authenticated session's token expires at its `exp`: close 4003; a refresh moves the moment; a token
/// without `exp` never expires.
#[tokio::test(start_paused = true)]
async fn token_expiry_closes_with_4003_unless_refreshed() {
    let (mut timers, outbox) = (timers(), Outbox::new(1024));
    timers.expires(Some(unix_now() + 60));
    advance(59 * SECOND).await;
    assert_eq!(due(&mut timers, true, &outbox, true), None);
    timers.expires(Some(unix_now() + 120));
    advance(2 * SECOND).await;
    assert_eq!(due(&mut timers, true, &outbox, true), None, "refreshed");
    advance(120 * SECOND).await;
    let reason = due(&mut timers, true, &outbox, true).unwrap();
    assert_eq!((reason, reason.code().code()), (CloseReason::TokenExpired, 4003));
    timers.expires(None);
    advance(3600 * SECOND).await;
    assert!(due(&mut timers, true, &outbox, true).is_none_or(|r| r == CloseReason::PingTimeout));
}

/// A ping goes out after the interval; a peer heard from within the pong timeout lives on (next ping at
/// the interval), one silent for the pong timeout is dead (1001 `ping timeout`).
#[tokio::test(start_paused = true)]
async fn ping_pong_detects_a_dead_peer() {
    let (mut timers, outbox) = (timers(), Outbox::new(1024));
    timers.expires(None);
    let start = Instant::now();
    assert_eq!(timers.next(), start + PING.0);
    advance(PING.0).await;
    assert_eq!(due(&mut timers, true, &outbox, false), None);
    assert_eq!(frames(&outbox), 1, "a ping");
    assert_eq!(timers.next(), start + PING.0 + PING.1);
    advance(PING.1).await;
    assert_eq!(due(&mut timers, true, &outbox, true), None, "the pong came");
    assert_eq!(timers.next(), start + 2 * PING.0, "pings go every interval");
    advance(PING.0 - PING.1).await;
    assert_eq!(due(&mut timers, true, &outbox, false), None);
    assert_eq!(frames(&outbox), 1, "the second ping");
    advance(PING.1).await;
    let reason = due(&mut timers, true, &outbox, false).unwrap();
    assert_eq!(
        (reason, reason.code().code(), reason.text()),
        (CloseReason::PingTimeout, 1001, "ping timeout")
    );
}

/// Without a client message for the idle timeout the session closes with 1000 `Session timeout`; each
/// message starts the clock again.
#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_last_message() {
    let idle = Some(Duration::from_millis(600));
    let (mut timers, outbox) = (Timers::new(Duration::from_secs(10), PING.0, idle), Outbox::new(1024));
    timers.expires(None);
    for _ in 0..8 {
        advance(Duration::from_millis(150)).await;
        assert_eq!(due(&mut timers, true, &outbox, true), None);
        timers.heard_message(idle);
    }
    advance(Duration::from_millis(599)).await;
    assert_eq!(due(&mut timers, true, &outbox, true), None);
    advance(Duration::from_millis(1)).await;
    let reason = due(&mut timers, true, &outbox, true).unwrap();
    assert_eq!(
        (reason, reason.code().code(), reason.text()),
        (CloseReason::IdleTimeout, 1000, "Session timeout")
    );
}

/// Draining sessions close within the window, at moments spread over it, and each only once decided.
#[tokio::test(start_paused = true)]
async fn drain_moments_spread_over_the_window() {
    let window = Duration::from_secs(5);
    let start = Instant::now();
    let moments: Vec<Duration> = (0..200)
        .map(|session| {
            let mut timers = timers();
            timers.drain_within(window, session);
            let first = timers.drain_at;
            timers.drain_within(window, session);
            assert_eq!(timers.drain_at, first, "decided once");
            first.instant() - start
        })
        .collect();
    assert!(moments.iter().all(|m| *m < window));
    let (min, max) = (moments.iter().min().unwrap(), moments.iter().max().unwrap());
    assert!(*max - *min >= window / 2, "not spread: {min:?}..{max:?}");
    let early = moments.iter().filter(|m| **m < window / 2).count();
    assert!((50..150).contains(&early), "{early} of 200 in the first half");
    assert_eq!(drain_deadline(Duration::ZERO, 1), Moment::now(), "no window: at once");

    let (mut timers, outbox) = (timers(), Outbox::new(1024));
    timers.drain_within(window, 7);
    advance(window).await;
    let reason = due(&mut timers, false, &outbox, false).unwrap();
    assert_eq!((reason, reason.code().code()), (CloseReason::ShuttingDown, 1001), "drain comes first");
}

/// An `exp` near `u64::MAX` is "far in the future", not a panic (which would leak the user's connection
/// count).
#[test]
fn huge_exp_saturates() {
    let now = Moment::now();
    for exp in [u64::MAX, u64::MAX / 2, u64::MAX - 1] {
        assert!(expiry(exp) > now.after(Duration::from_secs(365 * 24 * 3600)));
    }
    assert!(expiry(0) <= Moment::now());
}
