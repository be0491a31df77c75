//! `kyu bench --http` (docs/benchmarks.md): an in-process kyu (API + engine, SQLite unless
//! `--database-url`) on loopback, then over real HTTP: single creates and gets from
//! `--clients` concurrent clients (latency p50/p99 in ms), and batch enqueue through
//! `POST /api/v1/jobs/batch` (jobs/s). Three runs; medians and ranges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::server::{self, ServerOptions};
use crate::api::{self, AppState, Limits};
use crate::bench::engine::{open_scratch, peak_rss_mb, round2, serve_settings};
use crate::cli::BenchArgs;

const BATCH: usize = 1000;
const BATCH_CLIENTS: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct HttpRun {
    pub create_per_s: f64,
    pub create_p50_ms: f64,
    pub create_p99_ms: f64,
    pub get_per_s: f64,
    pub get_p50_ms: f64,
    pub get_p99_ms: f64,
    pub batch_enqueue_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct HttpBenchReport {
    pub system: &'static str,
    pub backend: &'static str,
    pub version: &'static str,
    pub n: u32,
    pub clients: usize,
    pub create_per_s: f64,
    pub create_p50_ms: f64,
    pub create_p99_ms: f64,
    pub get_per_s: f64,
    pub get_p50_ms: f64,
    pub get_p99_ms: f64,
    pub batch_enqueue_per_s: f64,
    pub rss_mb: f64,
    pub runs: usize,
    pub range: HashMap<&'static str, [f64; 2]>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<HttpBenchReport> {
    let mut runs = Vec::new();
    let mut backend = "sqlite";
    for i in 0..args.runs.max(1) {
        let (store, _guard) = open_scratch(args.database_url.as_deref()).await?;
        backend = store.backend();
        // The engine and store as `kyu serve` builds them (see the engine bench).
        let s = serve_settings(args);
        let store = crate::worker::guard_store(store);
        let handlers = crate::worker::handlers(&s)?;
        let engine = Arc::new(
            crate::worker::engine_builder(&s, store.clone(), handlers.clone(), None)?
                .start()
                .await?,
        );
        let state = AppState::new(
            store,
            Some(engine.clone()),
            Vec::new(),
            Limits {
                max_body_bytes: 8 << 20,
                max_payload_bytes: 64 << 10,
                max_batch: BATCH,
                default_max_retries: 3,
            },
            handlers,
            crate::wake::Publisher::none(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let opts = ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain: Duration::from_secs(5),
        };
        let srv = tokio::spawn(server::serve(listener, api::router(state), opts, async {
            let _ = stop_rx.await;
        }));
        let r = one_run(&base, args).await;
        let _ = stop_tx.send(());
        let _ = srv.await;
        engine.shutdown(Duration::from_secs(5)).await?;
        let r = r?;
        tracing::info!(run = i + 1, ?r, "http bench run");
        runs.push(r);
    }
    let mut range = HashMap::new();
    let mut med = |name: &'static str, f: fn(&HttpRun) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        range.insert(name, [v[0], v[v.len() - 1]]);
        v[v.len() / 2]
    };
    Ok(HttpBenchReport {
        system: "kyu",
        backend,
        version: env!("CARGO_PKG_VERSION"),
        n: args.jobs,
        clients: args.clients,
        create_per_s: med("create_per_s", |r| r.create_per_s),
        create_p50_ms: med("create_p50_ms", |r| r.create_p50_ms),
        create_p99_ms: med("create_p99_ms", |r| r.create_p99_ms),
        get_per_s: med("get_per_s", |r| r.get_per_s),
        get_p50_ms: med("get_p50_ms", |r| r.get_p50_ms),
        get_p99_ms: med("get_p99_ms", |r| r.get_p99_ms),
        batch_enqueue_per_s: med("batch_enqueue_per_s", |r| r.batch_enqueue_per_s),
        rss_mb: (peak_rss_mb() * 10.0).round() / 10.0,
        runs: runs.len(),
        range,
    })
}

async fn one_run(base: &str, args: &BenchArgs) -> anyhow::Result<HttpRun> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let n = args.jobs as usize;
    let clients = args.clients.max(1);

    // Single creates: `clients` tasks share n requests.
    let url = format!("{base}/api/v1/jobs");
    let (create_lat, create_s, ids) = fan_out(n, clients, |_| {
        let req = client
            .post(&url)
            .json(&json!({"type": "noop", "payload": {}}));
        async move {
            let res = req.send().await?.error_for_status()?;
            let body: serde_json::Value = res.json().await?;
            Ok(body["job_id"].as_str().unwrap_or_default().to_owned())
        }
    })
    .await?;
    let ids = Arc::new(ids);

    // Gets of the jobs just created.
    let (get_lat, get_s, _) = fan_out(n, clients, |i| {
        let req = client.get(format!("{base}/api/v1/jobs/{}", ids[i % ids.len()]));
        async move {
            req.send().await?.error_for_status()?;
            Ok(String::new())
        }
    })
    .await?;

    // Batches of 1,000 through a few clients.
    let batches = n.div_ceil(BATCH);
    let body = Arc::new(json!({
        "jobs": (0..BATCH).map(|_| json!({"type": "noop", "payload": {}})).collect::<Vec<_>>()
    }));
    let url = format!("{base}/api/v1/jobs/batch");
    let (_, batch_s, _) = fan_out(batches, BATCH_CLIENTS, |_| {
        let req = client.post(&url).json(&*body);
        async move {
            req.send().await?.error_for_status()?;
            Ok(String::new())
        }
    })
    .await?;

    Ok(HttpRun {
        create_per_s: (n as f64 / create_s).round(),
        create_p50_ms: round2(pct(&create_lat, 0.50)),
        create_p99_ms: round2(pct(&create_lat, 0.99)),
        get_per_s: (n as f64 / get_s).round(),
        get_p50_ms: round2(pct(&get_lat, 0.50)),
        get_p99_ms: round2(pct(&get_lat, 0.99)),
        batch_enqueue_per_s: ((batches * BATCH) as f64 / batch_s).round(),
    })
}

/// Runs `total` requests from `workers` concurrent tasks; returns each request's
/// latency in ms (sorted), the wall time in s, and what each request returned.
async fn fan_out<F, Fut>(
    total: usize,
    workers: usize,
    make: F,
) -> anyhow::Result<(Vec<f64>, f64, Vec<String>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>> + Send + 'static,
{
    // Requests are built here (they borrow the client) and queued; each task takes the
    // next and times it.
    let (tx, rx) = tokio::sync::mpsc::channel(total.max(1));
    for i in 0..total {
        let _ = tx.send(make(i)).await;
    }
    drop(tx);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some(fut) = next else { break };
                let t = Instant::now();
                let r = fut.await?;
                out.push((t.elapsed().as_secs_f64() * 1e3, r));
            }
            anyhow::Ok(out)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut results = Vec::with_capacity(total);
    for t in tasks {
        for (l, r) in t.await?? {
            lat.push(l);
            results.push(r);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok((lat, wall, results))
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
