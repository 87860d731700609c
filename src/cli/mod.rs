//! `streamctl`: the command-line client. Every command is a function over a
//! gRPC connection; `run` parses arguments and maps failures to one line on
//! stderr and an exit code (1 runtime, 2 usage).

mod output;
mod perf;

use crate::proto::grpc::{AdminServiceClient, ConsumerServiceClient, ProducerServiceClient};
use crate::proto::{self as pb};
use grpcio::{CallOption, ChannelBuilder, Environment, MetadataBuilder, RpcStatusCode};
use output::{json_bytes, json_str, table};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HELP: &str = "\
streamctl - the StreamHouse command-line client

USAGE:
    streamctl [GLOBAL FLAGS] COMMAND [ARGS]

GLOBAL FLAGS:
    --server ADDR        [STREAMHOUSE_ADDR]   default 127.0.0.1:50051
    --token TOKEN        [STREAMHOUSE_TOKEN]  sent as `authorization: Bearer TOKEN`
    --format text|json   output format (consume also takes raw)
    -h, --help           help; `streamctl COMMAND --help` for a command

COMMANDS:
    topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    topic list
    topic describe NAME
    topic delete NAME
    produce TOPIC [--partition P] [--key K] [--header K=V]... [--acks wal|uploaded|none]
                  [--value V | --file F | stdin] [--key-separator SEP] [--batch N]
    consume TOPIC [--partition P] [--offset N | --from-beginning | --from-end | --from-time T]
                  [--limit N] [--follow] [--group G]
                  [--print-key] [--print-offset] [--print-timestamp] [--print-headers]
    group list
    group get GROUP
    group commit GROUP --topic T --partition P --offset N [--metadata M]
    perf-produce --topic T --records N --record-size B [--batch N] [--acks A]
                 [--throughput R] [--payload-file F] [--partition P]
    perf-consume --topic T --records N [--partition P]
";

const TOPIC_HELP: &str = "\
streamctl topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    Creates a topic. Retention 0 (the default) keeps data forever; retention
    bytes are per partition and accept KiB/MiB/GiB suffixes.
streamctl topic list
    A table of topics: name, partitions, records, stored bytes.
streamctl topic describe NAME
    Per partition: low and high watermark, segments, stored bytes.
streamctl topic delete NAME
    Deletes the topic with its data.
";

const PRODUCE_HELP: &str = "\
streamctl produce TOPIC [FLAGS]
    Sends records and prints where they landed.

    --value V            one record with value V
    --file F             one record per line of F
    (neither)            one record per line of standard input
    --key K              the key of every record (default: no key)
    --key-separator SEP  split each line at the first SEP into key and value
    --header K=V         a header on every record (repeatable)
    --partition P        the partition (default: by key hash, keyless round-robin)
    --acks A             wal (default), uploaded or none
    --batch N            records per request (default 1000)
";

const CONSUME_HELP: &str = "\
streamctl consume TOPIC [FLAGS]
    Prints records. Without --follow it stops at the end of each partition.

    --partition P        one partition (default: every partition)
    --offset N           start at offset N
    --from-beginning     start at the low watermark (the default)
    --from-end           start at the high watermark (use with --follow)
    --from-time T        start at the first record at or after T
                         (milliseconds since the epoch, or RFC 3339 like 2026-01-02T03:04:05Z)
    --limit N            stop after N records
    --follow             wait for new records until Ctrl-C
    --group G            start from G's committed offsets and commit as records are printed
    --print-key --print-offset --print-timestamp --print-headers
                         extra columns (text format), tab-separated before the value
    --format text|json|raw
                         text: the value as UTF-8; json: one object per record;
                         raw: the value bytes and a newline
";

const GROUP_HELP: &str = "\
streamctl group list
    Groups with committed offsets.
streamctl group get GROUP
    Every committed offset of GROUP.
streamctl group commit GROUP --topic T --partition P --offset N [--metadata M]
    Commits an offset (the next offset to read) for GROUP.
";

/// What went wrong, and the exit code it earns.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: exit 2.
    Usage(String),
    /// The call failed: exit 1.
    Runtime(String),
    /// The reader of our output went away (`| head`): exit 0 quietly.
    BrokenPipe,
}

