//! `streamhoused` flags, each also read from an environment variable (the
//! flag wins), parsed and validated once.

use crate::config::EngineConfig;
use crate::object_store::S3Config;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
streamhoused - the StreamHouse server (S3-native append-only log)

USAGE:
    streamhoused [FLAGS]

Each flag is also read from the environment variable in brackets; the flag
wins. Sizes accept plain bytes or KiB/MiB/GiB suffixes (e.g. 64MiB).

    --listen ADDR             [STREAMHOUSE_LISTEN]            default 127.0.0.1:50051
                              (port 0 picks a free port; the bound address is printed)
    --data-dir DIR            [STREAMHOUSE_DATA_DIR]          default ./streamhouse-data
    --s3-endpoint URL         [STREAMHOUSE_S3_ENDPOINT]       S3 mode when set or a bucket is set
    --s3-bucket NAME          [STREAMHOUSE_S3_BUCKET]
    --s3-region NAME          [STREAMHOUSE_S3_REGION]         default us-east-1
    --s3-prefix PREFIX        [STREAMHOUSE_S3_PREFIX]         default none
    --s3-path-style           [STREAMHOUSE_S3_PATH_STYLE]     path-style URLs (MinIO, SeaweedFS)
    --segment-max-bytes N     [STREAMHOUSE_SEGMENT_MAX_BYTES] default 64MiB
    --segment-max-age-ms N    [STREAMHOUSE_SEGMENT_MAX_AGE_MS] default 30000
    --cache-bytes N           [STREAMHOUSE_CACHE_BYTES]       default 256MiB
    --reader-threads N        [STREAMHOUSE_READER_THREADS]    default 8
    --max-record-bytes N      [STREAMHOUSE_MAX_RECORD_BYTES]  default 1MiB (key + value + headers)
    --max-backlog-bytes N     [STREAMHOUSE_MAX_BACKLOG_BYTES] default 1GiB not yet uploaded
    --auth-token TOKEN        [STREAMHOUSE_AUTH_TOKEN]        require `authorization: Bearer TOKEN`
    --metrics-listen ADDR     [STREAMHOUSE_METRICS_LISTEN]    serve /metrics (Prometheus text)
    -h, --help                print this help

S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Log level: STREAMHOUSE_LOG (error, warn, info, debug, trace; default info).
";

/// Everything `streamhoused` needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: String,
    pub engine: EngineConfig,
    /// `None`: the local directory store under the data directory.
    pub s3: Option<S3Config>,
    pub auth_token: Option<String>,
    pub metrics_listen: Option<String>,
}

