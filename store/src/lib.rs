//! crier store: the shared ground of broker and edge — everything both roles read or write in Redis (or in
//! memory for `crier dev`), and the process telemetry both binaries run.
//!
//! ```text
//!  broker ──append──▶ log::PartitionedLog ◀──read/recover── edge
//!  broker ──grant/revoke──▶ access::AccessStore ◀──check, revocation feed── edge
//!  broker (admin) ◀──reports, commands──▶ control::ControlPlane ◀──heartbeats── edge
//!                     all Redis-backed ones connect through log::RedisTopology
//! ```
//!
//! - [`log`]: the `PartitionedLog` trait, `RedisLog`, `MemoryLog`, the Redis topology and stream-entry decoding.
//! - [`access`]: the `AccessStore` trait (grants, revocation feed), `RedisAccessStore`, `MemoryAccessStore`.
//! - [`control`]: the control plane: edges' heartbeat reports and operator commands (Redis | memory).
//! - [`telemetry`]: the process's metrics recorder, the OTLP trace pipeline, trace context in stream entries.
//! - [`admin_http`]: the admin listener: `/metrics`, `/healthz`, `/readyz`, run by either role.

pub mod access;
pub mod admin_http;
pub mod control;
pub mod log;
pub mod telemetry;
