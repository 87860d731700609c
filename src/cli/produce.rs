//! `streamctl produce`: one record from `--value`, or one per line of a
//! file or standard input, in batches; prints where they landed.
//!
//! Idempotent by default: records are split by partition here (the
//! server's key hash; keyless records stick to one partition per batch),
//! each batch carries the session's producer id and sequence number, and a
//! batch whose call failed with UNAVAILABLE or DEADLINE_EXCEEDED is sent
//! again until answered: it is written once either way.

use super::args::{finish, free, opt_num, opt_str, usage, CliError, CliResult, Format};
use super::client::Client;
use super::idempotent::{send_until_answered, state_lost, Session};
use super::output::{json_str, out};
use crate::proto as pb;
use crate::server::partitioner::partition_for_key;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

pub(super) const HELP: &str = "\
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
    --retries N          resend a batch after UNAVAILABLE or DEADLINE_EXCEEDED
                         up to N times, with backoff (default 20; safe: the
                         server writes a batch once however often it is sent)
    --no-idempotence     plain produce: the server routes keyed records, and a
                         failed call is not retried (a retry could write twice)
";

/// A request is sent once it holds this many bytes, whatever `--batch`.
const MAX_BATCH_BYTES: usize = 4 << 20;

pub(super) fn parse_acks(v: Option<String>) -> CliResult<pb::Acks> {
    match v.as_deref() {
        None | Some("wal") => Ok(pb::Acks::ACKS_WAL),
        Some("uploaded") => Ok(pb::Acks::ACKS_UPLOADED),
        Some("none") => Ok(pb::Acks::ACKS_NONE),
        Some(other) => Err(usage(format!(
            "--acks: {other:?}; use wal, uploaded or none"
        ))),
    }
}

struct ProduceOpts {
    topic: String,
    partition: Option<u32>,
    key: Option<String>,
    headers: Vec<pb::Header>,
    acks: pb::Acks,
    value: Option<String>,
    file: Option<String>,
    separator: Option<String>,
    batch: usize,
    idempotent: bool,
    retries: u32,
}

fn parse_opts(mut a: pico_args::Arguments) -> CliResult<ProduceOpts> {
    let partition = opt_num(&mut a, "--partition")?;
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
    let batch: usize = opt_num(&mut a, "--batch")?.unwrap_or(1000);
    let retries: u32 = opt_num(&mut a, "--retries")?.unwrap_or(20);
    let idempotent = !a.contains("--no-idempotence");
    let topic = free(&mut a, "produce needs a TOPIC")?;
    finish(a)?;
    if batch == 0 {
        return Err(usage("--batch must be at least 1"));
    }
    if value.is_some() && file.is_some() {
        return Err(usage("use --value or --file, not both"));
    }
    if separator.as_deref() == Some("") {
        return Err(usage("--key-separator must not be empty"));
    }
    Ok(ProduceOpts {
        topic,
        partition,
        key,
        headers,
        acks,
        value,
        file,
        separator,
        batch,
        idempotent,
        retries,
    })
}

impl ProduceOpts {
    /// One input line as a record: key and value split at the separator
    /// (or `--key` and the whole line), with the headers.
    fn record(&self, line: &[u8]) -> pb::Record {
        let mut r = pb::Record::new();
        let default_key = self.key.as_deref().map(str::as_bytes);
        let (k, v) = match self.separator.as_deref().map(str::as_bytes) {
            Some(sep) => match line.windows(sep.len()).position(|w| w == sep) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => (default_key, line),
            },
            None => (default_key, line),
        };
        if let Some(k) = k {
            r.set_key(k.to_vec());
        }
        r.set_value(v.to_vec());
        r.set_headers(self.headers.clone().into());
        r
    }
}

/// Per-partition range of acknowledged offsets.
#[derive(Default)]
struct Landed {
    first: i64,
    last: i64,
    count: i64,
}

/// Records waiting to be sent to one partition (idempotent mode).
#[derive(Default)]
struct Pending {
    records: Vec<pb::Record>,
    bytes: usize,
}

/// Sends batches and keeps track of where they landed.
struct Sender<'a> {
    c: &'a Client,
    opts: &'a ProduceOpts,
    landed: BTreeMap<u32, Landed>,
    total: u64,
    /// Idempotent mode: the producer session, the topic's partition count,
    /// records per partition, and where keyless records go now.
    session: Option<Session>,
    partitions: u32,
    pending: BTreeMap<u32, Pending>,
    sticky: u32,
}

