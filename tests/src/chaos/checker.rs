//! The exact checker of a chaos run: per client and conversation, given what the client saw ([`History`])
//! and what `Publish` acknowledged ([`Truth`]), it proves that every acknowledged notification after the
//! client's first `subscribed` position was delivered to it exactly once and in order, or lies in a span the
//! client was told `recovered:false` for. Pure: no I/O, no clocks.
//!
//! It reasons in positions, not in time. A client stands at a position (the `subscribed` frame's, then each
//! notification's). While subscribed, every notification must be in the epoch it stands in, after its
//! position, and no acknowledged entry of that epoch may lie between the two (a silent gap). A resubscribe
//! with `since` answered `recovered:true` continues from where it stood; one answered `recovered:false`
//! moves it to the new position and excuses what lies between (a declared span). At the end of the run each
//! client must stand in the conversation's last epoch with nothing acknowledged after its position.
//! Notifications must carry the position their payload was acknowledged at; a copy at another position is
//! allowed only in another epoch (the idempotency record was lost with the stream) and counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use crier_proto::Position;

use super::history::{Event, History, PayloadId};
use super::truth::Truth;

/// Details kept for the report; the count covers them all.
const MAX_DETAILS: usize = 40;
/// Close codes after which a browser client does not reconnect: none may happen in a chaos run.
const TERMINAL_CLOSES: [u16; 4] = [1008, 1009, 4001, 4030];

/// The checker's counts and what it found.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Payloads the publishers sent.
    pub published: usize,
    /// Payloads `Publish` acknowledged.
    pub acknowledged: usize,
    /// Notifications the clients received.
    pub delivered: usize,
    /// Delivered copies of a payload at a position it was not acknowledged at (another epoch), or never
    /// acknowledged: allowed, counted.
    pub unacknowledged_copies: usize,
    /// Resubscribes answered `recovered:true`.
    pub recovered_spans: usize,
    /// Resubscribes answered `recovered:false`.
    pub unrecovered_spans: usize,
    /// Of those, how many stayed in the same epoch (the edge could not read the stream at that moment).
    pub unrecovered_same_epoch: usize,
    /// Acknowledged entries inside `recovered:false` spans, summed over clients.
    pub declared_lost: usize,
    /// Subscriptions the edge ended or refused (`unsubscribed` with a reason, an error naming the
    /// conversation), asked for again by the client.
    pub dropped: usize,
    /// Connection ends seen by clients, by close code (`none`: no close frame).
    pub closes: BTreeMap<String, usize>,
    /// How many violations.
    pub violations: usize,
    /// The first violations, described.
    pub details: Vec<String>,
}

impl Verdict {
    fn violation(&mut self, detail: String) {
        self.violations += 1;
        if self.details.len() < MAX_DETAILS {
            self.details.push(detail);
        }
    }
}

/// Where one client stands in one conversation.
#[derive(Debug, Default)]
struct Track {
    /// Its position; `None` before the first `subscribed`.
    at: Option<Position>,
    subscribed: bool,
    delivered: HashSet<Position>,
}

/// Judges every client's history against the truth.
#[must_use]
pub fn check(truth: &Truth, histories: &[History]) -> Verdict {
    let mut verdict =
        Verdict { published: truth.sent_count(), acknowledged: truth.acked_count(), ..Verdict::default() };
    for conflict in truth.conflicts() {
        verdict.violation(format!("publish: {conflict}"));
    }
    for history in histories {
        ClientCheck { truth, client: history.client, tracks: HashMap::new(), verdict: &mut verdict }
            .run(&history.events);
    }
    verdict
}

struct ClientCheck<'a> {
    truth: &'a Truth,
    client: usize,
    tracks: HashMap<&'a str, Track>,
    verdict: &'a mut Verdict,
}

impl<'a> ClientCheck<'a> {
    fn run(mut self, events: &'a [Event]) {
        for event in events {
            match event {
                Event::Subscribe { conversation, since } => self.subscribe(conversation, *since),
                Event::Subscribed { conversation, recovered, position } => {
                    self.subscribed(conversation, *recovered, *position);
                }
                Event::Notification { conversation, position, payload, published_to } => {
                    self.notification(conversation, *position, *payload, published_to);
                }
                Event::Dropped { conversation, .. } => {
                    self.verdict.dropped += 1;
                    self.tracks.entry(conversation).or_default().subscribed = false;
                }
                Event::Garbled { frame } => self.violation(format!("garbled frame {frame}")),
                Event::Closed { code } => self.closed(*code),
            }
        }
        self.end();
    }

    fn violation(&mut self, detail: String) {
        self.verdict.violation(format!("client {}: {detail}", self.client));
    }

