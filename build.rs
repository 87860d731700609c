//! Compiles `proto/streamhouse/v1/streamhouse.proto` (and the part of
//! etcd's API cluster mode uses) into Rust message code (protobuf 2) and
//! grpcio service code, without needing `protoc`.
//!
//! protobuf-codegen-pure 2.x silently drops `service` blocks, so the file is
//! parsed by the pure-Rust parser of protobuf-parse 3, the descriptor is
//! re-read as protobuf 2 types, and both code generators run on it.

use std::fs;
use std::path::{Path, PathBuf};

const PROTO_ROOT: &str = "proto";
/// Each file with the name its generated code is written under
/// (`{name}.rs`, `{name}_grpc.rs`), which is also the module name the
/// service code uses for its messages (`super::{name}`).
const PROTO_FILES: [(&str, &str); 2] = [
    ("proto/streamhouse/v1/streamhouse.proto", "streamhouse"),
    // The part of etcd's API that cluster mode uses (src/cluster/etcd.rs).
    ("proto/etcd/etcdserverpb.proto", "etcdserverpb"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for (file, name) in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
        generate(file, name, &out_dir);
    }
}

fn generate(file: &str, name: &str, out_dir: &Path) {
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include(PROTO_ROOT)
        .input(file)
        .parse_and_typecheck()
        .unwrap_or_else(|e| panic!("cannot parse {file}: {e:#}"));

    // protobuf 3 descriptors -> bytes -> protobuf 2 descriptors.
    let descriptors: Vec<protobuf::descriptor::FileDescriptorProto> = parsed
        .file_descriptors
        .iter()
        .map(|fd| {
            let bytes = protobuf3::Message::write_to_bytes(fd).expect("serialize descriptor");
            protobuf::Message::parse_from_bytes(&bytes).expect("re-read descriptor as protobuf 2")
        })
        .collect();
    let to_generate: Vec<String> = parsed
        .relative_paths
        .iter()
        .map(|p| p.to_str().to_owned())
        .collect();

    let customize = protobuf_codegen::Customize::default();
    for result in protobuf_codegen::gen(&descriptors, &to_generate, &customize) {
        write_includable(out_dir, &format!("{name}.rs"), &result.content);
    }
    for result in grpcio_compiler::codegen::gen(&descriptors, &to_generate) {
        write_includable(out_dir, &format!("{name}_grpc.rs"), &result.content);
    }
}

/// `include!` rejects inner attributes (`#![...]`) and inner doc comments
/// (`//!`), which both generators emit at the top of a file: strip them.
fn write_includable(out_dir: &Path, name: &str, content: &[u8]) {
    let text = String::from_utf8_lossy(content);
    let kept: String = text
        .lines()
        .filter(|line| {
            let t = line.trim_start();
            !(t.starts_with("#![") || t.starts_with("//!"))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(out_dir.join(name), kept).expect("write generated code");
}
