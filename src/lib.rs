//! StreamHouse: an S3-native append-only log.
//!
//! Layers, bottom up (see docs/ARCHITECTURE.md):
//! - [`segment`]: the immutable segment object format (docs/FORMAT.md);
//! - [`object_store`]: where segments live (local directory, S3, memory);
//! - [`meta`]: SQLite metadata (topics, watermarks, segments, group offsets);
//! - [`proto`]: the generated gRPC contract.

#![deny(unsafe_code)]

pub mod error;
pub mod meta;
pub mod object_store;
pub mod proto;
pub mod record;
pub mod segment;

pub use error::{Error, Result};
pub use record::{Header, Record};