    fn subscribe(&mut self, conversation: &'a str, since: Option<Position>) {
        let track = self.tracks.entry(conversation).or_default();
        let (at, subscribed) = (track.at, track.subscribed);
        if since != at || subscribed {
            self.violation(format!("{conversation}: subscribe since {since:?} while at {at:?}"));
        }
    }

    fn subscribed(&mut self, conversation: &'a str, recovered: Option<bool>, position: Position) {
        let track = self.tracks.entry(conversation).or_default();
        let (at, was_subscribed) = (track.at, track.subscribed);
        track.subscribed = true;
        if was_subscribed {
            return self.violation(format!("{conversation}: subscribed at {position} while subscribed"));
        }
        match (recovered, at) {
            (None, None) => self.move_to(conversation, position),
            (Some(true), Some(at)) if at == position => self.verdict.recovered_spans += 1,
            (Some(false), Some(at)) => self.unrecovered(conversation, at, position),
            (recovered, at) => self.violation(format!(
                "{conversation}: subscribed at {position} (recovered {recovered:?}) while at {at:?}"
            )),
        }
    }

    /// A `recovered:false` span from `at` to `position`: what lies between is excused, nothing before `at`
    /// may come again.
    fn unrecovered(&mut self, conversation: &'a str, at: Position, position: Position) {
        self.verdict.unrecovered_spans += 1;
        let declared = if at.epoch == position.epoch {
            self.verdict.unrecovered_same_epoch += 1;
            if position.id < at.id {
                self.violation(format!("{conversation}: recovered:false moved back from {at} to {position}"));
            }
            self.acked_between(conversation, at, Some(position))
        } else {
            let to = Position { id: crier_proto::StreamId::ZERO, ..position };
            self.acked_between(conversation, at, None) + self.acked_between(conversation, to, Some(position))
        };
        self.verdict.declared_lost += declared;
        self.move_to(conversation, position);
    }

    fn move_to(&mut self, conversation: &'a str, position: Position) {
        self.tracks.entry(conversation).or_default().at = Some(position);
    }

    /// Acknowledged entries of `from`'s epoch after `from`, up to `to` (inclusive) or the end.
    fn acked_between(&self, conversation: &str, from: Position, to: Option<Position>) -> usize {
        let Some(entries) = self.truth.entries(conversation, from.epoch) else { return 0 };
        entries.range(from.id..).filter(|(id, _)| **id > from.id && to.is_none_or(|to| **id <= to.id)).count()
    }

    fn notification(&mut self, conversation: &'a str, position: Position, payload: PayloadId, to: &str) {
        self.verdict.delivered += 1;
        self.check_payload(conversation, position, payload, to);
        let track = self.tracks.entry(conversation).or_default();
        let (at, subscribed) = (track.at, track.subscribed);
        let fresh = track.delivered.insert(position);
        match at.filter(|_| subscribed) {
            None => self.violation(format!("{conversation}: {payload} at {position} while not subscribed")),
            Some(_) if !fresh => {
                self.violation(format!("{conversation}: {payload} at {position} delivered twice"))
            }
            Some(at) if position.epoch != at.epoch => {
                self.violation(format!(
                    "{conversation}: {payload} at {position} while at {at}, no recovered:false"
                ));
            }
            Some(at) if position.id <= at.id => {
                self.violation(format!("{conversation}: {payload} at {position} out of order (at {at})"));
            }
            Some(at) => self.gap(conversation, at, position),
        }
        // The client resumes from the last position it saw, whatever it was: so does the check.
        self.move_to(conversation, position);
    }

    /// Every acknowledged entry strictly between `at` and `position` (same epoch) was skipped silently.
    fn gap(&mut self, conversation: &str, at: Position, position: Position) {
        let Some(entries) = self.truth.entries(conversation, at.epoch) else { return };
        let skipped: Vec<String> = entries
            .range(at.id..position.id)
            .filter(|(id, _)| **id > at.id)
            .map(|(id, payload)| format!("{payload}@{id}"))
            .collect();
        for entry in skipped {
            self.violation(format!("{conversation}: {entry} skipped between {at} and {position}"));
        }
    }

    /// The payload must be one sent to this conversation, carried at the position it was acknowledged at.
    fn check_payload(&mut self, conversation: &str, position: Position, payload: PayloadId, to: &str) {
        if self.truth.conversation_of(payload) != Some(to) || to != conversation {
            return self.violation(format!("{conversation}: {payload} at {position} was never sent here"));
        }
        match self.truth.position_of(payload) {
            Some(acked) if acked == position => {}
            Some(acked) if acked.epoch == position.epoch || acked.id == position.id => {
                self.violation(format!(
                    "{conversation}: {payload} acknowledged at {acked}, delivered as {position}"
                ));
            }
            _ => self.verdict.unacknowledged_copies += 1,
        }
    }

