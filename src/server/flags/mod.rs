//! `streamhoused` flags: one table (flag, environment variable, value,
//! default, help) that parsing and `--help` both read, so each default is
//! written once. Engine defaults come from [`EngineConfig::new`].

use crate::config::EngineConfig;
use crate::object_store::S3Config;
use crate::util::size::parse_size;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
const DEFAULT_DATA_DIR: &str = "./streamhouse-data";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
const DEFAULT_MAX_STREAMS: usize = 1000;
const DEFAULT_KAFKA_LISTEN: &str = "127.0.0.1:9092";
const DEFAULT_KAFKA_MAX_CONNECTIONS: usize = 4096;

mod kafka;
mod table;

pub use kafka::KafkaListener;
pub use table::{Flag, FLAGS};

/// The `--help` text, from [`FLAGS`].
pub fn help() -> String {
    let defaults = EngineConfig::new(DEFAULT_DATA_DIR);
    let mut s = String::from(
        "streamhoused - the StreamHouse server (S3-native append-only log)\n\n\
         USAGE:\n    streamhoused [FLAGS]\n\n\
         Each flag is also read from the environment variable in brackets; the flag\n\
         wins. Sizes accept plain bytes or KiB/MiB/GiB suffixes (e.g. 64MiB).\n\n",
    );
    for f in FLAGS {
        let flag = format!("{} {}", f.name, f.value);
        let default = (f.default)(&defaults).map_or(String::new(), |d| format!(" (default {d})"));
        s.push_str(&format!(
            "    {flag:<26}[{}]\n        {}{default}\n",
            f.env, f.help
        ));
    }
    s.push_str(
        "    -h, --help\n        print this help\n\n\
         S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.\n\
         Log level: STREAMHOUSE_LOG (error, warn, info, debug, trace; default info).\n",
    );
    s
}

/// The flag table as Markdown, for README.md (a test keeps the README's
/// copy equal to this, so it cannot drift from `--help`).
pub fn markdown() -> String {
    let defaults = EngineConfig::new(DEFAULT_DATA_DIR);
    let mut s = String::from(
        "| flag | environment variable | default | what it sets |\n|---|---|---|---|\n",
    );
    for f in FLAGS {
        let flag = match f.value {
            "" => format!("`{}`", f.name),
            v => format!("`{} {v}`", f.name),
        };
        let default = (f.default)(&defaults).map_or("—".to_string(), |d| format!("`{d}`"));
        s.push_str(&format!(
            "| {flag} | `{}` | {default} | {} |\n",
            f.env,
            f.help.replace('|', "\\|")
        ));
    }
    s.push_str(
        "| | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | — | S3 credentials |\n\
         | | `STREAMHOUSE_LOG` | `info` | log level: error, warn, info, debug, trace |\n",
    );
    s
}

/// Everything `streamhoused` needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: String,
    pub engine: EngineConfig,
    /// `None`: the local directory store under the data directory.
    pub s3: Option<S3Config>,
    pub auth_token: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_connections: usize,
    pub max_streams: usize,
    /// `None`: `--kafka-listen off`.
    pub kafka: Option<KafkaListener>,
    /// TLS on both listeners (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
    pub tls: Option<crate::tls::TlsFiles>,
}

pub enum Parsed {
    Help,
    Version,
    Run(Box<ServerConfig>),
}