impl Sender<'_> {
    fn note(&mut self, resp: &pb::ProduceResponse) {
        for ack in resp.get_acks() {
            let l = self.landed.entry(ack.get_partition()).or_insert(Landed {
                first: ack.get_base_offset(),
                last: 0,
                count: 0,
            });
            l.first = l.first.min(ack.get_base_offset());
            l.last = l.last.max(ack.get_base_offset() + ack.get_count() - 1);
            l.count += ack.get_count();
            self.total += ack.get_count() as u64;
        }
    }

    /// Plain produce: the server splits the records by partition.
    fn send(&mut self, records: Vec<pb::Record>) -> CliResult {
        let topic = &self.opts.topic;
        let mut req = pb::ProduceRequest::new();
        req.set_topic(topic.clone());
        if let Some(p) = self.opts.partition {
            req.set_partition(p);
        }
        req.set_acks(self.opts.acks);
        req.set_records(records.into());
        let resp = self
            .c
            .producer
            .produce_opt(&req, self.c.opt(Duration::from_secs(120)))
            .map_err(|e| self.c.err(&format!("produce to {topic:?}"), e))?;
        self.note(&resp);
        if let Some(e) = resp.get_errors().first() {
            // Some partitions were written, these were not: say both, so a
            // retry can resend only what failed.
            let written: Vec<String> = resp
                .get_acks()
                .iter()
                .map(|a| a.get_partition().to_string())
                .collect();
            return Err(CliError::Runtime(format!(
                "produce to {topic:?}: partition {} was not written: {} (code {}); partitions [{}] were",
                e.get_partition(),
                e.get_message(),
                e.get_code(),
                written.join(", ")
            )));
        }
        Ok(())
    }

    /// Idempotent mode: one batch to one partition, sent until answered.
    fn send_to(&mut self, partition: u32) -> CliResult {
        let Some(p) = self.pending.remove(&partition) else {
            return Ok(());
        };
        let Some(session) = self.session.as_mut() else {
            return self.send(p.records);
        };
        let topic = &self.opts.topic;
        let mut req = pb::ProduceRequest::new();
        req.set_topic(topic.clone());
        req.set_acks(self.opts.acks);
        req.set_records(p.records.into());
        session.stamp(&mut req, partition);
        let resp = match send_until_answered(self.c, &req, self.opts.retries) {
            Err(e) if state_lost(&e, req.get_first_sequence()) => {
                *session = Session::init(self.c, self.opts.retries)?;
                eprintln!(
                    "partition {partition} had lost this producer's state (expired, or rebuilt without it); \
                     continuing as producer {}",
                    session.id
                );
                session.stamp(&mut req, partition);
                send_until_answered(self.c, &req, self.opts.retries)
            }
            other => other,
        }
        .map_err(|e| self.c.err(&format!("produce to {topic:?}/{partition}"), e))?;
        self.note(&resp);
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
        Ok(())
    }

    /// Queues one record; sends a batch when one is full.
    fn push(&mut self, r: pb::Record) -> CliResult {
        let len = r.get_value().len() + r.get_key().len();
        let partition = match (self.opts.partition, !r.get_key().is_empty()) {
            (Some(p), _) => p,
            (None, true) => partition_for_key(r.get_key(), self.partitions),
            (None, false) => self.sticky,
        };
        let p = self.pending.entry(partition).or_default();
        p.records.push(r);
        p.bytes += len;
        if p.records.len() >= self.opts.batch || p.bytes >= MAX_BATCH_BYTES {
            self.send_to(partition)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> CliResult {
        let partitions: Vec<u32> = self.pending.keys().copied().collect();
        partitions.into_iter().try_for_each(|p| self.send_to(p))
    }

    /// One record per line of `reader`, in batches, with a progress line
    /// every 2 s.
    fn send_lines(&mut self, reader: Box<dyn BufRead>) -> CliResult {
        let mut pending = Vec::with_capacity(self.opts.batch);
        let mut pending_bytes = 0usize;
        let mut last_progress = Instant::now();
        for line in reader.split(b'\n') {
            let mut line = line.map_err(|e| CliError::Runtime(format!("reading input: {e}")))?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let record = self.opts.record(&line);
            if self.session.is_some() {
                self.push(record)?;
            } else {
                pending_bytes += line.len();
                pending.push(record);
                if pending.len() >= self.opts.batch || pending_bytes >= MAX_BATCH_BYTES {
                    self.send(std::mem::take(&mut pending))?;
                    pending_bytes = 0;
                }
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                eprintln!("... {} records sent", self.total);
                last_progress = Instant::now();
            }
        }
        if !pending.is_empty() {
            self.send(pending)?;
        }
        self.flush()
    }
}

pub(super) fn run(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    let opts = parse_opts(a)?;
    // In a cluster, one partition is written at its leader.
    let leader = opts.partition.and_then(|p| c.leader_of(&opts.topic, p));
    let c = leader.as_ref().unwrap_or(c);
    let started = Instant::now();
    let (session, partitions) = if opts.idempotent {
        let partitions = match opts.partition {
            Some(_) => 1,
            None => c.describe(&opts.topic)?.get_partitions().max(1),
        };
        // A server that is not there at the start is more likely a wrong
        // address than a restart: a few quick retries only.
        (Some(Session::init(c, opts.retries.min(3))?), partitions)
    } else {
        (None, 1)
    };
    let mut sender = Sender {
        c,
        opts: &opts,
        landed: BTreeMap::new(),
        total: 0,
        session,
        partitions,
        pending: BTreeMap::new(),
        sticky: 0,
    };
    if let Some(v) = &opts.value {
        let record = opts.record(v.as_bytes());
        match sender.session {
            Some(_) => {
                sender.push(record)?;
                sender.flush()?;
            }
            None => sender.send(vec![record])?,
        }
    } else {
        let reader: Box<dyn BufRead> = match &opts.file {
            Some(f) => Box::new(std::io::BufReader::new(
                std::fs::File::open(f)
                    .map_err(|e| CliError::Runtime(format!("cannot read {f}: {e}")))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        };
        sender.send_lines(reader)?;
    }
    report(&opts.topic, sender.total, &sender.landed, format, started)
}

fn report(
    topic: &str,
    total: u64,
    landed: &BTreeMap<u32, Landed>,
    format: Format,
    started: Instant,
) -> CliResult {
    let mut o = out();
    if format == Format::Json {
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
            json_str(topic),
            parts.join(",")
        )?;
        return Ok(());
    }
    if total == 1 {
        if let Some((p, l)) = landed.iter().next() {
            writeln!(o, "partition {p} offset {}", l.first)?;
        }
        return Ok(());
    }
    for (p, l) in landed {
        writeln!(
            o,
            "partition {p}: offsets {}..={} ({})",
            l.first,
            l.last,
            super::topic::count(l.count, "record")
        )?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} to {topic} in {secs:.2} s",
        super::topic::count(total as i64, "record")
    );
    Ok(())
}
