//! `streamhoused`: the engine behind grpcio's C-core server. The only place
//! protobuf types meet the engine ([`convert`]); errors become statuses in
//! [`status::error_to_status`].
//!
//! One file per service ([`admin`], [`producer`], [`consumer`]), each
//! method registered behind [`admission`]'s bounded decoders; [`shared`]
//! holds what handlers share (auth, the blocking pool, latencies);
//! [`flags`] the command line; [`gate`] accepts gRPC connections (and
//! refuses past the cap); [`metrics_http`] `/metrics`.
//!
//! [`request`] checks and splits a produce request and [`partitioner`]
//! hashes keys; both are plain functions, built without gRPC too (the fuzz
//! targets use them). [`node`] is the running server.

#[cfg(feature = "grpc")]
mod admin;
#[cfg(feature = "grpc")]
mod admission;
#[cfg(feature = "grpc")]
mod consumer;
// Without gRPC only `to_record` is used (by `request`).
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
mod convert;
#[cfg(feature = "grpc")]
pub mod flags;
#[cfg(feature = "grpc")]
mod gate;
#[cfg(feature = "grpc")]
mod metrics_http;
#[cfg(feature = "grpc")]
mod node;
pub mod partitioner;
#[cfg(feature = "grpc")]
mod producer;
pub mod request;
#[cfg(feature = "grpc")]
mod shared;
#[cfg(feature = "grpc")]
mod status;
#[cfg(feature = "grpc")]
mod streams;

#[cfg(feature = "grpc")]
pub use node::Server;