type CliResult<T = ()> = Result<T, CliError>;

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Runtime(format!("output: {e}"))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Text,
    Json,
    Raw,
}

/// A connection and the call options every call carries.
pub struct Client {
    server: String,
    token: Option<String>,
    pub admin: AdminServiceClient,
    pub producer: ProducerServiceClient,
    pub consumer: ConsumerServiceClient,
}

impl Client {
    fn connect(server: &str, token: Option<String>) -> Client {
        let env = Arc::new(Environment::new(1));
        let ch = ChannelBuilder::new(env)
            .max_receive_message_len(128 << 20)
            .max_send_message_len(128 << 20)
            .connect(server);
        Client {
            server: server.to_string(),
            token,
            admin: AdminServiceClient::new(ch.clone()),
            producer: ProducerServiceClient::new(ch.clone()),
            consumer: ConsumerServiceClient::new(ch),
        }
    }

    /// Call options: the token, and a deadline.
    pub fn opt(&self, timeout: Duration) -> CallOption {
        let mut o = CallOption::default().timeout(timeout);
        if let Some(t) = &self.token {
            let mut m = MetadataBuilder::new();
            if m.add_str("authorization", &format!("Bearer {t}")).is_ok() {
                o = o.headers(m.build());
            }
        }
        o
    }

    /// One line saying what failed and what to do.
    pub fn err(&self, what: &str, e: grpcio::Error) -> CliError {
        match e {
            grpcio::Error::RpcFailure(s) => {
                let hint = match s.code() {
                    RpcStatusCode::UNAVAILABLE
                        if s.message().contains("connect") || s.message().is_empty() =>
                    {
                        format!(
                            " (is streamhoused running at {}? set --server or STREAMHOUSE_ADDR)",
                            self.server
                        )
                    }
                    RpcStatusCode::UNAUTHENTICATED => {
                        " (pass --token or set STREAMHOUSE_TOKEN)".to_string()
                    }
                    RpcStatusCode::DEADLINE_EXCEEDED => {
                        format!(" (no answer from {})", self.server)
                    }
                    _ => String::new(),
                };
                CliError::Runtime(format!("{what}: {}{hint}", status_text(&s)))
            }
            other => CliError::Runtime(format!("{what}: {other}")),
        }
    }
}

