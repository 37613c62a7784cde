//! Conversation id → partition. Brokers and edges of one deployment must agree on this forever: the golden
//! tests below pin it. Changing it (or the partition count of a live deployment) moves conversations to other
//! streams, so history and recovery positions would be lost.

use xxhash_rust::xxh3::xxh3_64;

/// Default number of partitions of a deployment.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// The partition of `conversation_id` among `partitions`: `xxh3_64(utf8 bytes, seed 0) mod partitions`.
///
/// # Panics
/// If `partitions` is 0; configs reject that before anything runs.
#[must_use]
pub fn partition(conversation_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "partition count must be positive");
    // The remainder is < partitions, which is a u32, so the cast cannot truncate.
    (xxh3_64(conversation_id.as_bytes()) % u64::from(partitions)) as u32
}

/// The node (of `nodes` standalone Redis nodes) holding `partition`: jump consistent hash (Lamping & Veach,
/// 2014) of `xxh3_64(partition as u32 little-endian)`. Adding an n+1-th node moves only ~1/(n+1) of the
/// partitions, and only to the new node.
///
/// # Panics
/// If `nodes` is 0; configs reject that before anything runs.
#[must_use]
pub fn node_of(partition: u32, nodes: usize) -> usize {
    assert!(nodes > 0, "node count must be positive");
    let mut key = xxh3_64(&partition.to_le_bytes());
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < nodes as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The float math is the published algorithm's; it is exact enough for any realistic node count.
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    // 0 <= b < nodes.
    b as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is a wire contract: these values must never change.
    #[test]
    fn golden_values_are_stable() {
        let golden = [
            ("c1", 64, GOLDEN_C1_64),
            ("conversation-42", 64, GOLDEN_CONV42_64),
            ("job-123", 64, GOLDEN_JOB123_64),
            ("", 64, GOLDEN_EMPTY_64),
            ("c1", 7, GOLDEN_C1_7),
            ("c1", 1, 0),
        ];
        for (id, n, want) in golden {
            assert_eq!(partition(id, n), want, "partition({id:?}, {n})");
        }
    }

    // Computed independently with Python's `xxhash.xxh3_64_intdigest(id.encode()) % n`.
    const GOLDEN_C1_64: u32 = 2;
    const GOLDEN_CONV42_64: u32 = 59;
    const GOLDEN_JOB123_64: u32 = 42;
    const GOLDEN_EMPTY_64: u32 = 2;
    const GOLDEN_C1_7: u32 = 6;

    /// The raw hash, so a change of hash function cannot hide behind a lucky remainder.
    #[test]
    fn raw_hash_is_xxh3_64_seed_0() {
        assert_eq!(xxh3_64(b"c1"), 0x8ea6_ff26_c9a9_5602);
        assert_eq!(xxh3_64(b"conversation-42"), 0x3bd6_5ba3_fcc6_d97b);
    }

    /// Node placement is a storage contract too: these values must never change.
    #[test]
    fn node_golden_values_are_stable() {
        let three: Vec<usize> = (0..16).map(|p| node_of(p, 3)).collect();
        assert_eq!(three, GOLDEN_NODES_3);
        assert!((0..64).all(|p| node_of(p, 1) == 0));
    }

    /// Growing from 3 to 4 nodes only moves partitions to the new node.
    #[test]
    fn adding_a_node_moves_partitions_only_to_it() {
        for p in 0..1024 {
            let (before, after) = (node_of(p, 3), node_of(p, 4));
            assert!(after == before || after == 3, "partition {p} moved {before} -> {after}");
        }
    }

    // Computed independently with Python (jump hash over xxhash.xxh3_64_intdigest(p.to_bytes(4, "little"))).
    const GOLDEN_NODES_3: [usize; 16] = [1, 2, 0, 2, 2, 0, 1, 1, 1, 2, 2, 1, 0, 0, 1, 0];

    /// Conversations spread over all partitions instead of clustering in a few.
    #[test]
    fn spreads_ids_over_every_partition() {
        let mut seen = [0u32; 64];
        for i in 0..64_000 {
            seen[partition(&format!("conversation-{i}"), 64) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }
}
