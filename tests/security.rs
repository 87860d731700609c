//! Security on the real `streamhoused`: SASL on the Kafka listener, by
//! hand-made requests (what a connection may send before it
//! authenticates, PLAIN right and wrong and closed after the error,
//! mechanisms refused, PLAIN kept off a listener without TLS), the users
//! file that `streamctl user` writes, and the warnings of a node exposed
//! without protection. Real clients (kcat, confluent-kafka, Python gRPC,
//! SCRAM and mutual TLS) run in scripts/security.sh.

mod common;

use common::kafka::KafkaConn;
use common::TestServer;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// `streamctl user ARGS` with `stdin`; (exit code, stdout, stderr).
fn user(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn users_file(dir: &Path) -> String {
    let file = dir.join("users").display().to_string();
    let (code, _, err) = user(&["add", "alice", "--users-file", &file], "wonderland\n");
    assert_eq!(code, 0, "{err}");
    file
}

fn plain(user: &str, password: &str) -> SaslAuthenticateRequest {
    let msg = format!("\0{user}\0{password}");
    SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(msg.into_bytes()))
}

fn handshake(k: &mut KafkaConn, mechanism: &str) -> SaslHandshakeResponse {
    k.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
    )
}

fn metadata() -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![]))
}

#[test]
fn streamctl_user_adds_lists_and_deletes_users_without_storing_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(dir.path());
    let (code, _, _) = user(&["add", "bob", "--users-file", &file], "builder\n");
    assert_eq!(code, 0);
    let (code, out, _) = user(&["list", "--users-file", &file], "");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "alice\tSCRAM-SHA-256,SCRAM-SHA-512\nbob\tSCRAM-SHA-256,SCRAM-SHA-512\n"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("wonderland") && !text.contains("builder"));
    let (code, _, _) = user(&["delete", "bob", "--users-file", &file], "");
    assert_eq!(code, 0);
    let (code, _, err) = user(&["delete", "bob", "--users-file", &file], "");
    assert_eq!(code, 1);
    assert!(err.contains("no user \"bob\""), "{err}");
    for (args, stdin, want) in [
        (vec!["add", "carol", "--users-file", &file], "\n", "empty"),
        (vec!["add", "a b", "--users-file", &file], "pw\n", "space"),
        (vec!["add", "carol"], "pw\n", "--users-file is needed"),
        (
            vec!["rename", "--users-file", &file],
            "",
            "expected add, delete or list",
        ),
    ] {
        let (code, _, err) = user(&args, stdin);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, out, _) = user(&["list", "--users-file", &file], "");
    assert_eq!(
        (code, out.as_str()),
        (0, "alice\tSCRAM-SHA-256,SCRAM-SHA-512\n")
    );
}