fn status_text(s: &grpcio::RpcStatus) -> String {
    // Debug prints "6-ALREADY_EXISTS"; the name is what people search for.
    let debug = format!("{:?}", s.code());
    let code = debug
        .split_once('-')
        .map_or(debug.as_str(), |(_, name)| name)
        .to_string();
    if s.message().is_empty() {
        code
    } else {
        format!("{} ({code})", s.message())
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs streamctl with `args` (without the program name); returns the exit
/// code after printing any error.
pub fn run(args: Vec<OsString>) -> i32 {
    match dispatch(args) {
        Ok(()) | Err(CliError::BrokenPipe) => 0,
        Err(CliError::Usage(m)) => {
            eprintln!("streamctl: {m}");
            eprintln!("(see streamctl --help)");
            2
        }
        Err(CliError::Runtime(m)) => {
            eprintln!("streamctl: {m}");
            1
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> CliResult<T> {
    v.parse()
        .map_err(|_| usage(format!("{flag}: {v:?} is not a valid number")))
}

fn opt_str(a: &mut pico_args::Arguments, flag: &'static str) -> CliResult<Option<String>> {
    a.opt_value_from_str(flag)
        .map_err(|e| usage(format!("{flag}: {e}")))
}

/// An optional numeric flag.
fn opt_num<T: std::str::FromStr>(
    a: &mut pico_args::Arguments,
    flag: &'static str,
) -> CliResult<Option<T>> {
    opt_str(a, flag)?.map(|v| parse_num(flag, &v)).transpose()
}

fn finish(a: pico_args::Arguments) -> CliResult {
    let rest = a.finish();
    match rest.first() {
        Some(x) => Err(usage(format!(
            "unexpected argument {:?}",
            x.to_string_lossy()
        ))),
        None => Ok(()),
    }
}

fn dispatch(args: Vec<OsString>) -> CliResult {
    let mut a = pico_args::Arguments::from_vec(args);
    let server = opt_str(&mut a, "--server")?
        .or_else(|| env_var("STREAMHOUSE_ADDR"))
        .unwrap_or_else(|| "127.0.0.1:50051".to_string());
    let token = opt_str(&mut a, "--token")?.or_else(|| env_var("STREAMHOUSE_TOKEN"));
    let format = match opt_str(&mut a, "--format")?.as_deref() {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some("raw") => Format::Raw,
        Some(other) => return Err(usage(format!("--format: {other:?}; use text, json or raw"))),
    };
    let help = a.contains(["-h", "--help"]);
    let command = a.subcommand().map_err(|e| usage(e.to_string()))?;
    let Some(command) = command else {
        if help {
            print!("{HELP}");
            return Ok(());
        }
        return Err(usage("no command given"));
    };
    let section = match command.as_str() {
        "topic" => TOPIC_HELP,
        "produce" => PRODUCE_HELP,
        "consume" => CONSUME_HELP,
        "group" => GROUP_HELP,
        "perf-produce" | "perf-consume" => perf::HELP,
        other => return Err(usage(format!("unknown command {other:?}"))),
    };
    if help {
        print!("{section}");
        return Ok(());
    }
    let client = Client::connect(&server, token);
    match command.as_str() {
        "topic" => topic(&client, a, format),
        "produce" => produce(&client, a, format),
        "consume" => consume(&client, a, format),
        "group" => group(&client, a, format),
        "perf-produce" => perf::produce(&client, a, format == Format::Json),
        "perf-consume" => perf::consume(&client, a, format == Format::Json),
        _ => unreachable!("checked above"),
    }
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

// ---------------------------------------------------------------- topic

fn topic_json(t: &pb::TopicInfo) -> String {
    let parts: Vec<String> = t
        .get_partition_info()
        .iter()
        .map(|p| {
            format!(
                "{{\"partition\":{},\"low_watermark\":{},\"high_watermark\":{},\"segment_count\":{},\"stored_bytes\":{}}}",
                p.get_partition(),
                p.get_low_watermark(),
                p.get_high_watermark(),
                p.get_segment_count(),
                p.get_stored_bytes()
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"partitions\":{},\"retention_ms\":{},\"retention_bytes\":{},\"created_at_ms\":{},\"partition_info\":[{}]}}",
        json_str(t.get_name()),
        t.get_partitions(),
        t.get_retention_ms(),
        t.get_retention_bytes(),
        t.get_created_at_ms(),
        parts.join(",")
    )
}

fn records_of(t: &pb::TopicInfo) -> i64 {
    t.get_partition_info()
        .iter()
        .map(|p| p.get_high_watermark() - p.get_low_watermark())
        .sum()
}

fn topic(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let sub = a.subcommand().map_err(|e| usage(e.to_string()))?;
    match sub.as_deref() {
        Some("create") => {
            let partitions: u32 = a
                .value_from_str("--partitions")
                .map_err(|e| usage(format!("--partitions N is required: {e}")))?;
            let retention_ms = match opt_str(&mut a, "--retention-ms")? {
                Some(v) => parse_num("--retention-ms", &v)?,
                None => 0,
            };
            let retention_bytes = match opt_str(&mut a, "--retention-bytes")? {
                Some(v) => crate::server::flags::parse_size(&v)
                    .map_err(|e| usage(format!("--retention-bytes: {e}")))?
                    as i64,
                None => 0,
            };
            let name: String = a
                .free_from_str()
                .map_err(|_| usage("topic create needs a NAME"))?;
            finish(a)?;
            let mut req = pb::CreateTopicRequest::new();
            req.set_name(name.clone());
            req.set_partitions(partitions);
            req.set_retention_ms(retention_ms);
            req.set_retention_bytes(retention_bytes);
            let t = c
                .admin
                .create_topic_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("create topic {name:?}"), e))?;
            match format {
                Format::Json => writeln!(out(), "{}", topic_json(&t))?,
                _ => writeln!(
                    out(),
                    "created topic {} with {} partitions",
                    t.get_name(),
                    t.get_partitions()
                )?,
            }
        }
        Some("list") => {
            finish(a)?;
            let r = c
                .admin
                .list_topics_opt(&pb::ListTopicsRequest::new(), c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err("list topics", e))?;
            match format {
                Format::Json => {
                    let items: Vec<String> = r.get_topics().iter().map(topic_json).collect();
                    writeln!(out(), "[{}]", items.join(","))?;
                }
                _ => {
                    let rows: Vec<Vec<String>> = r
                        .get_topics()
                        .iter()
                        .map(|t| {
                            vec![
                                t.get_name().to_string(),
                                t.get_partitions().to_string(),
                                records_of(t).to_string(),
                                t.get_partition_info()
                                    .iter()
                                    .map(|p| p.get_stored_bytes())
                                    .sum::<i64>()
                                    .to_string(),
                            ]
                        })
                        .collect();
                    write!(
                        out(),
                        "{}",
                        table(&["NAME", "PARTITIONS", "RECORDS", "STORED_BYTES"], &rows)
                    )?;
                }
            }
        }
        Some("describe") => {
            let name: String = a
                .free_from_str()
                .map_err(|_| usage("topic describe needs a NAME"))?;
            finish(a)?;
            let mut req = pb::DescribeTopicRequest::new();
            req.set_name(name.clone());
            let t = c
                .admin
                .describe_topic_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("describe topic {name:?}"), e))?;
            match format {
                Format::Json => writeln!(out(), "{}", topic_json(&t))?,
                _ => {
                    let mut o = out();
                    writeln!(
                        o,
                        "topic {}: {} partitions, retention {} ms / {} bytes (0 = unlimited), {} records",
                        t.get_name(),
                        t.get_partitions(),
                        t.get_retention_ms(),
                        t.get_retention_bytes(),
                        records_of(&t)
                    )?;
                    let rows: Vec<Vec<String>> = t
                        .get_partition_info()
                        .iter()
                        .map(|p| {
                            vec![
                                p.get_partition().to_string(),
                                p.get_low_watermark().to_string(),
                                p.get_high_watermark().to_string(),
                                p.get_segment_count().to_string(),
                                p.get_stored_bytes().to_string(),
                            ]
                        })
                        .collect();
                    write!(
                        o,
                        "{}",
                        table(
                            &["PARTITION", "LOW", "HIGH", "SEGMENTS", "STORED_BYTES"],
                            &rows
                        )
                    )?;
                }
            }
        }
        Some("delete") => {
            let name: String = a
                .free_from_str()
                .map_err(|_| usage("topic delete needs a NAME"))?;
            finish(a)?;
            let mut req = pb::DeleteTopicRequest::new();
            req.set_name(name.clone());
            c.admin
                .delete_topic_opt(&req, c.opt(Duration::from_secs(300)))
                .map_err(|e| c.err(&format!("delete topic {name:?}"), e))?;
            match format {
                Format::Json => writeln!(out(), "{{\"deleted\":{}}}", json_str(&name))?,
                _ => writeln!(out(), "deleted topic {name}")?,
            }
        }
        Some(other) => {
            return Err(usage(format!(
                "unknown topic command {other:?}; use create, list, describe or delete"
            )))
        }
        None => {
            return Err(usage(
                "topic needs a command: create, list, describe or delete",
            ))
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- produce

fn parse_acks(v: Option<String>) -> CliResult<pb::Acks> {
    match v.as_deref() {
        None | Some("wal") => Ok(pb::Acks::ACKS_WAL),
        Some("uploaded") => Ok(pb::Acks::ACKS_UPLOADED),
        Some("none") => Ok(pb::Acks::ACKS_NONE),
        Some(other) => Err(usage(format!(
            "--acks: {other:?}; use wal, uploaded or none"
        ))),
    }
}

/// Per-partition range of acknowledged offsets.
#[derive(Default)]
struct Landed {
    first: i64,
    last: i64,
    count: i64,
}

fn produce(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let partition: Option<u32> = opt_num(&mut a, "--partition")?;
    let key = opt_str(&mut a, "--key")?;
    let mut headers = Vec::new();
    while let Some(h) = opt_str(&mut a, "--header")? {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| usage(format!("--header {h:?}: use KEY=VALUE")))?;
        let mut ph = pb::Header::new();
        ph.set_key(k.to_string());
        ph.set_value(v.as_bytes().to_vec());
        headers.push(ph);
    }
    let acks = parse_acks(opt_str(&mut a, "--acks")?)?;
    let value = opt_str(&mut a, "--value")?;
    let file = opt_str(&mut a, "--file")?;
    let separator = opt_str(&mut a, "--key-separator")?;
    let batch: usize = match opt_str(&mut a, "--batch")? {
        Some(v) => parse_num("--batch", &v)?,
        None => 1000,
    };
    if batch == 0 {
        return Err(usage("--batch must be at least 1"));
    }
    let topic: String = a
        .free_from_str()
        .map_err(|_| usage("produce needs a TOPIC"))?;
    finish(a)?;
    if value.is_some() && file.is_some() {
        return Err(usage("use --value or --file, not both"));
    }
    if separator.as_deref() == Some("") {
        return Err(usage("--key-separator must not be empty"));
    }

    let make = |line: &[u8]| -> pb::Record {
        let mut r = pb::Record::new();
        let (k, v) = match separator.as_deref().map(str::as_bytes) {
            Some(sep) => match line.windows(sep.len()).position(|w| w == sep) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => (key.as_deref().map(str::as_bytes), line),
            },
            None => (key.as_deref().map(str::as_bytes), line),
        };
        if let Some(k) = k {
            r.set_key(k.to_vec());
        }
        r.set_value(v.to_vec());
        r.set_headers(headers.clone().into());
        r
    };

    let mut landed: std::collections::BTreeMap<u32, Landed> = Default::default();
    let mut total = 0u64;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let send = |records: Vec<pb::Record>,
                landed: &mut std::collections::BTreeMap<u32, Landed>|
     -> CliResult<u64> {
        let n = records.len() as u64;
        let mut req = pb::ProduceRequest::new();
        req.set_topic(topic.clone());
        if let Some(p) = partition {
            req.set_partition(p);
        }
        req.set_acks(acks);
        req.set_records(records.into());
        let resp = c
            .producer
            .produce_opt(&req, c.opt(Duration::from_secs(120)))
            .map_err(|e| c.err(&format!("produce to {topic:?}"), e))?;
        for ack in resp.get_acks() {
            let l = landed.entry(ack.get_partition()).or_insert(Landed {
                first: ack.get_base_offset(),
                last: 0,
                count: 0,
            });
            l.first = l.first.min(ack.get_base_offset());
            l.last = l.last.max(ack.get_base_offset() + ack.get_count() - 1);
            l.count += ack.get_count();
        }
        Ok(n)
    };

    if let Some(v) = value {
        total += send(vec![make(v.as_bytes())], &mut landed)?;
    } else {
        let reader: Box<dyn BufRead> = match &file {
            Some(f) => Box::new(std::io::BufReader::new(
                std::fs::File::open(f)
                    .map_err(|e| CliError::Runtime(format!("cannot read {f}: {e}")))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        };
        let mut pending = Vec::with_capacity(batch);
        let mut pending_bytes = 0usize;
        for line in reader.split(b'\n') {
            let mut line = line.map_err(|e| CliError::Runtime(format!("reading input: {e}")))?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            pending_bytes += line.len();
            pending.push(make(&line));
            if pending.len() >= batch || pending_bytes >= 4 << 20 {
                total += send(std::mem::take(&mut pending), &mut landed)?;
                pending_bytes = 0;
                if last_progress.elapsed() >= Duration::from_secs(2) {
                    eprintln!("... {total} records sent");
                    last_progress = Instant::now();
                }
            }
        }
        if !pending.is_empty() {
            total += send(pending, &mut landed)?;
        }
    }

    let mut o = out();
    match format {
        Format::Json => {
            let parts: Vec<String> = landed
                .iter()
                .map(|(p, l)| {
                    format!(
                        "{{\"partition\":{p},\"first_offset\":{},\"last_offset\":{},\"count\":{}}}",
                        l.first, l.last, l.count
                    )
                })
                .collect();
            writeln!(
                o,
                "{{\"topic\":{},\"records\":{total},\"partitions\":[{}]}}",
                json_str(&topic),
                parts.join(",")
            )?;
        }
        _ => {
            if total == 1 {
                if let Some((p, l)) = landed.iter().next() {
                    writeln!(o, "partition {p} offset {}", l.first)?;
                }
            } else {
                for (p, l) in &landed {
                    writeln!(
                        o,
                        "partition {p}: offsets {}..={} ({} records)",
                        l.first, l.last, l.count
                    )?;
                }
                let secs = started.elapsed().as_secs_f64();
                eprintln!("produced {total} records to {topic} in {secs:.2} s");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- consume

/// Milliseconds since the epoch, from a number or an RFC 3339 UTC time.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        if ms < 0 {
            return Err(format!("{s}: a time cannot be negative"));
        }
        return Ok(ms);
    }
    // YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)
    let bad = || format!("{s:?} is not milliseconds or an RFC 3339 time like 2026-01-02T03:04:05Z");
    let b = s.as_bytes();
    // Only ASCII can be a valid time, and it keeps the slicing below on
    // character boundaries.
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r).and_then(|x| x.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return Err(bad());
        }
        let padded = format!("{:0<3}", &frac[..frac.len().min(3)]);
        millis = padded.parse().map_err(|_| bad())?;
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let hh: i64 = tz[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = tz[4..6].parse().map_err(|_| bad())?;
            let m = hh * 60 + mm;
            if tz.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    if secs < 0 {
        return Err(format!("{s}: before 1970"));
    }
    Ok(secs * 1000 + millis)
}

struct PrintOpts {
    format: Format,
    key: bool,
    offset: bool,
    timestamp: bool,
    headers: bool,
}

fn print_record(
    o: &mut impl Write,
    p: u32,
    r: &pb::Record,
    opts: &PrintOpts,
) -> std::io::Result<()> {
    match opts.format {
        Format::Raw => {
            o.write_all(r.get_value())?;
            o.write_all(b"\n")
        }
        Format::Json => {
            let headers: Vec<String> = r
                .get_headers()
                .iter()
                .map(|h| format!("[{},{}]", json_str(h.get_key()), json_bytes(h.get_value())))
                .collect();
            let key = if r.get_key().is_empty() {
                "null".to_string()
            } else {
                json_bytes(r.get_key())
            };
            writeln!(
                o,
                "{{\"partition\":{p},\"offset\":{},\"timestamp_ms\":{},\"key\":{key},\"headers\":[{}],\"value\":{}}}",
                r.get_offset(),
                r.get_timestamp_ms(),
                headers.join(","),
                json_bytes(r.get_value())
            )
        }
        Format::Text => {
            let mut cols: Vec<String> = Vec::new();
            if opts.offset {
                cols.push(format!("{p}:{}", r.get_offset()));
            }
            if opts.timestamp {
                cols.push(r.get_timestamp_ms().to_string());
            }
            if opts.key {
                cols.push(if r.get_key().is_empty() {
                    "null".into()
                } else {
                    String::from_utf8_lossy(r.get_key()).into_owned()
                });
            }
            if opts.headers {
                let hs: Vec<String> = r
                    .get_headers()
                    .iter()
                    .map(|h| format!("{}={}", h.get_key(), String::from_utf8_lossy(h.get_value())))
                    .collect();
                cols.push(hs.join(","));
            }
            cols.push(String::from_utf8_lossy(r.get_value()).into_owned());
            writeln!(o, "{}", cols.join("\t"))
        }
    }
}

fn list_offset(c: &Client, topic: &str, p: u32, ts: i64) -> CliResult<i64> {
    let mut req = pb::ListOffsetsRequest::new();
    req.set_topic(topic.to_string());
    req.set_partition(p);
    req.set_timestamp_ms(ts);
    Ok(c.consumer
        .list_offsets_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("list offsets of {topic}/{p}"), e))?
        .get_offset())
}

fn commit(c: &Client, group: &str, topic: &str, p: u32, offset: i64) -> CliResult {
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group(group.to_string());
    req.set_topic(topic.to_string());
    req.set_partition(p);
    req.set_offset(offset);
    c.consumer
        .commit_offset_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("commit offset for group {group:?}"), e))?;
    Ok(())
}

fn consume(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let partition: Option<u32> = opt_num(&mut a, "--partition")?;
    let offset: Option<i64> = opt_num(&mut a, "--offset")?;
    let from_beginning = a.contains("--from-beginning");
    let from_end = a.contains("--from-end");
    let from_time = opt_str(&mut a, "--from-time")?
        .map(|v| parse_time(&v).map_err(|e| usage(format!("--from-time: {e}"))))
        .transpose()?;
    let limit: Option<u64> = opt_num(&mut a, "--limit")?;
    let follow = a.contains("--follow");
    let group = opt_str(&mut a, "--group")?;
    let opts = PrintOpts {
        format,
        key: a.contains("--print-key"),
        offset: a.contains("--print-offset"),
        timestamp: a.contains("--print-timestamp"),
        headers: a.contains("--print-headers"),
    };
    let topic: String = a
        .free_from_str()
        .map_err(|_| usage("consume needs a TOPIC"))?;
    finish(a)?;
    let starts = [
        offset.is_some(),
        from_beginning,
        from_end,
        from_time.is_some(),
    ];
    if starts.iter().filter(|x| **x).count() > 1 {
        return Err(usage(
            "use only one of --offset, --from-beginning, --from-end, --from-time",
        ));
    }

    let mut d = pb::DescribeTopicRequest::new();
    d.set_name(topic.clone());
    let info = c
        .admin
        .describe_topic_opt(&d, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("topic {topic:?}"), e))?;
    let partitions: Vec<u32> = match partition {
        Some(p) if p >= info.get_partitions() => {
            return Err(CliError::Runtime(format!(
                "topic {topic:?} has partitions 0..{}, not {p}",
                info.get_partitions()
            )))
        }
        Some(p) => vec![p],
        None => (0..info.get_partitions()).collect(),
    };
    // Where each partition starts.
    let mut next: Vec<(u32, i64)> = Vec::new();
    for &p in &partitions {
        let committed = match &group {
            Some(g) if !starts.iter().any(|x| *x) => {
                let mut req = pb::GetCommittedOffsetRequest::new();
                req.set_group(g.clone());
                req.set_topic(topic.clone());
                req.set_partition(p);
                let r = c
                    .consumer
                    .get_committed_offset_opt(&req, c.opt(CALL_TIMEOUT))
                    .map_err(|e| c.err(&format!("committed offset of group {g:?}"), e))?;
                r.get_found().then(|| r.get_offset())
            }
            _ => None,
        };
        let start = match (committed, offset, from_end, from_time) {
            (Some(o), ..) => o,
            (None, Some(o), ..) => o,
            (None, None, true, _) => list_offset(c, &topic, p, -1)?,
            (None, None, false, Some(t)) => list_offset(c, &topic, p, t)?,
            _ => list_offset(c, &topic, p, -2)?,
        };
        next.push((p, start));
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&interrupted));
    }
    let mut printed = 0u64;
    let mut done = vec![false; next.len()];
    let mut o = std::io::BufWriter::new(out());
    let wait_ms = if follow {
        (500 / next.len().max(1)).max(50) as u32
    } else {
        0
    };
    'outer: while !interrupted.load(Ordering::SeqCst) {
        if !follow && done.iter().all(|d| *d) {
            break;
        }
        for (i, (p, off)) in next.iter_mut().enumerate() {
            if done[i] && !follow {
                continue;
            }
            let mut req = pb::FetchRequest::new();
            req.set_topic(topic.clone());
            req.set_partition(*p);
            req.set_offset(*off);
            req.set_max_wait_ms(wait_ms);
            if let Some(l) = limit {
                req.set_max_records((l - printed).min(5000) as u32);
            }
            let r = c
                .consumer
                .fetch_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("fetch {topic}/{p} at offset {off}"), e))?;
            for rec in r.get_records() {
                print_record(&mut o, *p, rec, &opts)?;
                printed += 1;
                if limit.is_some_and(|l| printed >= l) {
                    *off = rec.get_offset() + 1;
                    if let Some(g) = &group {
                        o.flush()?;
                        commit(c, g, &topic, *p, *off)?;
                    }
                    break 'outer;
                }
            }
            if !r.get_records().is_empty() {
                *off = r.get_next_offset();
                o.flush()?;
                if let Some(g) = &group {
                    commit(c, g, &topic, *p, *off)?;
                }
            }
            if *off >= r.get_high_watermark() {
                done[i] = true;
            }
        }
    }
    o.flush()?;
    drop(o);
    if format == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("processed {printed} records");
    }
    Ok(())
}

