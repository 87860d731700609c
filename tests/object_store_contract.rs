//! One contract suite, run against every store: memory, local directory, and
//! S3 on the test server started by `scripts/s3-server.sh`.
//!
//! The S3 run needs STREAMHOUSE_TEST_S3_ENDPOINT (and the AWS_* credentials)
//! from `scripts/s3-server.sh env`. When it is missing the S3 test fails if
//! STREAMHOUSE_REQUIRE_S3=1 or CI=true (as in `scripts/test.sh`), and is
//! skipped with a message otherwise.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use streamhouse::object_store::{
    LocalFsStore, MemoryStore, ObjectStore, RetryPolicy, RetryingStore, S3Config, S3Store,
    StoreError,
};

fn unique(tag: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// Conditional writes: `Absent` only creates, `Version` only replaces the
/// version read. Returns false if the store ignored a condition (some
/// S3-compatible stores do; the owner record probes for that).
fn conditional_writes_hold(store: &dyn ObjectStore) -> bool {
    use streamhouse::object_store::{Expect, StoreError};
    let key = "cond/record";
    store.put_if(key, b"v1", Expect::Absent).unwrap();
    let first = store.get_versioned(key).unwrap();
    assert_eq!(first.data, b"v1");
    if !matches!(
        store.put_if(key, b"v2", Expect::Absent),
        Err(StoreError::PreconditionFailed { .. })
    ) {
        return false;
    }
    store
        .put_if(key, b"v3", Expect::Version(&first.etag))
        .unwrap();
    let third = store.get_versioned(key).unwrap();
    assert_eq!(third.data, b"v3");
    assert_ne!(third.etag, first.etag);
    matches!(
        store.put_if(key, b"v4", Expect::Version(&first.etag)),
        Err(StoreError::PreconditionFailed { .. })
    ) && store.get(key).unwrap() == b"v3"
}

fn contract(store: &dyn ObjectStore) {
    let name = store.describe();
    // put / get / size / overwrite
    store.put("a/one", b"hello world").unwrap();
    assert_eq!(store.get("a/one").unwrap(), b"hello world", "{name}");
    assert_eq!(store.size("a/one").unwrap(), 11);
    store.put("a/one", b"replaced").unwrap();
    assert_eq!(store.get("a/one").unwrap(), b"replaced");
    store.put("a/empty", b"").unwrap();
    assert_eq!(store.get("a/empty").unwrap(), b"");
    assert_eq!(store.size("a/empty").unwrap(), 0);

    // ranges: exact bytes, inclusive edges, empty range, past the end
    let data = common::noise(10_000, 7);
    store.put("a/ranged", &data).unwrap();
    for (s, e) in [(0, 1), (0, 10_000), (9_999, 10_000), (1_234, 5_678), (5, 5)] {
        assert_eq!(
            store.get_range("a/ranged", s..e).unwrap(),
            &data[s as usize..e as usize],
            "{name}: range {s}..{e}"
        );
    }
    for (s, e) in [(0, 10_001), (10_000, 10_001), (20_000, 20_010)] {
        match store.get_range("a/ranged", s..e) {
            Err(StoreError::OutOfBounds { .. }) => {}
            other => panic!("{name}: range {s}..{e} past the end gave {other:?}"),
        }
    }

    // 20 MiB object
    let big = common::noise(20 * 1024 * 1024, 99);
    store.put("big/object", &big).unwrap();
    assert_eq!(store.size("big/object").unwrap(), big.len() as u64);
    assert!(
        store.get("big/object").unwrap() == big,
        "{name}: 20 MiB round trip"
    );
    let tail = store
        .get_range("big/object", big.len() as u64 - 4096..big.len() as u64)
        .unwrap();
    assert_eq!(tail, &big[big.len() - 4096..]);

    // missing keys
    for result in [
        store.get("a/missing").map(|_| ()),
        store.get_range("a/missing", 0..1).map(|_| ()),
        store.size("a/missing").map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{name}: {result:?}"
        );
    }
    store.delete("a/missing").unwrap(); // idempotent

    // two prefixes that must not see each other (one a string prefix of the other)
    store.put("p1/x", b"1").unwrap();
    store.put("p1/y", b"2").unwrap();
    store.put("p10/x", b"3").unwrap();
    let keys = |prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    assert_eq!(keys("p1/"), vec!["p1/x", "p1/y"], "{name}");
    assert_eq!(keys("p10/"), vec!["p10/x"], "{name}");
    assert_eq!(
        keys("p1"),
        vec!["p1/x", "p1/y", "p10/x"],
        "{name}: string prefix"
    );
    assert!(keys("nothing/").is_empty());
    let listed = store.list("a/").unwrap();
    let ranged = listed.iter().find(|o| o.key == "a/ranged").unwrap();
    assert_eq!(ranged.size, 10_000, "{name}: list reports sizes");

    // unusual but legal characters
    let odd = [
        "odd/with space",
        "odd/plus+equals=amp&",
        "odd/percent%20not-decoded",
        "odd/unicode-ключ-キー-🦀",
        "odd/quote'paren(1)comma,semi;",
        "odd/tilde~star*dollar$at@",
        "odd/..dots../.hidden",
    ];
    for (i, k) in odd.iter().enumerate() {
        store.put(k, format!("v{i}").as_bytes()).unwrap();
    }
    for (i, k) in odd.iter().enumerate() {
        assert_eq!(
            store.get(k).unwrap(),
            format!("v{i}").as_bytes(),
            "{name}: {k}"
        );
    }
    let listed: BTreeSet<String> = keys("odd/").into_iter().collect();
    let expected: BTreeSet<String> = odd.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, expected, "{name}");

    // invalid keys are refused the same way everywhere
    for bad in ["", "/abs", "a/../b", "a//b", "a\\b", "a\0b"] {
        assert!(
            matches!(store.put(bad, b"x"), Err(StoreError::Permanent { .. })),
            "{name}: {bad:?}"
        );
    }

    // delete
    store.delete("p1/x").unwrap();
    assert!(matches!(
        store.get("p1/x"),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(keys("p1/"), vec!["p1/y"]);
    for k in keys("") {
        store.delete(&k).unwrap();
    }
    assert!(keys("").is_empty(), "{name}: everything deleted");
}

#[test]
fn memory_store_meets_the_contract() {
    let store = MemoryStore::new();
    contract(&store);
    assert!(conditional_writes_hold(&store));
}

#[test]
fn local_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFsStore::open(dir.path().join("objects")).unwrap();
    contract(&store);
    assert!(conditional_writes_hold(&store));
    // Nothing escaped the root.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("objects")]);
}

