//! Several real kyu processes on one database: one `kyu api` and N `kyu worker`s, the
//! production shape, plus a private `redis-server` the test can stop
//! and start again on the same port. Every process is killed when the cluster (or the
//! Redis) drops, also when the test panics; the database goes with its guard.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kyu::chaos::ledger::{Entry, Phase};
use kyu::engine::store::ListJobs;
use kyu::engine::{Job, JobStatus, Store};
use kyu::store::testdb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::api::wait_listening;
use super::{KyuProcess, TempDir, ledger};

/// Which server database the cluster shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    MySql,
}

/// A fresh database for the cluster; `None` to skip (server not configured).
pub async fn database(backend: Backend) -> Option<(String, Arc<dyn Store>, testdb::DbGuard)> {
    let (url, guard) = match backend {
        Backend::Postgres => testdb::postgres_db().await?,
        Backend::MySql => testdb::mysql_db().await?,
    };
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("open the cluster's database");
    Some((url, store, guard))
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A private `redis-server` on a free loopback port, keeping nothing on disk; stopped
/// (SIGKILL) on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    starts: u32,
}

impl Redis {
    /// Starts one; `None` to skip when `redis-server` is not installed (a failure under
    /// `KYU_REQUIRE_SERVICES=1`).
    pub fn start(dir: &Path) -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            assert!(
                std::env::var("KYU_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "redis-server is not installed but KYU_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
            starts: 0,
        };
        r.restart();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("redis-{}.log", self.starts)))
            .expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.display().to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: nothing is saved, every connection drops).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Calls of `command` (lower case, e.g. `evalsha`) this server has run since it
    /// started, from `INFO commandstats`; 0 when it does not answer.
    pub fn calls(&self, command: &str) -> u64 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"INFO commandstats\r\n").is_err() {
            return 0;
        }
        // A bulk reply: "$<len>\r\n<text>\r\n".
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
            let t = String::from_utf8_lossy(&text);
            if let Some((head, body)) = t.split_once("\r\n") {
                let len: usize = head.trim_start_matches('$').parse().unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let prefix = format!("cmdstat_{command}:calls=");
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Whether something answers PING on the port.
    pub fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the cluster's processes are set up.
pub struct Options {
    pub workers: usize,
    /// `REDIS_URL` for every process (none: the database alone).
    pub redis_url: Option<String>,
    /// `JOB_QUEUE_WORKER_COUNT` of each worker.
    pub pool: usize,
    pub lease: &'static str,
    pub rescue_interval: &'static str,
    pub poll_interval: &'static str,
    /// More settings for every process.
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 4,
            redis_url: None,
            pool: 4,
            lease: "10s",
            rescue_interval: "500ms",
            poll_interval: "200ms",
            env: Vec::new(),
        }
    }
}