fn truthy(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// The values given, by flag name: from the command line, else from the
/// environment. Switches are "true" when on.
fn read_values(
    a: &mut pico_args::Arguments,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, String> {
    let mut values = HashMap::new();
    for f in FLAGS {
        let given = if f.value.is_empty() {
            if a.contains(f.name) {
                Some("true".to_string())
            } else {
                match env(f.env) {
                    Some(v) => truthy(&v)
                        .map_err(|e| format!("{}: {e}", f.env))?
                        .then(|| "true".to_string()),
                    None => None,
                }
            }
        } else {
            match a.opt_value_from_str::<_, String>(f.name) {
                Ok(Some(v)) => Some(v),
                Ok(None) => env(f.env).filter(|v| !v.is_empty()),
                Err(e) => return Err(format!("{}: {e}", f.name)),
            }
        };
        if let Some(v) = given {
            values.insert(f.name, v);
        }
    }
    Ok(values)
}

/// Typed access to the values read.
struct Values(HashMap<&'static str, String>);

impl Values {
    fn text(&self, flag: &str) -> Option<String> {
        self.0.get(flag).cloned()
    }

    fn size(&self, flag: &str) -> Result<Option<u64>, String> {
        self.0
            .get(flag)
            .map(|v| parse_size(v).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    }

    /// A count from 1 to `max`.
    fn count(&self, flag: &str, max: usize) -> Result<Option<usize>, String> {
        match self.number::<usize>(flag, "a number") {
            Ok(Some(n)) if (1..=max).contains(&n) => Ok(Some(n)),
            Ok(None) => Ok(None),
            _ => Err(format!(
                "{flag}: {:?} must be a number from 1 to {max}",
                self.text(flag).unwrap_or_default()
            )),
        }
    }

    fn number<T: std::str::FromStr>(&self, flag: &str, what: &str) -> Result<Option<T>, String> {
        self.0
            .get(flag)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{flag}: {v:?} is not {what}"))
            })
            .transpose()
    }
}

/// Parses `args` (without the program name) with `env` for the variables.
pub fn parse(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut a = pico_args::Arguments::from_vec(args);
    if a.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    if a.contains(["-V", "--version"]) {
        return Ok(Parsed::Version);
    }
    let v = Values(read_values(&mut a, env)?);
    if let Some(extra) = a.finish().first() {
        let extra = extra.to_string_lossy();
        let name = extra.split('=').next().unwrap_or(&extra);
        let hint = crate::util::suggest::closest(name, FLAGS.iter().map(|f| f.name))
            .map(|f| format!("did you mean {f}? "))
            .unwrap_or_default();
        return Err(format!(
            "unknown argument {extra:?}; {hint}see streamhoused --help"
        ));
    }
    let listen = v.text("--listen").unwrap_or_else(|| DEFAULT_LISTEN.into());
    let data_dir = v
        .text("--data-dir")
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let engine = engine_config(&v, PathBuf::from(data_dir))?;
    check_address("--listen", &listen, "127.0.0.1:50051")?;
    let metrics_listen = v.text("--metrics-listen");
    if let Some(m) = &metrics_listen {
        check_address("--metrics-listen", m, "127.0.0.1:9100")?;
    }
    let max_connections = v
        .count("--max-connections", 1 << 20)?
        .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let max_streams = v
        .count("--max-streams", 1 << 20)?
        .unwrap_or(DEFAULT_MAX_STREAMS);
    let auth_token = v.text("--auth-token");
    if auth_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err("--auth-token must not be empty".into());
    }
    Ok(Parsed::Run(Box::new(ServerConfig {
        listen,
        engine,
        s3: s3_config(&v, env)?,
        auth_token,
        metrics_listen,
        max_connections,
        max_streams,
        kafka: kafka::kafka_listener(&v)?,
        tls: tls_files(&v)?,
    })))
}

/// `--tls-cert` and `--tls-key` go together; `--tls-client-ca` needs them.
fn tls_files(v: &Values) -> Result<Option<crate::tls::TlsFiles>, String> {
    let path = |f: &str| v.text(f).map(PathBuf::from);
    match (
        path("--tls-cert"),
        path("--tls-key"),
        path("--tls-client-ca"),
    ) {
        (Some(cert), Some(key), client_ca) => Ok(Some(crate::tls::TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None, None) => Ok(None),
        (None, None, Some(_)) => Err("--tls-client-ca needs --tls-cert and --tls-key".into()),
        _ => Err("--tls-cert and --tls-key go together".into()),
    }
}

/// HOST:PORT, the host a name or an address (`localhost:50051` as well as
/// `127.0.0.1:50051` or `[::1]:50051`).
fn check_address(flag: &str, addr: &str, example: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{flag}: {addr:?} is not HOST:PORT like {example}"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{flag}: {addr:?} is not HOST:PORT like {example}"));
    }
    match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{flag}: {host:?} resolves to no address")),
        Err(e) => Err(format!("{flag}: cannot resolve {host:?}: {e}")),
    }
}

