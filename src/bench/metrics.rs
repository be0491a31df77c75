//! `kyu bench --metrics`: what observability costs with a large table. Fills a scratch
//! store with `--finished` completed jobs plus `--jobs` live ones over 10 queues, then
//! times the queue sampler's query (`Store::live_counts`), shows the database's plan
//! for it, and times rendering `/metrics` with the recorder holding a realistic set of
//! series. Rendering never touches the database, so it should not move with the table.

use std::time::{Duration, Instant};

use chrono::Utc;
use kyu_actors::telemetry;
use kyu_actors::{NewJob, Store};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::store::{Finisher, fill_finished, open_scratch};
use crate::cli::BenchArgs;
use crate::telemetry::{exporter, sampler::QueueGauges};

/// One JSON line of results.
#[derive(Debug, Serialize)]
pub struct MetricsBenchReport {
    pub system: &'static str,
    pub bench: &'static str,
    pub backend: &'static str,
    pub finished_rows: u32,
    pub live_rows: u32,
    /// `Store::live_counts`, median and max of `runs` calls, in ms.
    pub sample_ms_median: f64,
    pub sample_ms_max: f64,
    /// `PrometheusHandle::render`, median and max, in ms; and the scrape's size.
    pub render_ms_median: f64,
    pub render_ms_max: f64,
    pub render_bytes: usize,
    pub series: usize,
    /// The database's plan for the sampler's query.
    pub plan: Vec<String>,
}

const QUEUES: u32 = 10;
const RUNS: usize = 50;

pub async fn run(args: &BenchArgs) -> anyhow::Result<MetricsBenchReport> {
    let (store, finisher, _guard) = open_scratch(args.database_url.as_deref()).await?;
    if args.finished > 0 {
        fill_finished(store.as_ref(), &finisher, args.finished).await?;
    }
    let live = args.jobs;
    fill_live(store.as_ref(), live).await?;
    let _ = store.live_counts().await?; // warm the cache, as a running sampler has

    let mut sample = Vec::with_capacity(RUNS);
    let mut counts = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        counts = store.live_counts().await?;
        sample.push(t.elapsed());
    }
    let plan = explain(&finisher).await?;

    let Some(handle) = exporter::install() else {
        anyhow::bail!("another metrics recorder is installed in this process");
    };
    exporter::build_info(store.backend());
    QueueGauges::default().publish(&counts, Utc::now());
    fake_traffic();
    let mut render = Vec::with_capacity(RUNS);
    let mut text = String::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        text = handle.render();
        render.push(t.elapsed());
    }
    Ok(MetricsBenchReport {
        system: "kyu",
        bench: "metrics",
        backend: store.backend(),
        finished_rows: args.finished,
        live_rows: live,
        sample_ms_median: ms(median(&mut sample)),
        sample_ms_max: ms(sample.iter().copied().max().unwrap_or_default()),
        render_ms_median: ms(median(&mut render)),
        render_ms_max: ms(render.iter().copied().max().unwrap_or_default()),
        render_bytes: text.len(),
        series: text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
        plan,
    })
}

/// `n` live jobs over [`QUEUES`] queues: nine in ten queued, the rest an hour away.
async fn fill_live(store: &dyn Store, n: u32) -> anyhow::Result<()> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| {
            let j = NewJob::new("noop", json!({ "i": i })).queue(format!("q{}", i % QUEUES));
            if i % 10 == 9 {
                j.delay(Duration::from_secs(3600))
            } else {
                j
            }
        })
        .collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk.to_vec()).await?;
    }
    Ok(())
}

/// The series a busy node holds: per queue and type, every job metric; a dozen routes.
fn fake_traffic() {
    for q in 0..QUEUES {
        for t in ["noop", "echo", "delay_print", "fetch", "summarize"] {
            let (queue, ty) = (format!("q{q}"), t.to_owned());
            metrics::counter!(telemetry::JOBS_ENQUEUED, "queue" => queue.clone(), "type" => ty.clone()).increment(100);
            for outcome in ["completed", "failed", "canceled"] {
                metrics::counter!(telemetry::JOBS_FINISHED,
                    "queue" => queue.clone(), "type" => ty.clone(), "outcome" => outcome)
                .increment(10);
            }
            for kind in ["retryable", "timeout", "rate_limit"] {
                metrics::counter!(telemetry::JOB_ERRORS, "queue" => queue.clone(),
                    "type" => ty.clone(), "kind" => kind, "disposition" => "retry")
                .increment(1);
            }
            for v in [0.002, 0.04, 1.5, 45.0] {
                metrics::histogram!(telemetry::JOB_RUN_SECONDS, "queue" => queue.clone(), "type" => ty.clone()).record(v);
                metrics::histogram!(telemetry::JOB_WAIT_SECONDS, "queue" => queue.clone(), "type" => ty.clone()).record(v);
            }
        }
    }
    for route in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/batch",
        "/metrics",
    ] {
        for status in ["200", "201", "400", "404"] {
            metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route, "method" => "GET", "status" => status).increment(5);
        }
        metrics::histogram!(telemetry::HTTP_DURATION, "route" => route, "method" => "GET")
            .record(0.003);
    }
}

/// The plan of the sampler's query, one line per step.
async fn explain(f: &Finisher) -> anyhow::Result<Vec<String>> {
    Ok(match f {
        Finisher::Sqlite(p) => {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                crate::store::sqlite::LIVE_COUNTS_SQL
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
                .collect()
        }
        Finisher::Postgres(p) => {
            let sql = format!(
                "EXPLAIN (ANALYZE, BUFFERS) {}",
                crate::store::postgres::LIVE_COUNTS_SQL
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                .collect()
        }
        Finisher::MySql(p) => {
            let sql = format!("EXPLAIN {}", crate::store::mysql::LIVE_COUNTS_SQL);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    let s = |c: &str| {
                        r.try_get::<Option<String>, _>(c)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    };
                    let rows = r.try_get::<Option<i64>, _>("rows").ok().flatten();
                    format!(
                        "type={} key={} rows={:?} extra={}",
                        s("type"),
                        s("key"),
                        rows,
                        s("Extra")
                    )
                })
                .collect()
        }
    })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
