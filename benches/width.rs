//! Width: the real `streamhoused` with 10,000 partitions (ten topics of
//! 1,000), started under a soft limit of 1,024 open files. Creates the
//! topics while a producer on another topic measures its latency (the p99
//! beside a baseline without creates, in the same run), produces a flights
//! record to every partition, restarts, and reads each one back. Prints
//! start-up time, resident memory, threads and open files from /proc.
//!
//! `cargo bench --bench width` (STREAMHOUSE_BENCH_TOPICS changes the number
//! of 1,000-partition topics).

mod common;

use common::{load_lines, micros, summarize};
use grpcio::{ChannelBuilder, Environment};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::proto as pb;
use streamhouse::proto::grpc::{AdminServiceClient, ConsumerServiceClient, ProducerServiceClient};

const PER_TOPIC: u32 = 1000;

struct Node {
    child: Child,
    addr: String,
    started_in: Duration,
}

/// Starts the server the way a new user's shell would: soft limit 1,024.
fn start(dir: &std::path::Path) -> Node {
    let t = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 1024 && exec "$0" --listen 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_streamhoused"))
        .arg(dir)
        .env("STREAMHOUSE_LOG", "warn")
        .env("STREAMHOUSE_KAFKA_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start streamhoused");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("streamhoused listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Node {
        child,
        addr,
        started_in: t.elapsed(),
    }
}

impl Node {
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(self.child.wait().unwrap().success());
    }

    /// Resident memory (MB), threads and open files, from /proc.
    fn usage(&self) -> String {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let nofile = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "RSS {:.0} MB, {} threads, {fds} open files (limit soft/hard {nofile})",
            field("VmRSS:") as f64 / 1024.0,
            field("Threads:")
        )
    }
}

struct Clients {
    admin: AdminServiceClient,
    producer: ProducerServiceClient,
    consumer: ConsumerServiceClient,
}

fn clients(addr: &str) -> Clients {
    let env = Arc::new(Environment::new(1));
    let ch = ChannelBuilder::new(env)
        .max_receive_message_len(128 << 20)
        .connect(addr);
    Clients {
        admin: AdminServiceClient::new(ch.clone()),
        producer: ProducerServiceClient::new(ch.clone()),
        consumer: ConsumerServiceClient::new(ch),
    }
}

fn produce_one(c: &Clients, topic: &str, partition: u32, value: &[u8]) {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(topic.into());
    req.set_partition(partition);
    let mut r = pb::Record::new();
    r.set_value(value.to_vec());
    req.mut_records().push(r);
    c.producer.produce(&req).expect("produce");
}

fn create(c: &Clients, name: &str, partitions: u32) {
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(name.into());
    req.set_partitions(partitions);
    c.admin.create_topic(&req).expect("create topic");
}

/// Produce latencies (µs) on `hot` while `during` runs.
fn produce_latencies(addr: &str, values: &[Vec<u8>], during: impl FnOnce()) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (addr, stop, values) = (addr.to_string(), Arc::clone(&stop), values.to_vec());
        std::thread::spawn(move || {
            let c = clients(&addr);
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && lat.len() < 200_000 {
                let t = Instant::now();
                produce_one(&c, "hot", 0, &values[i % values.len()]);
                lat.push(micros(t.elapsed()));
                i += 1;
            }
            lat
        })
    };
    during();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap()
}

fn main() {
    let topics: usize = std::env::var("STREAMHOUSE_BENCH_TOPICS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let values = load_lines("flights-200k.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    eprintln!(
        "empty node: started in {:?}; {}",
        node.started_in,
        node.usage()
    );
    let c = clients(&node.addr);
    create(&c, "hot", 1);

    // Produce latency on "hot": first alone, then while each 1,000-partition
    // topic is created.
    let alone = produce_latencies(&node.addr, &values, || {
        std::thread::sleep(Duration::from_secs(3))
    });
    let mut create_ms = Vec::new();
    let during = produce_latencies(&node.addr, &values, || {
        for t in 0..topics {
            let start = Instant::now();
            create(&c, &format!("wide-{t}"), PER_TOPIC);
            create_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    });
    let (a, d, cr) = (summarize(alone), summarize(during), summarize(create_ms));
    println!(
        "produce latency on another topic, alone: p50 {:.0} µs p99 {:.0} µs max {:.0} µs (n={})",
        a.p50, a.p99, a.max, a.n
    );
    println!(
        "  while {topics} topics of {PER_TOPIC} partitions are created: p50 {:.0} µs p99 {:.0} µs max {:.0} µs (n={}); p99 ratio {:.2}",
        d.p50,
        d.p99,
        d.max,
        d.n,
        d.p99 / a.p99
    );
    println!(
        "create a {PER_TOPIC}-partition topic: median {:.0} ms, max {:.0} ms",
        cr.p50, cr.max
    );

    // One flights record to every partition, from four connections.
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..4 {
            let (addr, values) = (&node.addr, &values);
            s.spawn(move || {
                let c = clients(addr);
                for i in (w..topics * PER_TOPIC as usize).step_by(4) {
                    let topic = format!("wide-{}", i / PER_TOPIC as usize);
                    produce_one(&c, &topic, i as u32 % PER_TOPIC, &values[i % values.len()]);
                }
            });
        }
    });
    let partitions = topics * PER_TOPIC as usize;
    println!(
        "produced one record to each of {partitions} partitions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("at {partitions} partitions, serving: {}", node.usage());
    drop(c);
    let t = Instant::now();
    node.stop();
    println!("SIGTERM to exit: {:.1} s", t.elapsed().as_secs_f64());

    let node = start(dir.path());
    println!(
        "restart with {partitions} partitions (soft limit 1024 before start): listening after {:.2} s; {}",
        node.started_in.as_secs_f64(),
        node.usage()
    );
    let c = clients(&node.addr);
    let t = Instant::now();
    for i in 0..partitions {
        let mut req = pb::FetchRequest::new();
        req.set_topic(format!("wide-{}", i / PER_TOPIC as usize));
        req.set_partition(i as u32 % PER_TOPIC);
        req.set_offset(0);
        let r = c.consumer.fetch(&req).expect("fetch");
        assert_eq!(r.get_records().len(), 1, "partition {i}");
        assert_eq!(
            r.get_records()[0].get_value(),
            &values[i % values.len()][..]
        );
    }
    println!(
        "read back all {partitions} partitions in {:.1} s; {}",
        t.elapsed().as_secs_f64(),
        node.usage()
    );
    node.stop();
}
