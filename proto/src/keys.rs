//! Every Redis key crier uses, in one place. Each partition's keys carry the hash tag `{p<i>}`, so all keys of
//! one partition live in one Redis Cluster slot (multi-key commands and scripts on a partition stay legal) and
//! different partitions spread over the cluster.
//!
//! Names are computed once per partition at start-up ([`PartitionKeys::new`]), never formatted per message.

/// Prefix of every key, so crier can share a Redis with other applications.
pub const PREFIX: &str = "crier";

/// The Redis keys of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeys {
    /// The partition's stream of `StreamEntry` records.
    pub stream: String,
    /// The stream's epoch: a random id created with the stream (see `position`).
    pub epoch: String,
    /// The partition's sequence: incremented by every append, reset with the epoch, so a reader of the live
    /// channel sees any missed message as a jump.
    pub seq: String,
    /// The pub/sub channel every append is published on (`SPUBLISH` on a Cluster: same hash tag, same slot).
    pub live: String,
    /// Prefix of the partition's idempotency keys; the suffix is a hash of conversation and key.
    pub dedupe_prefix: String,
}

impl PartitionKeys {
    /// The keys of `partition`.
    #[must_use]
    pub fn new(partition: u32) -> Self {
        Self {
            stream: format!("{PREFIX}:{{p{partition}}}:log"),
            epoch: format!("{PREFIX}:{{p{partition}}}:epoch"),
            seq: format!("{PREFIX}:{{p{partition}}}:seq"),
            live: format!("{PREFIX}:{{p{partition}}}:live"),
            dedupe_prefix: format!("{PREFIX}:{{p{partition}}}:dedupe:"),
        }
    }

    /// The idempotency key of a publish whose key hashes to `token` (see [`dedupe_token`]).
    #[must_use]
    pub fn dedupe(&self, token: &str) -> String {
        format!("{}{token}", self.dedupe_prefix)
    }

    /// The keys of partitions `0..partitions`, indexed by partition.
    #[must_use]
    pub fn all(partitions: u32) -> Vec<Self> {
        (0..partitions).map(Self::new).collect()
    }
}

/// The deployment's partition count, written at first start; a broker or edge configured otherwise refuses
/// to start. In Redis Cluster it lives in the slot of partition 0's hash tag.
pub const PARTITION_COUNT: &str = "crier:{p0}:partitions";

/// A fixed-length token for the idempotency key `key` of a publish to `conversation`: 32 hex digits of
/// xxh3-128 over both, length-prefixed so `("ab","c")` and `("a","bc")` differ.
#[must_use]
pub fn dedupe_token(conversation: &str, key: &str) -> String {
    let mut input = Vec::with_capacity(conversation.len() + key.len() + 8);
    input.extend_from_slice(&(conversation.len() as u64).to_le_bytes());
    input.extend_from_slice(conversation.as_bytes());
    input.extend_from_slice(key.as_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&input))
}

/// The stream field holding the encoded `StreamEntry`.
pub const ENTRY_FIELD: &str = "e";

/// The control stream: access grants and revocations brokers append and every edge reads (`XREAD BLOCK`), so a
/// `Revoke` reaches all edges, including ones that were briefly disconnected (they resume from their last id).
/// Its hash tag `{acl}` puts it in one Redis Cluster slot with every grants set, so a revoke can remove the
/// grant and announce it in one script.
pub const CONTROL_STREAM: &str = "crier:{acl}:control";
/// Control-stream field: the conversation of a revocation.
pub const CONTROL_CONVERSATION_FIELD: &str = "c";
/// Control-stream field: the user of a revocation.
pub const CONTROL_USER_FIELD: &str = "u";
/// Control-stream field: the kind of change, [`CONTROL_KIND_GRANT`] for a grant; absent for a revocation
/// (the entries older brokers wrote).
pub const CONTROL_KIND_FIELD: &str = "k";
/// [`CONTROL_KIND_FIELD`] value of a grant.
pub const CONTROL_KIND_GRANT: &str = "grant";

/// The Redis set of user ids granted `conversation`, under the `{acl}` hash tag of [`CONTROL_STREAM`]
/// (access data is small; one slot holds it all). Computed per access check, never per message.
#[must_use]
pub fn grants(conversation: &str) -> String {
    format!("{PREFIX}:{{acl}}:grants:{conversation}")
}

/// Sorted set of edges: member = edge id, score = time of its last heartbeat (Unix ms). Entries older than
/// the heartbeat TTL are stale and removed by readers.
pub const EDGES: &str = "crier:edges";

/// Pub/sub channel of operator commands to every edge (JSON messages tagged by `"type"`).
pub const CONTROL_CHANNEL: &str = "crier:control";

/// The Redis keys one edge reports to, each expiring with the heartbeat TTL. The hash tag `{<edge id>}`
/// keeps one edge's keys in one Redis Cluster slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeKeys {
    /// Hash of counters: `connections`, `authenticated`, `subscriptions`, `partitions_read`, `reported_at_ms`.
    pub stats: String,
    /// Hash: conversation id → JSON object `{"<user id>": <connections>}`.
    pub presence: String,
}

impl EdgeKeys {
    /// The keys of edge `edge_id`.
    #[must_use]
    pub fn new(edge_id: &str) -> Self {
        Self {
            stats: format!("{PREFIX}:edge:{{{edge_id}}}:stats"),
            presence: format!("{PREFIX}:edge:{{{edge_id}}}:presence"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key names are a storage contract shared by brokers and edges of different versions.
    #[test]
    fn stream_key_has_partition_hash_tag() {
        assert_eq!(PartitionKeys::new(0).stream, "crier:{p0}:log");
        assert_eq!(PartitionKeys::new(63).stream, "crier:{p63}:log");
    }

    /// Every key of a partition shares its hash tag, so Lua scripts over them are legal in Redis Cluster.
    #[test]
    fn partition_keys_share_one_hash_tag() {
        let keys = PartitionKeys::new(5);
        let dedupe = keys.dedupe(&dedupe_token("c", "k"));
        for key in [&keys.stream, &keys.epoch, &keys.seq, &keys.live, &dedupe] {
            assert!(key.starts_with("crier:{p5}:"), "{key}");
        }
    }

    /// Dedupe tokens separate conversation from key and have a fixed length.
    #[test]
    fn dedupe_tokens_are_unambiguous() {
        assert_ne!(dedupe_token("ab", "c"), dedupe_token("a", "bc"));
        assert_eq!(dedupe_token("c1", "k").len(), 32);
        assert_eq!(dedupe_token("c1", "k"), dedupe_token("c1", "k"));
    }

    /// Access keys are a storage contract too.
    #[test]
    fn access_keys_are_stable() {
        assert_eq!(grants("c1"), "crier:{acl}:grants:c1");
        assert_eq!(CONTROL_STREAM, "crier:{acl}:control");
    }

    /// Edge keys share one hash tag per edge.
    #[test]
    fn edge_keys_have_edge_hash_tag() {
        let keys = EdgeKeys::new("edge-a");
        assert_eq!(keys.stats, "crier:edge:{edge-a}:stats");
        assert_eq!(keys.presence, "crier:edge:{edge-a}:presence");
    }

    /// `all` yields one entry per partition, in partition order.
    #[test]
    fn all_is_indexed_by_partition() {
        let all = PartitionKeys::all(3);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], PartitionKeys::new(2));
    }
}
