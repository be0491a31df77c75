//! `kyu bench --remote`: the worker protocol's throughput, as users run it. A real
//! `kyu serve` (this binary, default settings, SQLite in a temp dir unless
//! `--database-url`) in a child process, and one remote worker speaking HTTP from this
//! process: `--concurrency` handler slots (no-op jobs), fetches of up to 100 jobs kept
//! ahead of the slots, reports batched through `POST /api/v1/acks`. `--jobs` jobs are
//! enqueued through `POST /api/v1/jobs/batch`, then drained; three runs, medians.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cli::BenchArgs;
use crate::store::Backend;
use crate::store::testdb::{scratch_mysql, scratch_postgres};

const TYPE: &str = "bench_remote";
const FETCH_MAX: usize = 100;
const ACK_MAX: usize = 1000;

#[derive(Debug, Serialize)]
pub struct RemoteBenchReport {
    pub system: &'static str,
    pub bench: &'static str,
    pub backend: String,
    pub jobs: u32,
    pub concurrency: usize,
    /// Drain rate of one remote worker, jobs/s: median and range of the runs.
    pub drain_per_s: f64,
    pub drain_range: [f64; 2],
    pub runs: usize,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<RemoteBenchReport> {
    let mut rates = Vec::new();
    let mut backend = "sqlite".to_owned();
    for i in 0..args.runs.max(1) {
        let dir = std::env::temp_dir().join(format!("kyu-bench-remote-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)?;
        let server = args.database_url.as_deref();
        let (url, _guard) = match server.map(Backend::from_url).transpose()? {
            Some(Backend::Postgres) => {
                backend = "postgres".into();
                let (db, g) = scratch_postgres(server.unwrap_or_default()).await?;
                (db, Some(g))
            }
            Some(Backend::MySql) => {
                backend = "mysql".into();
                let (db, g) = scratch_mysql(server.unwrap_or_default()).await?;
                (db, Some(g))
            }
            _ => (format!("sqlite://{}", dir.join("kyu.db").display()), None),
        };
        let r = one_run(&dir, &url, args).await;
        let _ = std::fs::remove_dir_all(&dir);
        let rate = r?;
        tracing::info!(run = i + 1, rate, "remote worker bench run");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    Ok(RemoteBenchReport {
        system: "kyu",
        bench: "remote_worker",
        backend,
        jobs: args.jobs,
        concurrency: args.concurrency,
        drain_per_s: rates[rates.len() / 2],
        drain_range: [rates[0], rates[rates.len() - 1]],
        runs: rates.len(),
    })
}

/// A `kyu serve` child, killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn one_run(dir: &std::path::Path, url: &str, args: &BenchArgs) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let _child = Child(
        tokio::process::Command::new(exe)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .env("DATABASE_URL", url)
            .env("KYU_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting kyu serve")?,
    );
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(16)
        .build()?;
    let ready = Instant::now();
    loop {
        let up = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "kyu serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker_id = format!("bench-{}", uuid::Uuid::now_v7());
    // The first fetch registers the type, so enqueueing it is accepted.
    fetch(&http, &base, &worker_id, 1, 0).await?;
    enqueue(&http, &base, args.jobs as usize).await?;

    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let n = args.jobs as usize;
    let (job_tx, job_rx) = async_channel(FETCH_MAX * 2);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Value>();
    // Handler slots: each takes a job, runs the no-op, hands its report on.
    let mut slots = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (rx, ack) = (job_rx.clone(), ack_tx.clone());
        slots.push(tokio::spawn(async move {
            while let Ok(job) = rx.recv().await {
                let _ = ack.send(json!({
                    "job_id": job["job_id"], "lease": job["lease"], "op": "complete",
                }));
            }
        }));
    }
    drop(ack_tx);
    // Reports: whatever has piled up goes in one `acks` call.
    let acker = {
        let (http, base, done) = (http.clone(), base.clone(), done.clone());
        tokio::spawn(async move {
            while let Some(first) = ack_rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < ACK_MAX {
                    match ack_rx.try_recv() {
                        Ok(a) => batch.push(a),
                        Err(_) => break,
                    }
                }
                let res: Value = http
                    .post(format!("{base}/acks"))
                    .json(&json!({ "acks": batch }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let ok = res["results"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|x| x["ok"] == true).count());
                done.fetch_add(ok, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    // Fetches keep the slots' queue full.
    while done.load(Ordering::Relaxed) + job_tx.len() < n {
        let room = (FETCH_MAX * 2).saturating_sub(job_tx.len()).min(FETCH_MAX);
        if room == 0 {
            tokio::task::yield_now().await;
            continue;
        }
        let jobs = fetch(&http, &base, &worker_id, room, 100).await?;
        if jobs.is_empty() && done.load(Ordering::Relaxed) >= n {
            break;
        }
        for job in jobs {
            job_tx.send(job).await?;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("drain took over 10 minutes");
        }
    }
    job_tx.close();
    for s in slots {
        let _ = s.await;
    }
    acker.await??;
    let secs = started.elapsed().as_secs_f64();
    let got = done.load(Ordering::Relaxed);
    anyhow::ensure!(got == n, "drained {got} of {n} jobs");
    Ok((n as f64 / secs).round())
}

/// A multi-consumer job queue for the slots.
fn async_channel(cap: usize) -> (JobSender, JobReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let len = Arc::new(AtomicUsize::new(0));
    (
        JobSender {
            tx: Some(tx),
            len: len.clone(),
        },
        JobReceiver { rx, len },
    )
}

struct JobSender {
    tx: Option<mpsc::Sender<Value>>,
    len: Arc<AtomicUsize>,
}

impl JobSender {
    async fn send(&self, v: Value) -> anyhow::Result<()> {
        let tx = self.tx.as_ref().context("closed")?;
        self.len.fetch_add(1, Ordering::Relaxed);
        tx.send(v).await.map_err(|_| anyhow::anyhow!("slots gone"))
    }
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
    fn close(mut self) {
        self.tx = None;
    }
}

#[derive(Clone)]
struct JobReceiver {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Value>>>,
    len: Arc<AtomicUsize>,
}

impl JobReceiver {
    async fn recv(&self) -> Result<Value, ()> {
        let v = self.rx.lock().await.recv().await.ok_or(())?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Ok(v)
    }
}

async fn fetch(
    http: &reqwest::Client,
    base: &str,
    worker_id: &str,
    max: usize,
    wait_ms: u64,
) -> anyhow::Result<Vec<Value>> {
    let res: Value = http
        .post(format!("{base}/fetch"))
        .json(&json!({
            "worker_id": worker_id, "types": [TYPE], "max": max, "wait_ms": wait_ms,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(res["jobs"].as_array().cloned().unwrap_or_default())
}

async fn enqueue(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let jobs: Vec<Value> = (0..k)
            .map(|i| json!({"type": TYPE, "payload": {"i": i}}))
            .collect();
        http.post(format!("{base}/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await?
            .error_for_status()?;
        left -= k;
    }
    Ok(())
}