/// One `kyu api` and `workers` × `kyu worker` on one database, all writing `ledger` jobs'
/// runs to one ledger file.
pub struct Cluster {
    // Processes first: fields drop in order, and they must die before the database goes.
    pub workers: Vec<KyuProcess>,
    pub api: KyuProcess,
    pub base: String,
    pub http: reqwest::Client,
    pub ledger: PathBuf,
    pub store: Arc<dyn Store>,
    pub url: String,
    /// What each enqueued job is (the batch endpoint's job object).
    pub job: Value,
    env: Vec<(&'static str, String)>,
    _db: testdb::DbGuard,
    pub dir: TempDir,
}

impl Cluster {
    /// Starts the api (which migrates the database), then the workers, and waits until
    /// every worker's engine runs.
    pub async fn start(
        tag: &str,
        db: (String, Arc<dyn Store>, testdb::DbGuard),
        opts: Options,
    ) -> Cluster {
        let dir = TempDir::new(tag);
        let (url, store, guard) = db;
        let ledger = dir.path().join("ledger.log");
        let mut env = vec![
            ("DATABASE_URL", url.clone()),
            ("KYU_LEDGER_PATH", ledger.display().to_string()),
            ("JOB_QUEUE_WORKER_COUNT", opts.pool.to_string()),
            ("KYU_AUTOSCALE", "false".into()),
            ("KYU_LEASE", opts.lease.into()),
            ("KYU_RESCUE_INTERVAL", opts.rescue_interval.into()),
            ("JOB_QUEUE_POLL_INTERVAL", opts.poll_interval.into()),
            ("KYU_SHUTDOWN_GRACE", "1s".into()),
            ("KYU_METRICS_SAMPLE_INTERVAL", "1s".into()),
            ("NO_COLOR", "1".into()),
        ];
        if let Some(r) = &opts.redis_url {
            env.push(("REDIS_URL", r.clone()));
        }
        for (k, v) in opts.env {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        let api = KyuProcess::start(
            &["api", "--bind", "127.0.0.1:0"],
            &env,
            dir.path().join("api.log"),
        );
        let base = wait_listening(&api, Duration::from_secs(60)).await;
        let mut c = Cluster {
            workers: Vec::new(),
            api,
            base,
            http: reqwest::Client::new(),
            ledger,
            store,
            url,
            job: json!({ "type": "ledger", "payload": { "ms": 0 }, "max_retries": 10 }),
            env,
            _db: guard,
            dir,
        };
        for _ in 0..opts.workers {
            c.add_worker();
        }
        for i in 0..c.workers.len() {
            c.wait_worker_ready(i).await;
        }
        c
    }

    /// Starts one more `kyu worker`; returns its index.
    pub fn add_worker(&mut self) -> usize {
        let n = self.workers.len();
        let log = self.dir.path().join(format!("worker-{n}.log"));
        self.workers
            .push(KyuProcess::start(&["worker"], &self.env, log));
        n
    }

    /// Waits for worker `i`'s "engine started" line.
    pub async fn wait_worker_ready(&self, i: usize) {
        let w = &self.workers[i];
        let deadline = Instant::now() + Duration::from_secs(60);
        while !w.log_text().contains("engine started") {
            assert!(
                Instant::now() < deadline,
                "worker {i} did not start: {}",
                w.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid()).collect()
    }

    /// Enqueues `n` ledger jobs through the api process's `POST /api/v1/jobs/batch`, in
    /// batches of `batch`, `in_flight` requests at a time; returns their ids. Every batch
    /// must answer 201.
    pub async fn enqueue(&self, n: usize, batch: usize, in_flight: usize) -> Vec<Uuid> {
        use futures::StreamExt;
        let sizes: Vec<usize> = (0..n.div_ceil(batch))
            .map(|i| batch.min(n - i * batch))
            .collect();
        let results: Vec<Vec<Uuid>> = futures::stream::iter(sizes)
            .map(|size| self.enqueue_batch(size))
            .buffered(in_flight)
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    /// One batch of `size` jobs like [`Cluster::job`]; panics unless 201.
    pub async fn enqueue_batch(&self, size: usize) -> Vec<Uuid> {
        let jobs = vec![self.job.clone(); size];
        let res = self
            .http
            .post(format!("{}/api/v1/jobs/batch", self.base))
            .json(&json!({ "jobs": jobs }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("batch enqueue reaches the api process");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::CREATED, "batch enqueue: {body}");
        body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["job_id"].as_str().expect("job_id").parse().expect("uuid"))
            .collect()
    }

    /// Jobs in the store per status.
    pub async fn status_counts(&self) -> HashMap<JobStatus, u64> {
        let mut out = HashMap::new();
        if let Ok(counts) = self.store.counts().await {
            for c in counts {
                *out.entry(c.status).or_default() += c.count;
            }
        }
        out
    }

    /// Polls the store (every 100 ms) until `done` of its counts holds; panics after `limit`.
    pub async fn wait_counts(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&HashMap<JobStatus, u64>) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.status_counts().await;
            if done(&c) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `n` jobs are completed.
    pub async fn wait_completed(&self, n: u64, limit: Duration) {
        self.wait_counts(&format!("{n} completed jobs"), limit, |c| {
            c.get(&JobStatus::Completed).copied().unwrap_or(0) >= n
        })
        .await;
    }

    /// Every job row, a page at a time.
    pub async fn all_jobs(&self) -> Vec<Job> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list(&ListJobs {
                    cursor,
                    limit: kyu::engine::store::MAX_PAGE,
                    ..Default::default()
                })
                .await
                .expect("list jobs");
            out.extend(page.jobs);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    /// `GET /metrics` of the api process.
    pub async fn api_metrics(&self) -> Option<String> {
        let res = self
            .http
            .get(format!("{}/metrics", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        res.text().await.ok()
    }

    /// Stops every process with SIGTERM and waits for each to exit cleanly.
    pub fn stop_all(&mut self) {
        for w in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.api))
        {
            if let Ok(None) = w.child.try_wait() {
                w.signal("TERM");
                let st = w.wait_exit(Duration::from_secs(20));
                assert!(st.is_some(), "SIGTERM stops kyu: {}", w.log_text());
            }
        }
    }

    pub fn ledger(&self) -> Vec<Entry> {
        ledger(&self.ledger)
    }
}

/// The value of an unlabelled gauge in Prometheus text.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// What the ledger and the store say about a run (Jepsen total-queue categories).
#[derive(Debug, Default)]
pub struct Verdict {
    pub jobs: usize,
    /// Completed runs (ledger end of the stored attempt) per worker pid.
    pub by_pid: HashMap<u32, usize>,
    /// Jobs whose handler started more than once.
    pub duplicated: usize,
    /// Of those, jobs whose earlier run had reached its end (handler finished, ack not
    /// committed when the node died).
    pub duplicated_after_end: usize,
    /// Pids that earlier (superseded) runs ran on.
    pub rerun_from: HashSet<u32>,
}

impl Verdict {
    /// Checks every enqueued job against the store and the ledger: completed, with an
    /// end record of the stored attempt on the pid the result names; no run of a job
    /// that was not enqueued; every run but the last on a pid in `may_die` (an empty set
    /// means exactly once: one start and one end per job).
    pub fn check(ids: &[Uuid], rows: &[Job], entries: &[Entry], may_die: &HashSet<u32>) -> Self {
        let known: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(known.len(), ids.len(), "the api returned an id twice");
        let mut runs: HashMap<Uuid, Vec<&Entry>> = HashMap::with_capacity(ids.len());
        for e in entries {
            runs.entry(e.job).or_default().push(e);
        }
        let unexpected: Vec<_> = runs.keys().filter(|j| !known.contains(j)).collect();
        assert!(
            unexpected.is_empty(),
            "runs of jobs never enqueued: {unexpected:?}"
        );
        let rows: HashMap<Uuid, &Job> = rows.iter().map(|j| (j.id, j)).collect();
        let mut v = Verdict {
            jobs: ids.len(),
            ..Default::default()
        };
        let mut lost = Vec::new();
        for id in ids {
            let Some(job) = rows.get(id) else {
                lost.push(format!("{id}: no row"));
                continue;
            };
            let runs = runs.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let starts: Vec<&&Entry> = runs.iter().filter(|e| e.phase == Phase::Start).collect();
            let ends: Vec<&&Entry> = runs.iter().filter(|e| e.phase == Phase::End).collect();
            let last_end = ends.iter().find(|e| e.attempt == job.attempts);
            let (true, Some(last_end)) = (job.status == JobStatus::Completed, last_end) else {
                lost.push(format!(
                    "{id}: {:?} attempt {} with {} starts, {} ends",
                    job.status,
                    job.attempts,
                    starts.len(),
                    ends.len()
                ));
                continue;
            };
            assert_eq!(
                job.result,
                Some(json!({ "pid": last_end.pid })),
                "job {id}: the stored result is the run that ended"
            );
            *v.by_pid.entry(last_end.pid).or_default() += 1;
            if may_die.is_empty() {
                assert!(
                    starts.len() == 1 && ends.len() == 1,
                    "job {id} ran {} times ({} ends): {runs:?}",
                    starts.len(),
                    ends.len()
                );
                continue;
            }
            if starts.len() > 1 {
                v.duplicated += 1;
                for s in &starts[..starts.len() - 1] {
                    assert!(
                        may_die.contains(&s.pid),
                        "job {id} ran again although its run on pid {} was on a live node: {runs:?}",
                        s.pid
                    );
                    v.rerun_from.insert(s.pid);
                    if ends.iter().any(|e| e.attempt == s.attempt) {
                        v.duplicated_after_end += 1;
                    }
                }
            }
        }
        assert!(
            lost.is_empty(),
            "{} lost jobs, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        v
    }

    /// "pid 123 (worker 0) 12,345 = 24.7 %", one per worker, in worker order.
    pub fn shares(&self, pids: &[u32]) -> Vec<(usize, u32, usize, f64)> {
        pids.iter()
            .enumerate()
            .map(|(i, pid)| {
                let n = self.by_pid.get(pid).copied().unwrap_or(0);
                (i, *pid, n, 100.0 * n as f64 / self.jobs.max(1) as f64)
            })
            .collect()
    }

    pub fn shares_text(&self, pids: &[u32]) -> String {
        self.shares(pids)
            .iter()
            .map(|(i, pid, n, pct)| format!("worker{i}(pid {pid})={n} ({pct:.1}%)"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
