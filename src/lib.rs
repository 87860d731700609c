//! StreamHouse: an S3-native append-only log.
//!
//! Layers, bottom up; each uses only the ones below it (see
//! docs/ARCHITECTURE.md):
//!
//! ```text
//! bin ─► server, cli ─► engine ─► read ─► partition ─► context
//!     ─► wal, meta, object_store ─► producer, segment ─► codec ─► record, util
//! ```
//!
//! - [`record`]: the record every layer passes around; [`util`]: clocks,
//!   sizes, locks, stop signals, named threads; [`layout`]: every path and
//!   object key; [`metrics`]: counters and histograms;
//! - [`codec`]: varints, little-endian, the cursor, header encoding;
//! - [`segment`]: the immutable segment object format (docs/FORMAT.md);
//! - `producer`: idempotent producers' state per partition (pure), the
//!   node's registry of producer ids;
//! - [`wal`]: the per-partition write-ahead log;
//! - [`object_store`]: where segments live (local directory, S3, memory);
//! - [`meta`]: SQLite metadata (topics, watermarks, segments, group offsets);
//! - `context`: what the engine's threads share;
//! - `partition`: writer and uploader threads, recovery, the tail;
//! - `read`: reader pool, block cache, prefetch, long polls;
//! - [`engine`]: topics and partitions behind one API;
//! - [`cluster`]: cluster mode's coordination through etcd (leases,
//!   transactions, placement), below the engine;
//! - [`server`], [`cli`]: `streamhoused` and `streamctl`; [`proto`]: the
//!   generated gRPC contract; [`kafka`]: the Kafka wire formats; [`tls`]:
//!   TLS for both listeners and the CLI; [`auth`]: SCRAM credentials and
//!   the users file.

#![deny(unsafe_code)]

pub mod auth;
mod bucket;
#[cfg(feature = "grpc")]
pub mod cli;
pub mod cluster;
mod codec;
mod config;
mod context;
pub mod engine;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod kafka;
pub mod layout;
pub mod logging;
pub mod membership;
pub mod meta;
pub mod metrics;
pub mod object_store;
mod partition;
pub mod producer;
pub mod proto;
mod read;
mod record;
pub mod segment;
pub mod server;
pub mod tls;
pub mod util;
pub mod wal;

pub use config::EngineConfig;
pub use engine::{Engine, PartitionInfo, TopicInfo, TopicSpec};
pub use error::{Error, Result};
pub use partition::{AckReceiver, Acks, AppendAck};
pub use read::{FetchRequest, FetchResult};
pub use record::{Header, Record};
