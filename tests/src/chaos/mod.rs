//! The chaos run: real processes (a 3-master Redis Cluster, 2 brokers, 3 edges, all spawned) under random
//! kills and restarts, browser-like clients and retrying publishers, and an exact checker of what the clients
//! received against what `Publish` acknowledged.
//!
//! ```text
//!  Publisher ×N ──Publish (idempotency key, retried on UNAVAILABLE)──▶ broker ×2 ──▶ Redis Cluster ×3
//!      │ records acknowledgements (Truth)                                                  │
//!      ▼                                                                                    ▼
//!   checker ◀── History per client ◀── ChaosClient ×M ◀──WebSocket (positions, since)── edge ×3
//!                     fault loop: kill/restart an edge, a broker, a Redis master (back empty)
//! ```
//!
//! - [`history`]: what one client saw; [`truth`]: what was acknowledged; [`checker`]: the verdict (pure).
//! - [`client`]: a client behaving like crier.js; [`publisher`]: a retrying publisher.
//! - [`deployment`]: the spawned processes; [`faults`]: the fault loop; [`harness`]: the run itself.

pub mod checker;
pub mod client;
pub mod deployment;
pub mod faults;
pub mod harness;
pub mod history;
pub mod publisher;
pub mod truth;

pub use checker::{Verdict, check};
pub use harness::{ChaosConfig, ChaosOutcome, run};
pub use history::{Event, History, PayloadId};
pub use truth::Truth;
