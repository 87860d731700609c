//! `perf-produce` and `perf-consume`, in the spirit of Kafka's
//! kafka-producer-perf-test and kafka-consumer-perf-test.

use super::args::{finish, opt_num, opt_str, required, usage, CliError, CliResult};
use super::client::Client;
use super::consume::list_offset;
use super::idempotent::Session;
use super::produce::parse_acks;
use crate::proto::{self as pb};
use crate::util::xorshift::XorShift64;
use std::io::Write;
use std::time::{Duration, Instant};

pub const HELP: &str = "\
streamctl perf-produce --topic T --records N --record-size B [FLAGS]
    Sends N records of B bytes as fast as allowed and reports throughput and
    latency (per request: send to acknowledgement).
    --batch N            records per request (default 1000)
    --acks A             wal (default), uploaded or none
    --throughput R       at most R records/s (default: unlimited)
    --payload-file F     values are the lines of F, in turn (record size is then ignored)
    --partition P[,P...] partition, or partitions taken in turn per request (default 0)
    --inflight N         requests in flight at once (default 8)
    --samples F          write each request's sent_ms, latency_ms, records to F
                         (sent_ms: since the start), for plots
    --stamp              put the send time in a header `perf-ts` (for
                         `perf-consume --subscribe` to measure end-to-end latency)
    --idempotent         send as an idempotent producer (InitProducer, sequence
                         numbers); requests in flight that reach the partition
                         out of order are sent again, and counted
    Without a payload file the values are pseudo-random bytes (incompressible).

streamctl perf-consume --topic T --records N [--partition P] [--fetch-records N]
    Reads N records from the low watermark and reports throughput and fetch
    latency.
streamctl perf-consume --topic T --records N --subscribe [--partition P] [--samples F]
    Subscribes at the high watermark and reports, for records stamped by
    `perf-produce --stamp`, the latency from send to arrival (with --samples,
    each one's arrival_ms and latency_ms in F).
";

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn payloads(file: Option<&str>, size: usize) -> CliResult<Vec<Vec<u8>>> {
    match file {
        Some(f) => {
            let text =
                std::fs::read(f).map_err(|e| CliError::Runtime(format!("cannot read {f}: {e}")))?;
            let lines: Vec<Vec<u8>> = text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                return Err(CliError::Runtime(format!("{f} has no non-empty lines")));
            }
            Ok(lines)
        }
        None => {
            let mut rng = XorShift64::new(0x2545_f491_4f6c_dd1d);
            Ok((0..1024).map(|_| rng.bytes(size)).collect())
        }
    }
}

struct PerfProduce {
    topic: String,
    records: u64,
    batch: usize,
    acks: crate::proto::Acks,
    throughput: Option<f64>,
    partitions: Vec<u32>,
    inflight: usize,
    samples: Option<String>,
    stamp: bool,
    idempotent: bool,
    values: Vec<Vec<u8>>,
}

fn parse_produce(mut a: pico_args::Arguments) -> CliResult<PerfProduce> {
    let topic: String = required(&mut a, "--topic", "perf-produce")?;
    let records: u64 = required(&mut a, "--records", "perf-produce")?;
    let size: usize = opt_num(&mut a, "--record-size")?.unwrap_or(100);
    let batch: usize = opt_num(&mut a, "--batch")?.unwrap_or(1000);
    let acks = parse_acks(opt_str(&mut a, "--acks")?)?;
    let throughput: Option<f64> = opt_num(&mut a, "--throughput")?.filter(|r| *r > 0.0);
    let file = opt_str(&mut a, "--payload-file")?;
    let partitions = match opt_str(&mut a, "--partition")? {
        None => vec![0],
        Some(list) => list
            .split(',')
            .map(|p| super::args::parse_num("--partition", p.trim()))
            .collect::<CliResult<Vec<u32>>>()?,
    };
    let inflight: usize = opt_num(&mut a, "--inflight")?.unwrap_or(8);
    let samples = opt_str(&mut a, "--samples")?;
    let stamp = a.contains("--stamp");
    let idempotent = a.contains("--idempotent");
    finish(a)?;
    if batch == 0 || inflight == 0 || records == 0 {
        return Err(usage(
            "--records, --batch and --inflight must be at least 1",
        ));
    }
    Ok(PerfProduce {
        topic,
        records,
        batch,
        acks,
        throughput,
        partitions,
        inflight,
        samples,
        stamp,
        idempotent,
        values: payloads(file.as_deref(), size)?,
    })
}

