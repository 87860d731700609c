//! The Kafka face (being built): the wire formats Kafka clients speak,
//! converted to engine calls beside the gRPC face in `server/`. Nothing
//! below the engine knows Kafka.
//!
//! - [`record_batch`]: RecordBatch v2 (magic 2), decode and encode;
//! - [`compression`]: gzip, snappy, lz4 and zstd records, inflated within a
//!   bound.

pub mod compression;
pub mod record_batch;