#[test]
fn a_connection_authenticates_before_anything_else_and_a_failure_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(dir.path());
    let srv = TestServer::start_in(
        dir.path(),
        &[
            "--kafka-sasl-users",
            &file,
            "--kafka-sasl-plain-without-tls",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let addr = srv.kafka_addr.clone().unwrap();

    // ApiVersions lists the SASL APIs, and is answered before SASL.
    let mut k = KafkaConn::connect(&addr);
    let v = k.call(3, &ApiVersionsRequest::default());
    for key in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate] {
        assert!(
            v.api_keys.iter().any(|a| a.api_key == key as i16),
            "{key:?}"
        );
    }
    // Anything else before authenticating closes the connection.
    k.send(12, &metadata());
    assert!(k.is_closed(), "Metadata before SASL was served");

    // Nor between the handshake and the authentication.
    let mut k = KafkaConn::connect(&addr);
    assert_eq!(handshake(&mut k, "SCRAM-SHA-512").error_code, 0);
    k.send(12, &metadata());
    assert!(k.is_closed(), "Metadata after SaslHandshake was served");
    // Before authenticating, a frame may not be larger than 512 KiB.
    let mut k = KafkaConn::connect(&addr);
    k.stream.write_all(&(1i32 << 20).to_be_bytes()).unwrap();
    assert!(k.is_closed(), "a 1 MiB frame was read before SASL");

    // The right password: then requests are served.
    let mut k = KafkaConn::connect(&addr);
    let h = handshake(&mut k, "PLAIN");
    assert_eq!(h.error_code, 0);
    assert_eq!(
        h.mechanisms,
        vec![s("SCRAM-SHA-256"), s("SCRAM-SHA-512"), s("PLAIN")]
    );
    let a = k.call(2, &plain("alice", "wonderland"));
    assert_eq!((a.error_code, a.error_message), (0, None));
    assert_eq!(k.call(12, &metadata()).brokers.len(), 1);
    // A second handshake on an authenticated connection is refused.
    assert_eq!(handshake(&mut k, "PLAIN").error_code, 34);
    assert!(k.is_closed());

    // A wrong password, or an unknown user: SASL_AUTHENTICATION_FAILED,
    // then the connection is closed.
    for (who, password) in [("alice", "wonderlant"), ("mallory", "wonderland")] {
        let mut k = KafkaConn::connect(&addr);
        assert_eq!(handshake(&mut k, "PLAIN").error_code, 0);
        let a = k.call(1, &plain(who, password));
        assert_eq!(a.error_code, 58, "{who}");
        assert!(a.error_message.unwrap().contains("Authentication failed"));
        assert!(
            k.is_closed(),
            "{who}: still open after a failed authentication"
        );
    }

    // An unknown mechanism gets the list, and the connection closes.
    let mut k = KafkaConn::connect(&addr);
    let h = handshake(&mut k, "GSSAPI");
    assert_eq!(h.error_code, 33);
    assert_eq!(h.mechanisms.len(), 3);
    assert!(k.is_closed());
    // SaslHandshake v0 (raw tokens would follow): refused and closed.
    let mut k = KafkaConn::connect(&addr);
    let h: SaslHandshakeResponse = k.call(
        0,
        &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
    );
    assert_eq!(h.error_code, 35);
    assert!(k.is_closed());
    // SaslAuthenticate without a handshake.
    let mut k = KafkaConn::connect(&addr);
    assert_eq!(k.call(1, &plain("alice", "wonderland")).error_code, 34);
    assert!(k.is_closed());

    // The server served all along; /metrics counted each outcome.
    let m = common::http_get(srv.metrics_url.as_ref().unwrap());
    assert!(
        m.contains("streamhouse_kafka_sasl_authentications_total{result=\"succeeded\"} 1\n"),
        "{m}"
    );
    // Two wrong passwords, the unknown mechanism, and the out-of-order
    // SaslAuthenticate.
    assert!(
        m.contains("streamhouse_kafka_sasl_authentications_total{result=\"failed\"} 4\n"),
        "{m}"
    );
}

#[test]
fn plain_is_not_offered_without_tls_unless_allowed_and_a_missing_users_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(dir.path());
    let srv = TestServer::start_in(dir.path(), &["--kafka-sasl-users", &file]);
    let addr = srv.kafka_addr.clone().unwrap();
    let mut k = KafkaConn::connect(&addr);
    let h = handshake(&mut k, "PLAIN");
    assert_eq!(h.error_code, 33);
    assert_eq!(h.mechanisms, vec![s("SCRAM-SHA-256"), s("SCRAM-SHA-512")]);
    assert!(k.is_closed());
    drop(srv);

    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("other"))
        .args(["--kafka-sasl-users"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("streamctl user add"),
        "{err}"
    );
}

/// The WARN lines a node started with `flags` logs before it serves.
fn start_warnings(dir: &Path, flags: &[&str]) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args(["--data-dir"])
        .arg(dir)
        .args(flags)
        .env("STREAMHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("kafka on") {
        line.clear();
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_reachable_beyond_loopback_without_protection_says_so_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let open = ["--listen", "0.0.0.0:0", "--kafka-listen", "0.0.0.0:0"];
    let warned = start_warnings(&dir.path().join("a"), &open);
    assert!(
        warned.contains("gRPC on 0.0.0.0:")
            && warned.contains("without --auth-token or --tls-client-ca"),
        "{warned}"
    );
    assert!(
        warned.contains("Kafka on 0.0.0.0:")
            && warned.contains("without --kafka-sasl-users or --tls-client-ca"),
        "{warned}"
    );
    // A token and SASL without TLS: the warning is about clear text.
    let file = users_file(dir.path());
    let mut flags = open.to_vec();
    flags.extend(["--auth-token", "t", "--kafka-sasl-users", &file]);
    let warned = start_warnings(&dir.path().join("b"), &flags);
    assert!(!warned.contains("anyone who reaches"), "{warned}");
    assert!(warned.contains("without --tls-cert: the token"), "{warned}");
    assert!(warned.contains("without --tls-cert: records"), "{warned}");
    // On loopback (the default), nothing to say.
    let warned = start_warnings(
        &dir.path().join("c"),
        &["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"],
    );
    assert!(!warned.contains("WARN"), "{warned}");
}