impl PerfProduce {
    /// The next request of `n` records, values taken in turn from
    /// `values` starting at `*next_value`; the first record carries the
    /// send time when stamping. Returns the request and its value bytes.
    fn request(
        &self,
        partition: u32,
        n: usize,
        next_value: &mut usize,
    ) -> (pb::ProduceRequest, u64) {
        let mut req = pb::ProduceRequest::new();
        req.set_topic(self.topic.clone());
        req.set_partition(partition);
        req.set_acks(self.acks);
        let mut bytes = 0;
        for i in 0..n {
            let mut r = pb::Record::new();
            let v = &self.values[*next_value % self.values.len()];
            *next_value += 1;
            bytes += v.len() as u64;
            r.set_value(v.clone());
            if self.stamp && i == 0 {
                let mut h = pb::Header::new();
                h.set_key("perf-ts".into());
                h.set_value(now_micros().to_le_bytes().to_vec());
                r.mut_headers().push(h);
            }
            req.mut_records().push(r);
        }
        (req, bytes)
    }
}

/// One reply: when its request was sent (since the start), its latency,
/// its record count, its outcome, and how often it was sent again because
/// it reached the partition before an earlier one.
struct Reply {
    sent_at: Duration,
    latency: Duration,
    records: usize,
    result: Result<(), String>,
    resends: u32,
}

/// Request latencies (ms), resends and the first error, as replies come in;
/// each sample when asked for.
#[derive(Default)]
struct Replies {
    latencies: Vec<f64>,
    resends: u64,
    error: Option<String>,
    samples: Option<Vec<(f64, f64, usize)>>,
}

impl Replies {
    fn take(&mut self, r: Reply) {
        let ms = r.latency.as_secs_f64() * 1e3;
        self.latencies.push(ms);
        if let Some(s) = self.samples.as_mut() {
            s.push((r.sent_at.as_secs_f64() * 1e3, ms, r.records));
        }
        self.resends += u64::from(r.resends);
        if let Err(e) = r.result {
            self.error.get_or_insert(e);
        }
    }
}

/// Writes one line per sample, fields separated by spaces.
fn write_samples<const N: usize>(path: &str, rows: impl Iterator<Item = [String; N]>) -> CliResult {
    let mut out = String::new();
    for row in rows {
        out.push_str(&row.join(" "));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| CliError::Runtime(format!("cannot write {path}: {e}")))
}

/// Most times one idempotent request is sent again after a sequence gap.
const MAX_RESENDS: u32 = 1000;

/// Sends `req` and reports the reply on `tx`. An idempotent request that
/// overtook an earlier one of ours (FAILED_PRECONDITION: a sequence gap) is
/// sent again: the earlier one is on its way.
fn send_async(
    c: &Client,
    req: pb::ProduceRequest,
    start: Instant,
    tx: crossbeam_channel::Sender<Reply>,
) -> CliResult {
    let t = Instant::now();
    let records = req.get_records().len();
    let opt = c.opt(Duration::from_secs(120));
    let mut call = c
        .producer
        .produce_async_opt(&req, opt.clone())
        .map_err(|e| c.err("produce", e))?;
    let client = c.producer.clone();
    let idempotent = req.get_producer_id() != 0;
    c.producer.spawn(async move {
        let mut resends = 0;
        let result = loop {
            match call.await {
                Err(grpcio::Error::RpcFailure(s))
                    if idempotent
                        && s.code() == grpcio::RpcStatusCode::FAILED_PRECONDITION
                        && s.message().contains("sequence gap")
                        && resends < MAX_RESENDS =>
                {
                    resends += 1;
                    match client.produce_async_opt(&req, opt.clone()) {
                        Ok(next) => call = next,
                        Err(e) => break Err(e.to_string()),
                    }
                }
                other => break other.map(|_| ()).map_err(|e| e.to_string()),
            }
        };
        let _ = tx.send(Reply {
            sent_at: t.duration_since(start),
            latency: t.elapsed(),
            records,
            result,
            resends,
        });
    });
    Ok(())
}

