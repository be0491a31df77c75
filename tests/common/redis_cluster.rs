//! A private 3-master Redis Cluster on free loopback ports, made the way an operator
//! would: three `redis-server --cluster-enabled yes`, then `redis-cli --cluster create
//! … --cluster-replicas 0 --cluster-yes`. Nothing is kept on disk beyond the nodes'
//! cluster config files in the test's directory; every server is killed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port whose cluster bus port (+10000) is free too, both below the
/// kernel's ephemeral range.
fn free_cluster_port() -> u16 {
    use std::net::TcpListener;
    let seed = std::process::id() as u64 ^ uuid::Uuid::new_v4().as_u128() as u64;
    for i in 0..2000u64 {
        // Node ports 20000–22767, bus ports (+10000) 30000–32767: both below Linux's
        // ephemeral range (32768–60999), so while the cluster is down for an outage
        // test no outgoing connection (a reconnecting client) can take one of them
        // and keep a node from coming back.
        let port = 20000 + ((seed.wrapping_add(i * 7919)) % 2768) as u16;
        let a = TcpListener::bind(("127.0.0.1", port));
        let b = TcpListener::bind(("127.0.0.1", port + 10000));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a redis cluster node");
}

/// Three cluster-enabled `redis-server`s that together hold all 16384 slots.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

fn installed(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl RedisCluster {
    /// Starts the servers, creates the cluster and waits until every node reports
    /// `cluster_state:ok`. `None` (skip) when `redis-server`/`redis-cli` is not
    /// installed, a failure under `KYU_REQUIRE_SERVICES=1`.
    pub fn start(dir: &Path) -> Option<RedisCluster> {
        if !installed("redis-server") || !installed("redis-cli") {
            assert!(
                std::env::var("KYU_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "redis-server/redis-cli are not installed but KYU_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: redis-server or redis-cli is not installed");
            return None;
        }
        let mut c = RedisCluster {
            nodes: Vec::new(),
            ports: Vec::new(),
            dir: dir.to_owned(),
        };
        for _ in 0..3 {
            c.ports.push(free_cluster_port());
        }
        c.spawn_all();
        for &p in &c.ports {
            c.wait_for(p, "PONG", &["PING"]);
        }
        let addrs: Vec<String> = c.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &p in &c.ports {
            c.wait_for(p, "cluster_state:ok", &["CLUSTER", "INFO"]);
        }
        Some(c)
    }

    fn spawn_all(&mut self) {
        for &port in &self.ports {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("redis-{port}.log")))
                .expect("redis log");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--dir", &self.dir.display().to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            self.nodes.push(child);
        }
    }

    /// Kills every node (SIGKILL: the data goes, the cluster config files stay).
    pub fn stop(&mut self) {
        for mut c in self.nodes.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the nodes again on their ports; they re-form the cluster from their
    /// config files. Waits for `cluster_state:ok` on each.
    pub fn restart(&mut self) {
        assert!(self.nodes.is_empty(), "the cluster is running");
        self.spawn_all();
        for &p in &self.ports {
            self.wait_for(p, "cluster_state:ok", &["CLUSTER", "INFO"]);
        }
    }

    /// Whether any node answers PING.
    pub fn answers(&self) -> bool {
        self.ports
            .iter()
            .any(|&p| self.cli(p, &["PING"]).contains("PONG"))
    }

    /// `redis+cluster://` naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// `redis-cli -p PORT ARGS…` output ("" when it fails).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn wait_for(&self, port: u16, want: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.cli(port, args).contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis node {port} never answered {args:?} with {want:?} (logs in {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Calls of `command` (lower case, e.g. `evalsha`) summed over every node, from
    /// `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.ports
            .iter()
            .map(|&p| {
                self.cli(p, &["INFO", "commandstats"])
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Keys held by each node (`DBSIZE`), in port order.
    pub fn sizes(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|&p| self.cli(p, &["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `redis-server` or a cluster, for suites that run on both.
pub enum AnyRedis {
    Server(super::cluster::Redis),
    Cluster(RedisCluster),
}

impl AnyRedis {
    pub fn url(&self) -> String {
        match self {
            AnyRedis::Server(r) => r.url(),
            AnyRedis::Cluster(c) => c.url(),
        }
    }
    pub fn stop(&mut self) {
        match self {
            AnyRedis::Server(r) => r.stop(),
            AnyRedis::Cluster(c) => c.stop(),
        }
    }
    pub fn restart(&mut self) {
        match self {
            AnyRedis::Server(r) => r.restart(),
            AnyRedis::Cluster(c) => c.restart(),
        }
    }
    pub fn answers(&self) -> bool {
        match self {
            AnyRedis::Server(r) => r.answers(),
            AnyRedis::Cluster(c) => c.answers(),
        }
    }
    /// Calls of `command` since the server(s) started.
    pub fn calls(&self, command: &str) -> u64 {
        match self {
            AnyRedis::Server(r) => r.calls(command),
            AnyRedis::Cluster(c) => c.calls(command),
        }
    }
}
