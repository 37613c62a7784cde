//! crier broker: validates notifications and appends them to the partitioned log.
//!
//! ```text
//!  gRPC PublishRequest ─▶ PublishServiceImpl ─▶ Publisher (validate, partition, encode StreamEntry)
//!                                                  └─▶ PartitionedLog::append (Redis XADD | memory)
//! ```
//!
//! The log, access store and control plane it writes live in `crier-store`, which the edge shares; the broker
//! adds the gRPC services around them.
//!
//! - [`access_service`]: the `crier.v1.AccessService` gRPC implementation.
//! - [`api_token`]: the shared-bearer-secret check in front of the broker's services.
//! - [`config`]: broker settings and their validation.
//! - [`error`]: `BrokerError` and its one mapping to `tonic::Status`.
//! - [`history`]: a conversation\'s retained notifications after a position (`AdminService.History`).
//! - [`publisher`]: validation, partitioning and encoding of one publish.
//! - [`publish_service`]: the `crier.v1.PublishService` gRPC implementation.
//! - [`trace_parent`]: the caller's W3C trace context from gRPC metadata.
//! - [`server`]: `run(listener, …, shutdown)`: the tonic server with health and reflection.
//! - [`admin_service`]: the `crier.v1.AdminService` gRPC implementation (presence, stats, disconnect).
//! - [`meters`]: the broker's Prometheus metrics.

pub mod access_service;
pub mod admin_service;
pub mod api_token;
pub mod config;
pub mod error;
pub mod history;
pub mod meters;
pub mod publish_service;
pub mod publisher;
pub mod server;
pub mod trace_parent;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use publisher::Publisher;
pub use server::{BrokerTls, Services, run};