#[test]
fn retrying_store_over_a_flaky_store_meets_the_contract() {
    let mem = MemoryStore::new();
    mem.set_faults(streamhouse::object_store::Faults {
        fail_fraction: 0.3,
        ..Default::default()
    });
    let store = RetryingStore::new(
        Arc::new(mem.clone()),
        RetryPolicy {
            max_attempts: 50,
            base_delay: std::time::Duration::from_micros(100),
            max_delay: std::time::Duration::from_millis(1),
            max_elapsed: std::time::Duration::from_secs(30),
        },
        streamhouse::util::sync::StopSignal::new(),
    );
    contract(&store);
    assert!(store.retry_count() > 0);
}

fn s3_config() -> Option<S3Config> {
    let endpoint = std::env::var("STREAMHOUSE_TEST_S3_ENDPOINT").ok();
    let required = std::env::var("STREAMHOUSE_REQUIRE_S3").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(endpoint) = endpoint else {
        if required {
            panic!("STREAMHOUSE_TEST_S3_ENDPOINT is not set but S3 tests are required; run scripts/s3-server.sh start");
        }
        eprintln!(
            "skipping S3 contract: STREAMHOUSE_TEST_S3_ENDPOINT not set (see scripts/s3-server.sh)"
        );
        return None;
    };
    Some(
        S3Config {
            endpoint: Some(endpoint),
            region: std::env::var("STREAMHOUSE_TEST_S3_REGION")
                .unwrap_or_else(|_| "us-east-1".into()),
            bucket: std::env::var("STREAMHOUSE_TEST_S3_BUCKET")
                .unwrap_or_else(|_| "streamhouse-test".into()),
            prefix: unique("contract"),
            path_style: true,
            request_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        }
        .with_env_credentials(),
    )
}

#[test]
fn s3_store_meets_the_contract() {
    let Some(config) = s3_config() else { return };
    let store = S3Store::new(&config).expect("S3 store");
    contract(&store);
    let honoured = conditional_writes_hold(&store);
    eprintln!(
        "conditional writes on {}: {}",
        store.describe(),
        if honoured { "honoured" } else { "IGNORED" }
    );
}

#[test]
fn s3_prefixes_isolate_stores_in_one_bucket() {
    let Some(config) = s3_config() else { return };
    let a = S3Store::new(&config).unwrap();
    let b = S3Store::new(&S3Config {
        prefix: format!("{}-other", config.prefix),
        ..config.clone()
    })
    .unwrap();
    a.put("k", b"from a").unwrap();
    b.put("k", b"from b").unwrap();
    assert_eq!(a.get("k").unwrap(), b"from a");
    assert_eq!(b.get("k").unwrap(), b"from b");
    assert_eq!(a.list("").unwrap().len(), 1);
    a.delete("k").unwrap();
    assert_eq!(b.get("k").unwrap(), b"from b");
    b.delete("k").unwrap();
}

#[test]
fn s3_wrong_credentials_are_a_permanent_error() {
    let Some(config) = s3_config() else { return };
    let store = S3Store::new(&S3Config {
        secret_key: Some("definitely-wrong".into()),
        ..config
    })
    .unwrap();
    match store.put("k", b"v") {
        Err(StoreError::Permanent { reason, .. }) => {
            assert!(reason.contains("HTTP 403"), "{reason}")
        }
        other => panic!("expected a permanent 403, got {other:?}"),
    }
}

#[test]
fn s3_unreachable_endpoint_is_transient() {
    // A port nothing listens on: connection refused must be retryable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store = S3Store::new(&S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        bucket: "b".into(),
        path_style: true,
        access_key: Some("a".into()),
        secret_key: Some("s".into()),
        request_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let err = store.get("k").unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
