//! `kyu bench`: the engine workload (docs/benchmarks.md), in-process. W1: enqueue N no-op jobs in
//! batches of 1,000, then start the engine and time the drain until the N-th outcome is
//! durable. W2: the engine idle for 2 s, then 2,000 single enqueues at 200/s; latency is
//! job start − enqueue call. Three runs; medians and ranges.
//!
//! The engine is wired as `kyu serve` wires it, with its default settings and a pool of
//! `--concurrency` workers (`JOB_QUEUE_WORKER_COUNT`): the metered store behind the
//! circuit breaker, the metrics recorder, the autoscaler, leadership and the node agent.
//! `--prefetch` and `--claim-batch` make a tuned run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kyu_actors::{EngineEvent, NewJob, Prefetch, Store};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cli::BenchArgs;
use crate::cluster::Role;
use crate::config::Settings;
use crate::store::testdb::{DbGuard, scratch_mysql, scratch_postgres, sqlite_file};
use crate::store::{Backend, StoreOptions};

const W2_JOBS: usize = 2_000;
const W2_RATE: f64 = 200.0;

#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub drain_steady_per_s: f64,
    pub lat_p50_ms: f64,
    pub lat_p90_ms: f64,
    pub lat_p99_ms: f64,
    pub lat_max_ms: f64,
    pub rss_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct EngineBenchReport {
    pub system: &'static str,
    pub backend: &'static str,
    pub version: &'static str,
    pub n: u32,
    pub concurrency: usize,
    /// `--prefetch` or `--claim-batch` was given: not kyu's defaults, label it so.
    pub tuned: bool,
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub drain_steady_per_s: f64,
    pub lat_p50_ms: f64,
    pub lat_p90_ms: f64,
    pub lat_p99_ms: f64,
    pub lat_max_ms: f64,
    pub rss_mb: f64,
    pub runs: usize,
    /// [min, max] of each figure over the runs.
    pub range: HashMap<&'static str, [f64; 2]>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<EngineBenchReport> {
    // As `kyu serve` does: every metric the engine records is recorded.
    crate::telemetry::exporter::install();
    let mut runs = Vec::new();
    let mut backend = "sqlite";
    for i in 0..args.runs.max(1) {
        let (store, _guard) = open_scratch(args.database_url.as_deref()).await?;
        backend = store.backend();
        let r = one_run(store, args).await?;
        tracing::info!(run = i + 1, ?r, "bench run");
        runs.push(r);
    }
    let pick = |f: fn(&RunFigures) -> f64| -> (f64, [f64; 2]) {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], [v[0], v[v.len() - 1]])
    };
    let mut range = HashMap::new();
    let mut med = |name: &'static str, f: fn(&RunFigures) -> f64| {
        let (m, r) = pick(f);
        range.insert(name, r);
        m
    };
    Ok(EngineBenchReport {
        system: "kyu",
        backend,
        version: env!("CARGO_PKG_VERSION"),
        n: args.jobs,
        concurrency: args.concurrency,
        tuned: args.prefetch.is_some() || args.claim_batch.is_some(),
        enqueue_per_s: med("enqueue_per_s", |r| r.enqueue_per_s),
        drain_per_s: med("drain_per_s", |r| r.drain_per_s),
        drain_steady_per_s: med("drain_steady_per_s", |r| r.drain_steady_per_s),
        lat_p50_ms: med("lat_p50_ms", |r| r.lat_p50_ms),
        lat_p90_ms: med("lat_p90_ms", |r| r.lat_p90_ms),
        lat_p99_ms: med("lat_p99_ms", |r| r.lat_p99_ms),
        lat_max_ms: med("lat_max_ms", |r| r.lat_max_ms),
        rss_mb: med("rss_mb", |r| r.rss_mb),
        runs: runs.len(),
        range,
    })
}

pub(crate) async fn open_scratch(url: Option<&str>) -> anyhow::Result<(Arc<dyn Store>, DbGuard)> {
    let Some(url) = url.filter(|u| !u.starts_with("sqlite")) else {
        let (a, _b, guard) = sqlite_file(Arc::new(kyu_actors::SystemClock)).await;
        return Ok((Arc::new(a), guard));
    };
    let (db, guard) = match Backend::from_url(url)? {
        Backend::Postgres => scratch_postgres(url).await?,
        Backend::MySql => scratch_mysql(url).await?,
        Backend::Sqlite => unreachable!("handled above"),
    };
    let opts = StoreOptions {
        max_connections: 16,
        ..StoreOptions::default()
    };
    Ok((crate::store::open(&db, opts).await?, guard))
}

