//! Presence as an edge reports it: conversation → user → subscribed connections.
//!
//! Built from scratch in every heartbeat for every subscription of the edge, so it is lean: conversation
//! and user ids are the edge's own shared `Arc<str>`s (no copies), and both levels are short sorted or
//! small vectors instead of maps (a `BTreeMap` allocates a ~300-byte node even for one entry).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One edge's presence, sorted by conversation (so one conversation is found by binary search).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence(Vec<(Arc<str>, Users)>);

impl Presence {
    /// Presence from entries in any order; each conversation must appear once.
    #[must_use]
    pub fn new(mut entries: Vec<(Arc<str>, Users)>) -> Self {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self(entries)
    }

    /// The users of `conversation`.
    #[must_use]
    pub fn get(&self, conversation: &str) -> Option<&Users> {
        let found = self.0.binary_search_by(|(c, _)| (**c).cmp(conversation)).ok()?;
        Some(&self.0[found].1)
    }

    /// Every conversation with its users, sorted by conversation.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Users)> {
        self.0.iter().map(|(c, users)| (&**c, users))
    }

    /// Whether nobody is subscribed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One conversation's users on one edge, with their subscribed connections: most conversations have one or
/// two users per edge. Serialized as a JSON object `{"user": connections}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users(pub Vec<(Arc<str>, u32)>);

impl Users {
    /// Counts `connections` more for `user`.
    pub fn add(&mut self, user: &Arc<str>, connections: u32) {
        match self.0.iter_mut().find(|(u, _)| u == user) {
            Some((_, count)) => *count += connections,
            None => {
                // Most conversations have one user per edge: no room for four.
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(1);
                }
                self.0.push((Arc::clone(user), connections));
            }
        }
    }

    /// The connections of `user`.
    #[must_use]
    pub fn get(&self, user: &str) -> Option<u32> {
        self.0.iter().find(|(u, _)| &**u == user).map(|&(_, count)| count)
    }

    /// Adds these users into `into` (user → connections).
    pub fn merge_into(&self, into: &mut BTreeMap<String, u32>) {
        for (user, connections) in &self.0 {
            *into.entry(user.to_string()).or_default() += connections;
        }
    }
}

impl Serialize for Users {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(user, count)| (&**user, count)))
    }
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let users = BTreeMap::<String, u32>::deserialize(deserializer)?;
        Ok(Self(users.into_iter().map(|(user, count)| (user.into(), count)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users serialize as the JSON object stored by earlier versions, and read back.
    #[test]
    fn users_are_a_json_object() {
        let (u1, u2): (Arc<str>, Arc<str>) = ("u1".into(), "u2".into());
        let mut users = Users::default();
        users.add(&u1, 1);
        users.add(&u2, 2);
        users.add(&u1, 1);
        let json = serde_json::to_string(&users).unwrap();
        assert_eq!(json, r#"{"u1":2,"u2":2}"#);
        assert_eq!(serde_json::from_str::<Users>(&json).unwrap(), users);
    }

    #[test]
    fn conversations_are_found_whatever_the_order_given() {
        let users = |n| Users(vec![("u".into(), n)]);
        let presence =
            Presence::new(vec![("c".into(), users(3)), ("a".into(), users(1)), ("b".into(), users(2))]);
        assert_eq!(presence.iter().map(|(c, _)| c).collect::<Vec<_>>(), ["a", "b", "c"]);
        for (conversation, n) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(presence.get(conversation).and_then(|u| u.get("u")), Some(n), "{conversation}");
        }
        assert!(presence.get("d").is_none());
    }
}
