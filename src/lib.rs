//! The part of the `crier` CLI that knows both roles, as a library so the end-to-end tests assemble
//! `crier dev` exactly as the binary does.
//!
//! - [`dev_publisher`]: the edge's demo page publishing through the broker's [`crier_broker::Publisher`].

pub mod dev_publisher;