/// `kyu serve`'s default settings with a pool of `--concurrency` workers; prefetch and
/// claim size are kyu's defaults unless the run is tuned.
pub(crate) fn serve_settings(args: &BenchArgs) -> Settings {
    let d = Settings::default();
    let c = args.concurrency.max(1);
    Settings {
        database_url: args.database_url.clone().unwrap_or(d.database_url.clone()),
        worker_count: c,
        workers_max: d.workers_max.max(c),
        batch_size: args.claim_batch.unwrap_or(d.batch_size),
        prefetch: args.prefetch.map_or(d.prefetch, Prefetch::PerWorker),
        ..d
    }
}

async fn one_run(store: Arc<dyn Store>, args: &BenchArgs) -> anyhow::Result<RunFigures> {
    let n = args.jobs.max(1) as usize;
    // W1: enqueue.
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let batch: Vec<NewJob> = (start..(start + 1000).min(n))
            .map(|i| NewJob::new("noop", json!({ "i": i })))
            .collect();
        store.enqueue_many(batch).await?;
    }
    let enqueue_per_s = n as f64 / t.elapsed().as_secs_f64();

    // W1: drain.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let s = serve_settings(args);
    let store = crate::worker::guard_store(store);
    let engine =
        crate::worker::engine_builder(&s, store.clone(), crate::worker::handlers(&s)?, None)?
            .events(tx)
            .start()
            .await?;
    let node = crate::worker::start_engine_node(store.clone(), &s, Role::Worker, &engine).await;
    let mut first_start = None;
    let mut done = 0usize;
    while done < n {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Some(EngineEvent::Started(..))) if first_start.is_none() => {
                first_start = Some(Instant::now())
            }
            Ok(Some(EngineEvent::Acked { written, fenced })) => done += written - fenced,
            Ok(Some(_)) => {}
            _ => anyhow::bail!("drain stalled at {done} of {n} jobs"),
        }
    }
    let end = Instant::now();
    let drain_per_s = n as f64 / (end - t0).as_secs_f64();
    let drain_steady_per_s = n as f64 / (end - first_start.unwrap_or(t0)).as_secs_f64();

    // W2: latency at a steady 200 jobs/s, one enqueue at a time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<(Uuid, Instant)>();
    let collector = tokio::spawn(async move {
        let mut started: HashMap<Uuid, Instant> = HashMap::new();
        while started.len() < W2_JOBS {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(EngineEvent::Started(id, _))) => {
                    started.insert(id, Instant::now());
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let mut enq: HashMap<Uuid, Instant> = HashMap::new();
        while let Ok((id, at)) = lat_rx.try_recv() {
            enq.insert(id, at);
        }
        let mut lat: Vec<f64> = enq
            .iter()
            .filter_map(|(id, at)| {
                started
                    .get(id)
                    .map(|s| s.duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        lat
    });
    let w2_t0 = Instant::now();
    for k in 0..W2_JOBS {
        let due = w2_t0 + Duration::from_secs_f64(k as f64 / W2_RATE);
        tokio::time::sleep_until(due.into()).await;
        let job = NewJob::new("noop", json!({ "k": k }));
        let id = job.id;
        let at = Instant::now();
        engine.enqueue(job).await?;
        let _ = lat_tx.send((id, at));
    }
    drop(lat_tx);
    let lat = collector.await?;
    node.shutdown().await;
    engine.shutdown(Duration::from_secs(5)).await?;
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        round2(lat[rank - 1])
    };
    Ok(RunFigures {
        enqueue_per_s: round1(enqueue_per_s),
        drain_per_s: round1(drain_per_s),
        drain_steady_per_s: round1(drain_steady_per_s),
        lat_p50_ms: pct(0.50),
        lat_p90_ms: pct(0.90),
        lat_p99_ms: pct(0.99),
        lat_max_ms: pct(1.0),
        rss_mb: round1(peak_rss_mb()),
    })
}

/// VmHWM of this process, in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
