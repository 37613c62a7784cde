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
}

impl PartitionKeys {
    /// The keys of `partition`.
    #[must_use]
    pub fn new(partition: u32) -> Self {
        Self { stream: format!("{PREFIX}:{{p{partition}}}:log") }
    }

    /// The keys of partitions `0..partitions`, indexed by partition.
    #[must_use]
    pub fn all(partitions: u32) -> Vec<Self> {
        (0..partitions).map(Self::new).collect()
    }
}

/// The stream field holding the encoded `StreamEntry`.
pub const ENTRY_FIELD: &str = "e";

#[cfg(test)]
mod tests {
    use super::*;

    /// Key names are a storage contract shared by brokers and edges of different versions.
    #[test]
    fn stream_key_has_partition_hash_tag() {
        assert_eq!(PartitionKeys::new(0).stream, "crier:{p0}:log");
        assert_eq!(PartitionKeys::new(63).stream, "crier:{p63}:log");
    }

    /// `all` yields one entry per partition, in partition order.
    #[test]
    fn all_is_indexed_by_partition() {
        let all = PartitionKeys::all(3);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], PartitionKeys::new(2));
    }
}