/// Parses a size: plain bytes or with a KiB/MiB/GiB (or K/M/G) suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with KiB/MiB/GiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?}; use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Reads `--flag VALUE` or, failing that, the environment variable.
fn value(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<String>, String> {
    match args.opt_value_from_str::<_, String>(flag) {
        Ok(Some(v)) => Ok(Some(v)),
        Ok(None) => Ok(env(var).filter(|v| !v.is_empty())),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

fn truthy(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

pub enum Parsed {
    Help,
    Run(Box<ServerConfig>),
}

/// Parses `args` (without the program name) with `env` for the variables.
pub fn parse(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut a = pico_args::Arguments::from_vec(args);
    if a.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    let listen = value(&mut a, "--listen", env, "STREAMHOUSE_LISTEN")?
        .unwrap_or_else(|| "127.0.0.1:50051".to_string());
    let data_dir = value(&mut a, "--data-dir", env, "STREAMHOUSE_DATA_DIR")?
        .unwrap_or_else(|| "./streamhouse-data".to_string());
    let endpoint = value(&mut a, "--s3-endpoint", env, "STREAMHOUSE_S3_ENDPOINT")?;
    let bucket = value(&mut a, "--s3-bucket", env, "STREAMHOUSE_S3_BUCKET")?;
    let region = value(&mut a, "--s3-region", env, "STREAMHOUSE_S3_REGION")?;
    let prefix = value(&mut a, "--s3-prefix", env, "STREAMHOUSE_S3_PREFIX")?;
    let path_style = if a.contains("--s3-path-style") {
        true
    } else {
        match env("STREAMHOUSE_S3_PATH_STYLE") {
            Some(v) => truthy(&v).map_err(|e| format!("STREAMHOUSE_S3_PATH_STYLE: {e}"))?,
            None => false,
        }
    };
    let size = |name: &'static str, v: Option<String>| -> Result<Option<u64>, String> {
        v.map(|v| parse_size(&v).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let segment_max_bytes = size(
        "--segment-max-bytes",
        value(
            &mut a,
            "--segment-max-bytes",
            env,
            "STREAMHOUSE_SEGMENT_MAX_BYTES",
        )?,
    )?;
    let segment_max_age_ms = value(
        &mut a,
        "--segment-max-age-ms",
        env,
        "STREAMHOUSE_SEGMENT_MAX_AGE_MS",
    )?
    .map(|v| {
        v.parse::<u64>()
            .map_err(|_| format!("--segment-max-age-ms: {v:?} is not a number of milliseconds"))
    })
    .transpose()?;
    let cache_bytes = size(
        "--cache-bytes",
        value(&mut a, "--cache-bytes", env, "STREAMHOUSE_CACHE_BYTES")?,
    )?;
    let reader_threads = value(
        &mut a,
        "--reader-threads",
        env,
        "STREAMHOUSE_READER_THREADS",
    )?
    .map(|v| match v.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!(
            "--reader-threads: {v:?} must be a number from 1 to 256"
        )),
    })
    .transpose()?;
    let max_record_bytes = size(
        "--max-record-bytes",
        value(
            &mut a,
            "--max-record-bytes",
            env,
            "STREAMHOUSE_MAX_RECORD_BYTES",
        )?,
    )?;
    let max_backlog = size(
        "--max-backlog-bytes",
        value(
            &mut a,
            "--max-backlog-bytes",
            env,
            "STREAMHOUSE_MAX_BACKLOG_BYTES",
        )?,
    )?;
    let auth_token = value(&mut a, "--auth-token", env, "STREAMHOUSE_AUTH_TOKEN")?;
    let metrics_listen = value(
        &mut a,
        "--metrics-listen",
        env,
        "STREAMHOUSE_METRICS_LISTEN",
    )?;
    let rest = a.finish();
    if let Some(extra) = rest.first() {
        return Err(format!(
            "unknown argument {:?}; see streamhoused --help",
            extra.to_string_lossy()
        ));
    }

    let mut engine = EngineConfig::new(PathBuf::from(data_dir));
    if let Some(n) = segment_max_bytes {
        if n == 0 {
            return Err("--segment-max-bytes must be at least 1".into());
        }
        engine.segment_max_bytes = n;
    }
    if let Some(ms) = segment_max_age_ms {
        if ms == 0 {
            return Err("--segment-max-age-ms must be at least 1".into());
        }
        engine.segment_max_age = Duration::from_millis(ms);
    }
    if let Some(n) = cache_bytes {
        engine.cache_bytes = n;
    }
    if let Some(n) = reader_threads {
        engine.reader_threads = n;
    }
    if let Some(n) = max_record_bytes {
        if n == 0 || n > 64 << 20 {
            return Err(format!(
                "--max-record-bytes must be 1 byte to 64MiB, got {n}"
            ));
        }
        engine.max_record_bytes = n as usize;
    }
    if let Some(n) = max_backlog {
        engine.max_backlog_bytes = n;
    }
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(format!(
            "--listen: {listen:?} is not an address like 127.0.0.1:50051"
        ));
    }
    if let Some(m) = &metrics_listen {
        if m.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "--metrics-listen: {m:?} is not an address like 127.0.0.1:9100"
            ));
        }
    }
    if auth_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err("--auth-token must not be empty".into());
    }
    let s3 = if endpoint.is_some() || bucket.is_some() {
        let Some(bucket) = bucket else {
            return Err("--s3-endpoint needs --s3-bucket (STREAMHOUSE_S3_BUCKET)".into());
        };
        Some(S3Config {
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".to_string()),
            bucket,
            prefix: prefix.unwrap_or_default(),
            path_style,
            access_key: env("AWS_ACCESS_KEY_ID").filter(|s| !s.is_empty()),
            secret_key: env("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty()),
            request_timeout: Duration::from_secs(30),
        })
    } else {
        None
    };
    Ok(Parsed::Run(Box::new(ServerConfig {
        listen,
        engine,
        s3,
        auth_token,
        metrics_listen,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(args.iter().map(OsString::from).collect(), &lookup)? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help => Err("help".into()),
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
    fn sizes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("2 MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
