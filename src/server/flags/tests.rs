//! The flag table's tests: defaults, the environment, every refusal,
//! and README.md's copy of the table.
use super::table::show_size;
use super::*;

const README_BEGIN: &str =
    "<!-- flags: generated from src/server/flags/table.rs; a test checks it -->\n";
const README_END: &str = "<!-- end of flags -->";

/// README.md's flag table is the one this table makes. To refresh it:
/// `STREAMHOUSE_UPDATE_README=1 cargo test --lib readme_flag_table`.
#[test]
fn readme_flag_table_matches_the_flags() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(README_BEGIN)
        .expect("README has the flags marker")
        + README_BEGIN.len();
    let end = start
        + readme[start..]
            .find(README_END)
            .expect("README has the end marker");
    if std::env::var_os("STREAMHOUSE_UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..start], markdown(), &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        markdown(),
        "README.md's flag table is stale: STREAMHOUSE_UPDATE_README=1 cargo test --lib readme_flag_table"
    );
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match parse(args.iter().map(OsString::from).collect(), &lookup)? {
        Parsed::Run(c) => Ok(*c),
        Parsed::Help => Err("help".into()),
        Parsed::Version => Err("version".into()),
    }
}

#[test]
fn defaults_flags_and_environment() {
    let c = run(&[], &[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:50051");
    assert_eq!(c.engine.data_dir, PathBuf::from("./streamhouse-data"));
    assert!(c.s3.is_none() && c.auth_token.is_none());
    let c = run(
        &[
            "--segment-max-bytes",
            "8MiB",
            "--cache-bytes=1GiB",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("STREAMHOUSE_SEGMENT_MAX_BYTES", "1KiB"),
            ("STREAMHOUSE_READER_THREADS", "3"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.engine.segment_max_bytes,
        8 << 20,
        "the flag wins over the variable"
    );
    assert_eq!(c.engine.cache_bytes, 1 << 30);
    assert_eq!(c.engine.reader_threads, 3);
    let c = run(
        &[],
        &[
            ("STREAMHOUSE_S3_BUCKET", "b"),
            ("STREAMHOUSE_S3_PATH_STYLE", "true"),
            ("AWS_ACCESS_KEY_ID", "ak"),
            ("AWS_SECRET_ACCESS_KEY", "sk"),
        ],
    )
    .unwrap();
    let s3 = c.s3.unwrap();
    assert_eq!(
        (s3.bucket.as_str(), s3.path_style, s3.region.as_str()),
        ("b", true, "us-east-1")
    );
    assert_eq!(s3.access_key.as_deref(), Some("ak"));
}

#[test]
fn bad_values_say_what_is_wrong() {
    for (args, needle) in [
        (vec!["--segment-max-bytes", "lots"], "--segment-max-bytes"),
        (vec!["--cache-bytes", "5XB"], "unknown size unit"),
        (vec!["--reader-threads", "0"], "--reader-threads"),
        (vec!["--listen", "nowhere"], "--listen"),
        (vec!["--bogus"], "unknown argument"),
        (vec!["--s3-endpoint", "http://x"], "--s3-bucket"),
        (vec!["--max-record-bytes", "0"], "--max-record-bytes"),
        (vec!["--segment-max-age-ms", "-5"], "--segment-max-age-ms"),
    ] {
        let e = run(&args, &[]).unwrap_err();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn help_lists_every_flag_with_its_variable_and_the_engine_defaults() {
    let h = help();
    for f in FLAGS {
        assert!(h.contains(f.name) && h.contains(f.env), "{}", f.name);
    }
    let c = EngineConfig::new(DEFAULT_DATA_DIR);
    assert!(h.contains(&format!("default {}", show_size(c.segment_max_bytes))));
    assert!(h.contains("default 64MiB"), "{h}");
    assert!(h.contains("default 127.0.0.1:50051"));
    let d = run(&[], &[]).unwrap();
    assert_eq!(d.engine.segment_max_bytes, c.segment_max_bytes);
    assert_eq!(d.engine.max_backlog_bytes, c.max_backlog_bytes);
}

#[test]
fn tls_and_sasl_flags_go_together_and_name_what_is_missing() {
    let c = run(
        &["--tls-cert", "c.pem", "--tls-key", "k.pem"],
        &[("STREAMHOUSE_TLS_CLIENT_CA", "ca.pem")],
    )
    .unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("c.pem"));
    assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
    assert!(run(&[], &[]).unwrap().tls.is_none());
    let sasl = run(
        &[
            "--kafka-sasl-users",
            "u",
            "--kafka-sasl-mechanisms",
            "SCRAM-SHA-512, PLAIN",
        ],
        &[],
    )
    .unwrap()
    .kafka
    .unwrap()
    .config
    .sasl
    .unwrap();
    assert_eq!(sasl.mechanisms.len(), 2);
    assert!(!sasl.plain_without_tls);
    for (args, needle) in [
        (vec!["--tls-cert", "c.pem"], "go together"),
        (vec!["--tls-client-ca", "ca.pem"], "needs --tls-cert"),
        (
            vec!["--kafka-sasl-plain-without-tls"],
            "need --kafka-sasl-users",
        ),
        (
            vec![
                "--kafka-sasl-users",
                "u",
                "--kafka-sasl-mechanisms",
                "GSSAPI",
            ],
            "\"GSSAPI\" is not one of",
        ),
    ] {
        let e = run(&args, &[]).unwrap_err();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}