pub fn produce(c: &Client, a: pico_args::Arguments, json: bool) -> CliResult {
    let run = parse_produce(a)?;
    let (tx, rx) = crossbeam_channel::unbounded::<Reply>();
    let mut session = match run.idempotent {
        true => Some(Session::init(c, 3)?),
        false => None,
    };
    let start = Instant::now();
    let (mut sent, mut bytes, mut outstanding, mut next_value) = (0u64, 0u64, 0usize, 0usize);
    let mut replies = Replies {
        samples: run.samples.as_ref().map(|_| Vec::new()),
        ..Replies::default()
    };
    let mut requests = 0usize;
    while sent < run.records && replies.error.is_none() {
        while outstanding >= run.inflight {
            if let Ok(r) = rx.recv() {
                outstanding -= 1;
                replies.take(r);
            }
        }
        if let Some(rate) = run.throughput {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let n = run.batch.min((run.records - sent) as usize);
        let partition = run.partitions[requests % run.partitions.len()];
        requests += 1;
        let (mut req, req_bytes) = run.request(partition, n, &mut next_value);
        if let Some(s) = session.as_mut() {
            s.stamp(&mut req, partition);
        }
        bytes += req_bytes;
        send_async(c, req, start, tx.clone())?;
        outstanding += 1;
        sent += n as u64;
    }
    while outstanding > 0 {
        if let Ok(r) = rx.recv() {
            outstanding -= 1;
            replies.take(r);
        }
    }
    if let Some(e) = replies.error {
        return Err(CliError::Runtime(format!("produce failed: {e}")));
    }
    let secs = start.elapsed().as_secs_f64();
    let resends = replies.resends;
    if let (Some(path), Some(samples)) = (&run.samples, replies.samples.take()) {
        write_samples(
            path,
            samples
                .iter()
                .map(|(at, ms, n)| [format!("{at:.3}"), format!("{ms:.3}"), n.to_string()]),
        )?;
    }
    report_produce(sent, bytes, secs, replies.latencies, run.batch, json)?;
    if run.idempotent && !json {
        println!("idempotent: {resends} requests sent again after overtaking an earlier one");
    }
    Ok(())
}

fn report_produce(
    sent: u64,
    bytes: u64,
    secs: f64,
    mut latencies: Vec<f64>,
    batch: usize,
    json: bool,
) -> CliResult {
    latencies.sort_by(|a, b| a.total_cmp(b));
    let avg = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let max = latencies.last().copied().unwrap_or(0.0);
    let mut o = std::io::stdout().lock();
    if json {
        writeln!(
            o,
            "{{\"records\":{sent},\"seconds\":{secs:.3},\"records_per_sec\":{:.1},\"mb_per_sec\":{:.2},\"latency_ms\":{{\"avg\":{avg:.3},\"p50\":{:.3},\"p95\":{:.3},\"p99\":{:.3},\"max\":{max:.3}}},\"requests\":{}}}",
            sent as f64 / secs,
            bytes as f64 / secs / 1e6,
            pct(&latencies, 0.5),
            pct(&latencies, 0.95),
            pct(&latencies, 0.99),
            latencies.len()
        )?;
    } else {
        writeln!(
            o,
            "{sent} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.3} ms avg latency, {max:.3} ms max latency, {:.3} ms 50th, {:.3} ms 95th, {:.3} ms 99th ({} requests of up to {batch} records)",
            sent as f64 / secs,
            bytes as f64 / secs / 1e6,
            pct(&latencies, 0.5),
            pct(&latencies, 0.95),
            pct(&latencies, 0.99),
            latencies.len()
        )?;
    }
    Ok(())
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Subscribes at the high watermark; measures send-to-arrival latency of
/// records stamped by `perf-produce --stamp`.
fn subscribe(
    c: &Client,
    topic: &str,
    partition: u32,
    records: u64,
    samples: Option<&str>,
    json: bool,
) -> CliResult {
    let offset = list_offset(c, topic, partition, -1)?;
    let mut req = pb::SubscribeRequest::new();
    req.set_topic(topic.to_string());
    req.set_partition(partition);
    req.set_offset(offset);
    let mut stream = c
        .consumer
        .subscribe_opt(&req, c.opt(Duration::from_secs(3600)))
        .map_err(|e| c.err("subscribe", e))?;
    eprintln!("subscribed at offset {offset}; waiting for {records} records");
    let mut got = 0u64;
    let mut lat = Vec::new();
    let mut arrivals = Vec::new();
    let start = Instant::now();
    while got < records {
        let next = futures::executor::block_on(futures::StreamExt::next(&mut stream));
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(c.err("subscribe", e)),
            None => break,
        };
        let now = now_micros();
        for r in msg.get_records() {
            if let Some(h) = r.get_headers().iter().find(|h| h.get_key() == "perf-ts") {
                if let Ok(b) = <[u8; 8]>::try_from(h.get_value()) {
                    lat.push(now.saturating_sub(u64::from_le_bytes(b)) as f64 / 1e3);
                    arrivals.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        got += msg.get_records().len() as u64;
    }
    if let Some(path) = samples {
        write_samples(
            path,
            arrivals
                .iter()
                .zip(&lat)
                .map(|(at, ms)| [format!("{at:.3}"), format!("{ms:.3}")]),
        )?;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let max = lat.last().copied().unwrap_or(0.0);
    let mut o = std::io::stdout().lock();
    if json {
        writeln!(
            o,
            "{{\"records\":{got},\"stamped\":{},\"latency_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{max:.3}}}}}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        )?;
    } else {
        writeln!(
            o,
            "{got} records received, {} stamped: produce-to-subscriber {:.3} ms 50th, {:.3} ms 99th, {max:.3} ms max",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        )?;
    }
    Ok(())
}

pub fn consume(c: &Client, mut a: pico_args::Arguments, json: bool) -> CliResult {
    let topic: String = required(&mut a, "--topic", "perf-consume")?;
    let records: u64 = required(&mut a, "--records", "perf-consume")?;
    let partition: u32 = opt_num(&mut a, "--partition")?.unwrap_or(0);
    let per_fetch: u32 = opt_num(&mut a, "--fetch-records")?.unwrap_or(5000);
    let subscribe_mode = a.contains("--subscribe");
    let samples = opt_str(&mut a, "--samples")?;
    finish(a)?;
    if subscribe_mode {
        return subscribe(c, &topic, partition, records, samples.as_deref(), json);
    }
    let mut offset = list_offset(c, &topic, partition, -2)?;
    let start = Instant::now();
    let mut got = 0u64;
    let mut bytes = 0u64;
    let mut latencies = Vec::new();
    while got < records {
        let mut req = pb::FetchRequest::new();
        req.set_topic(topic.clone());
        req.set_partition(partition);
        req.set_offset(offset);
        req.set_max_records(per_fetch.min((records - got) as u32));
        req.set_max_bytes(64 << 20);
        let t = Instant::now();
        let r = c
            .consumer
            .fetch_opt(&req, c.opt(Duration::from_secs(60)))
            .map_err(|e| c.err("fetch", e))?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        if r.get_records().is_empty() {
            break; // the end of the partition
        }
        got += r.get_records().len() as u64;
        bytes += r
            .get_records()
            .iter()
            .map(|x| x.get_value().len() as u64)
            .sum::<u64>();
        offset = r.get_next_offset();
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let mut o = std::io::stdout().lock();
    if json {
        writeln!(
            o,
            "{{\"records\":{got},\"seconds\":{secs:.3},\"records_per_sec\":{:.1},\"mb_per_sec\":{:.2},\"fetches\":{},\"fetch_ms\":{{\"p50\":{:.3},\"p99\":{:.3}}}}}",
            got as f64 / secs,
            bytes as f64 / secs / 1e6,
            latencies.len(),
            pct(&latencies, 0.5),
            pct(&latencies, 0.99)
        )?;
    } else {
        writeln!(
            o,
            "{got} records consumed in {secs:.3} s, {:.1} records/sec ({:.2} MB/sec), {} fetches, {:.3} ms 50th, {:.3} ms 99th fetch latency",
            got as f64 / secs,
            bytes as f64 / secs / 1e6,
            latencies.len(),
            pct(&latencies, 0.5),
            pct(&latencies, 0.99)
        )?;
    }
    if got < records {
        eprintln!("note: the partition ended after {got} of {records} records");
    }
    Ok(())
}