    fn closed(&mut self, code: Option<u16>) {
        let key = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        *self.verdict.closes.entry(key).or_default() += 1;
        if let Some(code) = code.filter(|c| TERMINAL_CLOSES.contains(c)) {
            self.violation(format!("closed with {code}, after which a client gives up"));
        }
        for track in self.tracks.values_mut() {
            track.subscribed = false;
        }
    }

    /// At the end each client must stand in the conversation's last epoch, past every acknowledged entry.
    fn end(mut self) {
        let mut tracks: Vec<(&str, Option<Position>)> = self.tracks.iter().map(|(c, t)| (*c, t.at)).collect();
        tracks.sort_unstable_by_key(|(conversation, _)| *conversation);
        for (conversation, at) in tracks {
            let Some(last) = self.truth.last_position(conversation) else { continue };
            let Some(at) = at else {
                self.violation(format!("{conversation}: never subscribed"));
                continue;
            };
            let missing = if at.epoch == last.epoch {
                self.acked_between(conversation, at, None)
            } else {
                let start = Position { id: crier_proto::StreamId::ZERO, ..last };
                self.acked_between(conversation, at, None) + self.acked_between(conversation, start, None)
            };
            for _ in 0..missing {
                self.violation(format!("{conversation}: ended at {at}, the last acknowledged is {last}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crier_proto::StreamId;

    use super::*;

    const C: &str = "c";
    const OLD: u64 = 0xa;
    const NEW: u64 = 0xb;

    fn pos(epoch: u64, ms: u64) -> Position {
        Position { partition: 3, epoch, id: StreamId::new(ms, 0) }
    }

    fn payload(seq: u64) -> PayloadId {
        PayloadId { publisher: 0, seq }
    }

    /// Payloads 1..=5 acknowledged at OLD:10..50, then 6..=7 at NEW:60..70 (the stream was lost).
    fn truth() -> Truth {
        let mut truth = Truth::default();
        for seq in 1..=7 {
            truth.sent(payload(seq), C);
            let epoch = if seq <= 5 { OLD } else { NEW };
            truth.acked(payload(seq), pos(epoch, seq * 10));
        }
        truth
    }

    fn subscribe(since: Option<Position>) -> Event {
        Event::Subscribe { conversation: C.into(), since }
    }

    fn subscribed(recovered: Option<bool>, at: Position) -> Event {
        Event::Subscribed { conversation: C.into(), recovered, position: at }
    }

    /// Payload `seq` delivered at `at`.
    fn note(seq: u64, at: Position) -> Event {
        let published_to = C.into();
        Event::Notification { conversation: C.into(), position: at, payload: payload(seq), published_to }
    }

    /// Payload `seq` delivered where it was acknowledged.
    fn good(seq: u64) -> Event {
        note(seq, pos(if seq <= 5 { OLD } else { NEW }, seq * 10))
    }

    fn closed(code: Option<u16>) -> Event {
        Event::Closed { code }
    }

    /// Subscribed from the start, then the given events.
    fn judge(tail: Vec<Event>) -> Verdict {
        let mut events = vec![subscribe(None), subscribed(None, pos(OLD, 5))];
        events.extend(tail);
        check(&truth(), &[History { client: 0, events }])
    }

    /// The stream is lost after payload 3 was delivered: a 4008, `recovered:false` into the new epoch.
    fn lost_stream_then(tail: Vec<Event>) -> Vec<Event> {
        let mut events = vec![good(1), good(2), good(3), closed(Some(4008))];
        events.extend([subscribe(Some(pos(OLD, 30))), subscribed(Some(false), pos(NEW, 55))]);
        events.extend(tail);
        events
    }

    /// From OLD:`ms`, the stream lost: 4008, `recovered:false` into the new epoch, and all of it delivered.
    fn to_new_epoch_from(ms: u64) -> Vec<Event> {
        let resubscribe = [subscribe(Some(pos(OLD, ms))), subscribed(Some(false), pos(NEW, 55))];
        [closed(Some(4008))].into_iter().chain(resubscribe).chain([good(6), good(7)]).collect()
    }

    /// A history where everything arrives once and in order, across a reconnect with `recovered:true` and
    /// a lost stream answered `recovered:false`, passes with the right counts.
    #[test]
    fn complete_history_passes_with_its_counts() {
        let verdict = judge(vec![
            good(1),
            closed(None),
            subscribe(Some(pos(OLD, 10))),
            subscribed(Some(true), pos(OLD, 10)),
            good(2),
            good(3),
            closed(Some(4008)),
            subscribe(Some(pos(OLD, 30))),
            subscribed(Some(false), pos(NEW, 55)),
            good(6),
            good(7),
        ]);
        assert_eq!(verdict.violations, 0, "{:?}", verdict.details);
        assert_eq!((verdict.published, verdict.acknowledged, verdict.delivered), (7, 7, 5));
        assert_eq!((verdict.recovered_spans, verdict.unrecovered_spans, verdict.declared_lost), (1, 1, 2));
        assert_eq!(verdict.closes.get("none"), Some(&1));
    }

    /// The same notification twice is caught.
    #[test]
    fn duplicate_is_a_violation() {
        let verdict = judge(lost_stream_then(vec![good(6), good(6), good(7)]));
        assert_eq!(verdict.violations, 1, "{:?}", verdict.details);
        assert!(verdict.details[0].contains("twice"), "{:?}", verdict.details);
    }

    /// Two notifications in the wrong order are caught.
    #[test]
    fn reorder_is_a_violation() {
        let verdict = judge(vec![good(1), good(3), good(2), good(4), good(5)]);
        assert!(verdict.details.iter().any(|d| d.contains("out of order")), "{:?}", verdict.details);
    }

    /// A notification skipped without `recovered:false` is caught, also across a `recovered:true` resume.
    #[test]
    fn silent_gap_is_a_violation() {
        let skipped = |v: &Verdict, entry: &str| v.details.iter().filter(|d| d.contains(entry)).count();
        let mut within = vec![good(1), good(2), good(4), good(5)];
        within.extend(to_new_epoch_from(50));
        let verdict = judge(within);
        assert_eq!(
            (verdict.violations, skipped(&verdict, "p0#3@30-0 skipped")),
            (1, 1),
            "{:?}",
            verdict.details
        );
        let mut resumed = vec![good(1), closed(None), subscribe(Some(pos(OLD, 10)))];
        resumed.extend([subscribed(Some(true), pos(OLD, 10)), good(3), good(4), good(5)]);
        resumed.extend(to_new_epoch_from(50));
        let verdict = judge(resumed);
        assert_eq!(
            (verdict.violations, skipped(&verdict, "p0#2@20-0 skipped")),
            (1, 1),
            "{:?}",
            verdict.details
        );
    }

    /// The new stream's entries delivered under the old epoch (read as if it were the old stream) are caught.
    #[test]
    fn entry_under_the_wrong_epoch_is_a_violation() {
        let mislabeled =
            vec![good(1), good(2), good(3), good(4), good(5), note(6, pos(OLD, 60)), note(7, pos(OLD, 70))];
        let verdict = judge(mislabeled);
        assert!(verdict.details.iter().any(|d| d.contains("delivered as 3:a:60-0")), "{:?}", verdict.details);
        assert!(verdict.details.iter().any(|d| d.contains("ended at 3:a:70-0")), "{:?}", verdict.details);
    }

    /// Moving to a new epoch without `recovered:false` is caught.
    #[test]
    fn epoch_switch_without_recovered_false_is_a_violation() {
        let verdict = judge(vec![good(1), good(2), good(3), good(4), good(5), good(6), good(7)]);
        assert_eq!(verdict.violations, 1, "{:?}", verdict.details);
        assert!(verdict.details[0].contains("no recovered:false"), "{:?}", verdict.details);
    }

    /// Entries acknowledged after the client's last position and never delivered are caught at the end.
    #[test]
    fn undelivered_tail_is_a_violation() {
        let verdict = judge(lost_stream_then(vec![good(6)]));
        assert_eq!(verdict.violations, 1, "{:?}", verdict.details);
        let stuck = judge(vec![good(1), good(2), good(3), good(4), good(5)]);
        assert_eq!(stuck.violations, 2, "two entries of the last epoch never arrived: {:?}", stuck.details);
    }

    /// A copy of a payload at an unacknowledged position of another epoch is counted, not a violation; a
    /// notification while unsubscribed and a terminal close code are violations.
    #[test]
    fn copies_are_counted_and_stray_frames_caught() {
        let verdict = judge(lost_stream_then(vec![note(5, pos(NEW, 57)), good(6), good(7)]));
        assert_eq!((verdict.violations, verdict.unacknowledged_copies), (0, 1), "{:?}", verdict.details);
        let stray = judge(vec![good(1), closed(Some(4001)), good(2)]);
        assert!(stray.details.iter().any(|d| d.contains("closed with 4001")), "{:?}", stray.details);
        assert!(stray.details.iter().any(|d| d.contains("while not subscribed")), "{:?}", stray.details);
    }
}
