//! The directory's limits, reach and snapshot, and that a member's drop leaves every structure on each way
//! a session can end.

use super::*;
use crate::hub::tests::{Readers, hub_and_readers, subscriber};

fn directory(max: usize, max_per_user: usize) -> (Arc<Directory>, Readers) {
    let (hub, readers) = hub_and_readers();
    (Directory::new(hub, max, max_per_user, Gauge::noop()), readers)
}

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(1024))
}

/// A member of `user` (when given), admitted on a fresh seat.
fn member(directory: &Arc<Directory>, user: Option<&str>) -> (Member, Arc<Outbox>) {
    let outbox = outbox();
    let mut member = directory.seat().expect("a free seat").admit(Arc::clone(&outbox));
    if let Some(user) = user {
        assert!(member.authenticate(&user.into()));
    }
    (member, outbox)
}

/// Nothing of the member is left anywhere: no seat, entry, user list, subscriber or running reader.
fn assert_left(directory: &Directory, readers: &Readers) {
    assert_eq!(directory.seats(), 0, "seat");
    let members = directory.members();
    assert!(members.sessions.is_empty(), "entry");
    assert!(members.users.is_empty(), "user list");
    drop(members);
    assert_eq!(directory.hub.conversations(), 0, "hub subscribers");
    assert!(readers.running().is_empty(), "partition readers");
}

/// Both limits admit exactly their number, and dropped seats and members free their places.
#[test]
fn limits_and_release() {
    let (directory, _readers) = directory(2, 1);
    let (a, _b) = (directory.seat().unwrap(), directory.seat().unwrap());
    assert!(directory.seat().is_none());
    drop(a);
    let (mut first, _) = member(&directory, Some("u1"));
    let mut second = directory.seat().map(|seat| seat.admit(outbox()));
    assert!(second.is_none(), "the edge is full");
    drop(first);
    second = directory.seat().map(|seat| seat.admit(outbox()));
    first = second.expect("a seat freed by the dropped member");
    assert!(first.authenticate(&"u1".into()), "the user's place freed too");
    assert!(directory.seat().is_none(), "full again");
}

/// The per-user limit counts authenticated members, and a retired one frees its place.
#[test]
fn per_user_limit() {
    let (directory, _readers) = directory(10, 2);
    let (_a, _) = member(&directory, Some("u1"));
    let (mut b, _) = member(&directory, Some("u1"));
    let (mut c, _) = member(&directory, None);
    assert!(!c.authenticate(&"u1".into()), "third session of u1");
    assert!(c.authenticate(&"u2".into()), "another user has room");
    b.retire();
    let (mut d, _) = member(&directory, None);
    assert!(d.authenticate(&"u1".into()), "the retired session's place is free");
}

/// A revocation reaches every session of the user and no other.
#[test]
fn revocation_reaches_the_users_sessions() {
    let (directory, _readers) = directory(10, 10);
    let ((_a, mine), (_b, theirs)) = (member(&directory, Some("u1")), member(&directory, Some("u2")));
    directory.revoke("u1", "c1");
    assert_eq!(mine.take_revoked(), [Box::from("c1")]);
    assert!(theirs.take_revoked().is_empty());
}

/// A disconnect reaches every session of the user and no other.
#[test]
fn disconnect_reaches_only_the_user() {
    let (directory, _readers) = directory(10, 10);
    let ((_a, a), (_b, b)) = (member(&directory, Some("u1")), member(&directory, Some("u2")));
    let (_c, c) = member(&directory, Some("u1"));
    assert_eq!(directory.disconnect_user("u1", "bye"), 2);
    assert_eq!((a.kicked().as_deref(), c.kicked().as_deref()), (Some("bye"), Some("bye")));
    assert_eq!(b.kicked(), None);
}

/// A drain reaches every session, also one admitted afterwards.
#[test]
fn drain_reaches_present_and_later_sessions() {
    let (directory, _readers) = directory(10, 10);
    let (_early, early) = member(&directory, None);
    assert!(!early.is_draining());
    directory.drain_all();
    let (_late, late) = member(&directory, None);
    assert!(early.is_draining() && late.is_draining());
}

/// Presence counts sessions per user per conversation, from the hub; anonymous sessions count only as
/// connections.
#[test]
fn snapshot_counts_presence() {
    let (directory, _readers) = directory(10, 10);
    let (mut one, out1) = member(&directory, Some("u1"));
    let (mut two, out2) = member(&directory, Some("u1"));
    let (_anonymous, _) = member(&directory, None);
    one.join("c1", out1, false, StreamId::ZERO);
    two.join("c1", Arc::clone(&out2), false, StreamId::ZERO);
    two.join("c2", out2, false, StreamId::ZERO);
    assert!(two.leave("c2"));
    assert!(!two.leave("c2"), "left already");
    let snapshot = directory.snapshot();
    assert_eq!((snapshot.connections, snapshot.authenticated, snapshot.subscriptions), (3, 2, 2));
    assert_eq!(snapshot.presence.get("c1").and_then(|users| users.get("u1")), Some(2));
    assert!(snapshot.presence.get("c2").is_none());
}

/// However a session ends, dropping its member leaves everything: after serving (authenticated, joined),
/// during a registration still waiting for its reader, before authenticating, after retiring for the
/// lingering close, and a seat whose upgrade never became a session.
#[test]
fn a_dropped_member_leaves_everything() {
    let (directory, readers) = directory(10, 1);
    let (mut served, outbox) = member(&directory, Some("u1"));
    served.join("c1", Arc::clone(&outbox), true, StreamId::ZERO);
    served.join("c2", outbox, false, StreamId::ZERO);
    assert!(!readers.running().is_empty());
    drop(served);
    assert_left(&directory, &readers);

    let (mut waiting, outbox) = member(&directory, Some("u1"));
    let registration = waiting.join("c1", outbox, false, StreamId::ZERO);
    assert!(registration.at.is_none(), "the reader has no position yet");
    drop(waiting);
    assert_left(&directory, &readers);

    drop(member(&directory, None));
    assert_left(&directory, &readers);

    let (mut closing, outbox) = member(&directory, Some("u1"));
    closing.join("c1", outbox, false, StreamId::ZERO);
    closing.retire();
    assert_eq!(directory.seats(), 1, "a lingering close keeps its seat");
    let (mut again, _) = member(&directory, None);
    assert!(again.authenticate(&"u1".into()), "its user may connect again at once");
    drop((closing, again));
    assert_left(&directory, &readers);

    drop(directory.seat());
    assert_left(&directory, &readers);
}

/// A hub subscriber made directly (as a reader sees it) and a member's join reach the same list.
#[test]
fn members_join_the_hubs_lists() {
    let (directory, _readers) = directory(10, 10);
    let (mut member, outbox) = member(&directory, Some("u1"));
    let registration = member.join("c1", outbox, false, StreamId::ZERO);
    directory.hub.subscribe("c1", subscriber(99));
    let mut sessions = Vec::new();
    directory.hub.each_conversation(|_, list| sessions.extend(list.iter().map(|s| s.session)));
    assert_eq!(sessions, [member.id(), 99]);
    assert_eq!(&*registration.conversation, "c1");
    assert!(member.is_joined("c1") && member.joined() == 1);
}
