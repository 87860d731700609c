//! Cluster mode for integration tests: nodes of the real `streamhoused`
//! sharing one bucket prefix (the S3 test server) and one etcd
//! (`scripts/etcd-server.sh env`), and a client that finds each
//! partition's leader the way a user's would (DescribeCluster).

use super::{clients_for, s3, Clients, TestServer};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use streamhouse::proto as pb;

/// The lease TTL the tests run with: a dead node's partitions move after
/// about this long.
pub const TTL_MS: u64 = 2000;

/// etcd's URL from the environment; `None` (the test skips) when it is not
/// set, unless etcd tests are required (CI).
pub fn etcd() -> Option<String> {
    let url = std::env::var("STREAMHOUSE_TEST_ETCD").ok();
    if url.is_none() {
        assert!(
            std::env::var("STREAMHOUSE_REQUIRE_ETCD").as_deref() != Ok("1"),
            "STREAMHOUSE_TEST_ETCD is not set but etcd tests are required; run scripts/etcd-server.sh start"
        );
        eprintln!("skipping: STREAMHOUSE_TEST_ETCD not set (see scripts/etcd-server.sh)");
    }
    url
}

/// One node: its data dir survives its process; it reaches the S3 test
/// server through a proxy of its own (a test can cut one node off).
pub struct Node {
    pub server: Option<TestServer>,
    pub dir: tempfile::TempDir,
    pub store: s3::Proxy,
}

/// Nodes of one cluster, each started with the same flags.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The bucket prefix the nodes share (its name is the cluster's too).
    pub bucket: s3::Bucket,
    /// Every node reaches etcd through it: a test can cut etcd off.
    pub etcd: s3::Proxy,
    flags: Vec<String>,
}

impl Cluster {
    /// `n` nodes, or `None` when the S3 test server or etcd is missing.
    pub fn start(tag: &str, n: usize) -> Option<Cluster> {
        Self::start_with(tag, n, &[])
    }

    /// [`Cluster::start`], every node with `extra` flags too.
    pub fn start_with(tag: &str, n: usize, extra: &[&str]) -> Option<Cluster> {
        let (endpoint, etcd) = (s3::endpoint()?, etcd()?);
        let bucket = s3::Bucket::new(&endpoint, tag);
        let etcd = s3::Proxy::start(&etcd);
        let ttl = TTL_MS.to_string();
        let name = bucket.prefix.clone();
        let flags = [
            "--etcd",
            &etcd.endpoint(),
            "--cluster",
            &name,
            "--cluster-ttl-ms",
            &ttl,
        ]
        .map(String::from);
        let mut c = Cluster {
            nodes: Vec::new(),
            bucket,
            etcd,
            flags: flags
                .into_iter()
                .chain(extra.iter().map(|f| f.to_string()))
                .collect(),
        };
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let store = s3::Proxy::start(&endpoint);
            let server = Some(c.spawn(dir.path(), &store));
            c.nodes.push(Node { server, dir, store });
        }
        Some(c)
    }

    fn spawn(&self, dir: &std::path::Path, store: &s3::Proxy) -> TestServer {
        let mut flags = s3::flags(&store.endpoint(), &self.bucket.prefix);
        flags.extend(self.flags.iter().cloned());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        TestServer::start_in(dir, &flags)
    }

    /// The gRPC addresses of the nodes running.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.server.as_ref().map(|s| s.addr.clone()))
            .collect()
    }

    /// SIGSTOP (`stop`) or SIGCONT of node `i`: a process paused, as a
    /// long GC pause or a frozen VM looks.
    pub fn pause(&self, i: usize, stop: bool) {
        let pid = self.nodes[i].server.as_ref().expect("running").child.id();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let ok = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].server.take() {
            s.child.kill().unwrap();
            s.child.wait().unwrap();
        }
    }

    /// Starts node `i` again on its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].server.is_none(), "node {i} is running");
        let node = &self.nodes[i];
        let server = self.spawn(node.dir.path(), &node.store);
        self.nodes[i].server = Some(server);
    }

    /// Which node (index) serves `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.server.as_ref().is_some_and(|s| s.addr == addr))
    }
}

/// Every partition's leader's gRPC address, from the first node of
/// `addrs` that answers DescribeCluster.
pub fn leaders(addrs: &[String]) -> HashMap<(String, u32), String> {
    for addr in addrs {
        let c = clients_for(addr);
        let opt = grpcio::CallOption::default().timeout(Duration::from_secs(2));
        let Ok(info) = c
            .admin
            .describe_cluster_opt(&pb::DescribeClusterRequest::new(), opt)
        else {
            continue;
        };
        let nodes: HashMap<&str, &str> = info
            .get_nodes()
            .iter()
            .map(|n| (n.get_node_id(), n.get_grpc_addr()))
            .collect();
        return info
            .get_leaders()
            .iter()
            .filter_map(|l| {
                let addr = nodes.get(l.get_node_id())?;
                Some((
                    (l.get_topic().to_string(), l.get_partition()),
                    addr.to_string(),
                ))
            })
            .collect();
    }
    HashMap::new()
}

/// Waits until each of `topic`'s `partitions` has a leader among `addrs`.
pub fn wait_for_leaders(addrs: &[String], topic: &str, partitions: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = leaders(addrs);
        let led = (0..partitions)
            .filter(|p| {
                l.get(&(topic.to_string(), *p))
                    .is_some_and(|a| addrs.contains(a))
            })
            .count();
        if led == partitions as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {led} of {partitions} partitions led after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client that sends each call to the partition's leader, as it last
/// learned it, and looks again when told UNAVAILABLE.
#[derive(Default)]
pub struct Routed {
    clients: HashMap<String, Clients>,
}

impl Routed {
    pub fn to(&mut self, addr: &str) -> &Clients {
        self.clients
            .entry(addr.to_string())
            .or_insert_with(|| clients_for(addr))
    }
}
