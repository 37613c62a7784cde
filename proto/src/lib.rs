//! crier's contracts, shared by the broker, the edge, the CLI and the tests. No I/O lives here.
//!
//! ```text
//!  PublishRequest ──broker──▶ StreamEntry (prost) in stream `keys::stream(partition(id, n))` ──edge──▶ browser
//! ```
//!
//! - [`v1`]: generated gRPC services and messages of package `crier.v1` (`crier/v1/*.proto`).
//! - [`conversation_id`]: the shape rule of conversation ids (maximum length is config).
//! - [`partition`]: conversation id → partition, pinned by golden values.
//! - [`keys`]: every Redis key name crier uses, with one hash tag per partition.
//! - [`position`]: stream ids and the opaque position string clients see.

pub mod conversation_id;
pub mod keys;
pub mod partition;
pub mod position;
pub mod user_id;

/// Package `crier.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("crier.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("crier_descriptor");

    /// The `StreamEntry.version` this build writes and understands.
    pub const STREAM_ENTRY_VERSION: u32 = 1;
}

pub use partition::{node_of, partition};
pub use position::{Position, StreamId};
