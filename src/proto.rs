//! Generated gRPC message and service code for `streamhouse.v1`, and for
//! the part of etcd's API that cluster mode uses.
//!
//! Only `src/server/`, `src/cli/` and tests use these types; the engine speaks
//! plain Rust values.
#![allow(
    unsafe_code,
    unused_parens,
    mismatched_lifetime_syntaxes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_qualifications,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    renamed_and_removed_lints,
    unknown_lints
)]

/// The `type_url` of a [`LeaderHint`] in an error status's details
/// (`grpc-status-details-bin`).
pub const LEADER_HINT_TYPE: &str = "type.googleapis.com/streamhouse.v1.LeaderHint";

/// Messages and enums of `streamhouse.v1`.
pub mod streamhouse {
    include!(concat!(env!("OUT_DIR"), "/streamhouse.rs"));
}

/// grpcio clients and service traits (the generated code refers to its
/// messages as `super::streamhouse::*`).
#[cfg(feature = "grpc")]
pub mod streamhouse_grpc {
    include!(concat!(env!("OUT_DIR"), "/streamhouse_grpc.rs"));
}

pub use streamhouse::*;
#[cfg(feature = "grpc")]
pub use streamhouse_grpc as grpc;

/// The part of etcd's v3 API that cluster mode uses
/// (`proto/etcd/etcdserverpb.proto`): messages, and grpcio clients of its
/// KV and Lease services (`src/cluster/etcd.rs`).
#[cfg(feature = "grpc")]
pub mod etcd {
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }

    /// The service code refers to its messages as `super::etcdserverpb::*`.
    pub mod etcdserverpb_grpc {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb_grpc.rs"));
    }
}
