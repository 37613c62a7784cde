//! crier broker: validates notifications and appends them to the partitioned log.
//!
//! ```text
//!  gRPC PublishRequest ─▶ PublishServiceImpl ─▶ Publisher (validate, partition, encode StreamEntry)
//!                                                  └─▶ PartitionedLog::append (Redis XADD | memory)
//! ```
//!
//! The edge depends on this crate for [`log`] and [`access`] only: the log lives here because the broker writes it and
//! both sides must agree on one implementation of its format.
//!
//! - [`access`]: the `AccessStore` trait (grants, revocation feed), `RedisAccessStore`, `MemoryAccessStore`.
//! - [`access_service`]: the `crier.v1.AccessService` gRPC implementation.
//! - [`api_token`]: the shared-bearer-secret check in front of the broker's services.
//! - [`config`]: broker settings and their validation.
//! - [`error`]: `BrokerError` and its one mapping to `tonic::Status`.
//! - [`history`]: a conversation\'s retained notifications after a position (`AdminService.History`).
//! - [`log`]: the `PartitionedLog` trait, `RedisLog`, `MemoryLog`.
//! - [`publisher`]: validation, partitioning and encoding of one publish.
//! - [`publish_service`]: the `crier.v1.PublishService` gRPC implementation.
//! - [`server`]: `run(listener, …, shutdown)`: the tonic server with health and reflection.
//! - [`admin_service`]: the `crier.v1.AdminService` gRPC implementation (presence, stats, disconnect).
//! - [`control`]: the control plane: edges' heartbeat reports and operator commands (Redis | memory).
//! - [`admin_http`]: the admin listener: `/metrics`, `/healthz`, `/readyz` (used by the edge too).
//! - [`meters`]: the broker's Prometheus metrics.
//! - [`telemetry`]: the process's metrics recorder, the OTLP trace pipeline, W3C context propagation.

pub mod access;
pub mod access_service;
pub mod admin_http;
pub mod admin_service;
pub mod api_token;
pub mod config;
pub mod control;
pub mod error;
pub mod history;
pub mod log;
pub mod meters;
pub mod publish_service;
pub mod publisher;
pub mod server;
pub mod telemetry;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use publisher::Publisher;
pub use server::{Services, run};
