//! `streamhoused`: the StreamHouse server.
//!
//! The storage core (segments, object stores, metadata) is built; the engine
//! and the gRPC services come next (issues #3 and #4). Until then this binary
//! answers `--help` and says what is missing.

use std::process::ExitCode;

const HELP: &str = "\
streamhoused - the StreamHouse server (S3-native append-only log)

USAGE:
    streamhoused [FLAGS]

FLAGS (each also read from the environment variable in brackets):
    --listen ADDR             [STREAMHOUSE_LISTEN]           default 127.0.0.1:50051
    --data-dir DIR            [STREAMHOUSE_DATA_DIR]         default ./streamhouse-data
    --s3-endpoint URL         [STREAMHOUSE_S3_ENDPOINT]
    --s3-bucket NAME          [STREAMHOUSE_S3_BUCKET]
    --s3-region NAME          [STREAMHOUSE_S3_REGION]
    --s3-prefix PREFIX        [STREAMHOUSE_S3_PREFIX]
    --s3-path-style           [STREAMHOUSE_S3_PATH_STYLE]
    --segment-max-bytes N     [STREAMHOUSE_SEGMENT_MAX_BYTES]
    --segment-max-age-ms N    [STREAMHOUSE_SEGMENT_MAX_AGE_MS]
    --cache-bytes N           [STREAMHOUSE_CACHE_BYTES]
    --reader-threads N        [STREAMHOUSE_READER_THREADS]
    --max-record-bytes N      [STREAMHOUSE_MAX_RECORD_BYTES]
    --auth-token TOKEN        [STREAMHOUSE_AUTH_TOKEN]
    -h, --help                print this help

STATUS: the storage core is built; the engine and the gRPC server are not
built yet, so the server cannot start.
";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "streamhoused: the server is not built yet (storage core only); see `streamhoused --help`"
    );
    ExitCode::from(1)
}