// ---------------------------------------------------------------- group

fn group(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let sub = a.subcommand().map_err(|e| usage(e.to_string()))?;
    match sub.as_deref() {
        Some("list") => {
            finish(a)?;
            let r = c
                .consumer
                .list_groups_opt(&pb::ListGroupsRequest::new(), c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err("list groups", e))?;
            let mut o = out();
            match format {
                Format::Json => {
                    let g: Vec<String> = r.get_groups().iter().map(|g| json_str(g)).collect();
                    writeln!(o, "[{}]", g.join(","))?;
                }
                _ => {
                    for g in r.get_groups() {
                        writeln!(o, "{g}")?;
                    }
                }
            }
        }
        Some("get") => {
            let g: String = a
                .free_from_str()
                .map_err(|_| usage("group get needs a GROUP"))?;
            finish(a)?;
            let mut req = pb::DescribeGroupRequest::new();
            req.set_group(g.clone());
            let r = c
                .consumer
                .describe_group_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("group {g:?}"), e))?;
            let mut o = out();
            match format {
                Format::Json => {
                    let items: Vec<String> = r
                        .get_offsets()
                        .iter()
                        .map(|x| {
                            format!(
                                "{{\"topic\":{},\"partition\":{},\"offset\":{},\"metadata\":{},\"updated_at_ms\":{}}}",
                                json_str(x.get_topic()),
                                x.get_partition(),
                                x.get_offset(),
                                json_str(x.get_metadata()),
                                x.get_updated_at_ms()
                            )
                        })
                        .collect();
                    writeln!(
                        o,
                        "{{\"group\":{},\"offsets\":[{}]}}",
                        json_str(&g),
                        items.join(",")
                    )?;
                }
                _ => {
                    if r.get_offsets().is_empty() {
                        writeln!(o, "group {g} has no committed offsets")?;
                    } else {
                        let rows: Vec<Vec<String>> = r
                            .get_offsets()
                            .iter()
                            .map(|x| {
                                vec![
                                    x.get_topic().into(),
                                    x.get_partition().to_string(),
                                    x.get_offset().to_string(),
                                    x.get_metadata().into(),
                                ]
                            })
                            .collect();
                        write!(
                            o,
                            "{}",
                            table(&["TOPIC", "PARTITION", "OFFSET", "METADATA"], &rows)
                        )?;
                    }
                }
            }
        }
        Some("commit") => {
            let topic: String = a
                .value_from_str("--topic")
                .map_err(|_| usage("group commit needs --topic T"))?;
            let p: u32 = a
                .value_from_str("--partition")
                .map_err(|_| usage("group commit needs --partition P"))?;
            let offset: i64 = a
                .value_from_str("--offset")
                .map_err(|_| usage("group commit needs --offset N"))?;
            let metadata = opt_str(&mut a, "--metadata")?.unwrap_or_default();
            let g: String = a
                .free_from_str()
                .map_err(|_| usage("group commit needs a GROUP"))?;
            finish(a)?;
            let mut req = pb::CommitOffsetRequest::new();
            req.set_group(g.clone());
            req.set_topic(topic.clone());
            req.set_partition(p);
            req.set_offset(offset);
            req.set_metadata(metadata);
            c.consumer
                .commit_offset_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("commit for group {g:?}"), e))?;
            match format {
                Format::Json => writeln!(
                    out(),
                    "{{\"group\":{},\"topic\":{},\"partition\":{p},\"offset\":{offset}}}",
                    json_str(&g),
                    json_str(&topic)
                )?,
                _ => writeln!(out(), "group {g}: {topic}/{p} committed at {offset}")?,
            }
        }
        Some(other) => {
            return Err(usage(format!(
                "unknown group command {other:?}; use list, get or commit"
            )))
        }
        None => return Err(usage("group needs a command: list, get or commit")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_milliseconds_or_rfc3339() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1700000000123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time("2000-02-29T12:00:00Z").unwrap(), 951_825_600_000);
        for bad in [
            "yesterday",
            "-5",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+0200",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
