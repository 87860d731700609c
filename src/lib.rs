//! StreamHouse: an S3-native append-only log.
//!
//! Layers, bottom up (see docs/ARCHITECTURE.md):
//! - [`segment`]: the immutable segment object format (docs/FORMAT.md);
//! - [`object_store`]: where segments live (local directory, S3, memory);
//! - [`meta`]: SQLite metadata (topics, watermarks, segments, group offsets);
//! - [`wal`]: the per-partition write-ahead log;
//! - [`partition`]: writer and uploader threads, recovery, the tail;
//! - [`read`]: reader pool, block cache, prefetch, long polls;
//! - [`engine`]: topics and partitions behind one API;
//! - [`proto`]: the generated gRPC contract.

#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod object_store;
pub mod partition;
pub mod proto;
pub mod read;
pub mod record;
pub mod segment;
pub mod server;
pub mod wal;

pub use config::EngineConfig;
pub use engine::{Engine, PartitionInfo, TopicInfo, TopicSpec};
pub use error::{Error, Result};
pub use partition::{Acks, AppendAck};
pub use read::{FetchRequest, FetchResult};
pub use record::{Header, Record};