fn engine_config(v: &Values, data_dir: PathBuf) -> Result<EngineConfig, String> {
    let mut engine = EngineConfig::new(data_dir);
    engine.take_over = v.0.contains_key("--take-over");
    engine.old_owner_is_dead = v.0.contains_key("--old-owner-is-dead");
    if engine.old_owner_is_dead && !engine.take_over {
        return Err("--old-owner-is-dead goes with --take-over".into());
    }
    if let Some(list) = v.text("--repair-wal") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.rsplit_once('/') {
                Some((t, p)) if !t.is_empty() && p.parse::<u32>().is_ok() => {
                    engine.repair_wal.push(item.to_string())
                }
                _ => {
                    return Err(format!(
                        "--repair-wal: {item:?} is not TOPIC/PARTITION (e.g. orders/3)"
                    ))
                }
            }
        }
    }
    if let Some(n) = v.size("--segment-max-bytes")? {
        if n == 0 {
            return Err("--segment-max-bytes must be at least 1".into());
        }
        engine.segment_max_bytes = n;
    }
    if let Some(ms) = v.number::<u64>("--segment-max-age-ms", "a number of milliseconds")? {
        if ms == 0 {
            return Err("--segment-max-age-ms must be at least 1".into());
        }
        engine.segment_max_age = Duration::from_millis(ms);
    }
    if let Some(ms) = v.number::<u64>("--producer-expiry-ms", "a number of milliseconds")? {
        if ms == 0 {
            return Err("--producer-expiry-ms must be at least 1".into());
        }
        engine.producer_expiry = Duration::from_millis(ms);
    }
    if let Some(ms) = v.number::<u64>("--retention-check-ms", "a number of milliseconds")? {
        if ms == 0 {
            return Err("--retention-check-ms must be at least 1".into());
        }
        engine.retention_interval = Duration::from_millis(ms);
    }
    if let Some(n) = v.size("--cache-bytes")? {
        engine.cache_bytes = n;
    }
    if let Some(n) = v.count("--reader-threads", 256)? {
        engine.reader_threads = n;
    }
    if let Some(n) = v.count("--upload-threads", 256)? {
        engine.upload_threads = n;
    }
    if let Some(n) = v.count("--uploads-per-partition", 16)? {
        engine.uploads_per_partition = n;
    }
    if let Some(n) = v.size("--max-record-bytes")? {
        if n == 0 || n > 64 << 20 {
            return Err(format!(
                "--max-record-bytes must be 1 byte to 64MiB, got {n}"
            ));
        }
        engine.max_record_bytes = n as usize;
    }
    if let Some(n) = v.size("--max-fetch-bytes")? {
        if n == 0 || n > 256 << 20 {
            return Err(format!(
                "--max-fetch-bytes must be 1 byte to 256MiB, got {n}"
            ));
        }
        engine.max_fetch_bytes = n as usize;
    }
    match v.number::<usize>("--max-fetch-records", "a number from 1 to 1000000") {
        Ok(Some(n)) if (1..=1_000_000).contains(&n) => engine.max_fetch_records = n,
        Ok(None) => {}
        _ => {
            return Err(format!(
                "--max-fetch-records: {:?} must be a number from 1 to 1000000",
                v.text("--max-fetch-records").unwrap_or_default()
            ))
        }
    }
    if let Some(n) = v.size("--max-backlog-bytes")? {
        engine.max_backlog_bytes = n;
    }
    engine.cluster = cluster_config(v)?;
    Ok(engine)
}

/// Cluster mode, when `--etcd` is given. The advertised addresses are
/// filled from the bound ones at start when not given.
fn cluster_config(v: &Values) -> Result<Option<crate::config::ClusterConfig>, String> {
    use crate::config::ClusterConfig;
    let Some(etcd) = v.text("--etcd") else {
        for flag in ["--cluster", "--advertise-addr", "--cluster-ttl-ms"] {
            if v.0.contains_key(flag) {
                return Err(format!("{flag} goes with --etcd (cluster mode)"));
            }
        }
        return Ok(None);
    };
    for url in etcd.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        crate::cluster::parse_endpoint(url).map_err(|e| format!("--etcd: {e}"))?;
    }
    let name = v.text("--cluster").unwrap_or_else(|| "default".into());
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "--cluster: {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    let grpc_addr = v.text("--advertise-addr").unwrap_or_default();
    if !grpc_addr.is_empty() {
        crate::kafka::split_host_port(&grpc_addr).map_err(|e| format!("--advertise-addr: {e}"))?;
    }
    let ttl = match v.number::<u64>("--cluster-ttl-ms", "a number of milliseconds")? {
        Some(ms) if (1000..=60_000).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => return Err(format!("--cluster-ttl-ms: {ms} is not from 1000 to 60000")),
        None => ClusterConfig::DEFAULT_TTL,
    };
    Ok(Some(ClusterConfig {
        etcd,
        name,
        ttl,
        grpc_addr,
        kafka_addr: String::new(),
    }))
}

fn s3_config(v: &Values, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<S3Config>, String> {
    let endpoint = v.text("--s3-endpoint");
    let bucket = v.text("--s3-bucket");
    if endpoint.is_none() && bucket.is_none() {
        return Ok(None);
    }
    let Some(bucket) = bucket else {
        return Err("--s3-endpoint needs --s3-bucket (STREAMHOUSE_S3_BUCKET)".into());
    };
    let path_style = v.0.contains_key("--s3-path-style");
    if let Some(e) = endpoint.as_deref().filter(|_| !path_style) {
        let host = e.split("://").last().unwrap_or(e);
        let host = host.split('/').next().unwrap_or(host);
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "--s3-endpoint {e}: the bucket cannot be a subdomain of {host} (virtual-hosted \
                 style); add --s3-path-style (STREAMHOUSE_S3_PATH_STYLE=true), as MinIO and \
                 other stores on one host need"
            ));
        }
    }
    Ok(Some(S3Config {
        endpoint,
        region: v
            .text("--s3-region")
            .unwrap_or_else(|| DEFAULT_REGION.into()),
        bucket,
        prefix: v.text("--s3-prefix").unwrap_or_default(),
        path_style,
        access_key: env("AWS_ACCESS_KEY_ID").filter(|s| !s.is_empty()),
        secret_key: env("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty()),
        request_timeout: Duration::from_secs(30),
    }))
}

#[cfg(test)]
mod tests;
