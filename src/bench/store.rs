//! `kyu bench --store`: the store's own ceiling, which the engine's drain rate is
//! measured against. Batch enqueue rows/s; claim+ack jobs/s with batches of 1 and 100;
//! then the same with many finished jobs in the table (cost per job must stay flat).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kyu_actors::store::{Ack, ClaimParams, Outcome};
use kyu_actors::{NewJob, Store, SystemClock};
use serde::Serialize;
use serde_json::json;

use crate::cli::BenchArgs;
use crate::store::testdb::{DbGuard, scratch_mysql, scratch_postgres, sqlite_file};
use crate::store::{Backend, MySqlStore, PgStore};

/// One JSON line of results.
#[derive(Debug, Serialize)]
pub struct StoreBenchReport {
    pub system: &'static str,
    pub bench: &'static str,
    pub backend: &'static str,
    pub version: &'static str,
    pub n: u32,
    pub empty: Figures,
    pub finished_rows: u32,
    pub large: Option<Figures>,
    /// large.claim_ack_100_per_s ÷ empty.claim_ack_100_per_s.
    pub large_over_empty_100: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub enqueue_per_s: f64,
    pub claim_ack_1_per_s: f64,
    pub claim_ack_100_per_s: f64,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<StoreBenchReport> {
    let (store, finisher, _guard) = open_scratch(args.database_url.as_deref()).await?;
    let n = args.jobs.max(100);
    let empty = measure(store.as_ref(), n).await?;
    let mut large = None;
    if args.finished > 0 {
        fill_finished(store.as_ref(), &finisher, args.finished).await?;
        large = Some(measure(store.as_ref(), n).await?);
    }
    Ok(StoreBenchReport {
        system: "kyu",
        bench: "store",
        backend: store.backend(),
        version: env!("CARGO_PKG_VERSION"),
        n,
        large_over_empty_100: large
            .as_ref()
            .map(|l| round(l.claim_ack_100_per_s / empty.claim_ack_100_per_s.max(1.0))),
        empty,
        finished_rows: args.finished,
        large,
    })
}

/// Marks every queued job completed, by raw SQL (same text on all three backends).
#[derive(Clone)]
pub(crate) enum Finisher {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

const FINISH_ALL: &str = "UPDATE jobs SET status = 'completed', progress = 100, \
    finished_at = created_at, result = 'null' WHERE status = 'queued'";

impl Finisher {
    async fn finish_all(&self) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Finisher::Sqlite(p) => sqlx::query(FINISH_ALL).execute(p).await?.rows_affected(),
            Finisher::Postgres(p) => {
                let n = sqlx::query(FINISH_ALL).execute(p).await?.rows_affected();
                sqlx::query("VACUUM ANALYZE jobs").execute(p).await?;
                n
            }
            Finisher::MySql(p) => {
                let n = sqlx::query(FINISH_ALL).execute(p).await?.rows_affected();
                // Let InnoDB purge the old index entries first, as PostgreSQL's VACUUM
                // does: until then every claim steps over a million delete-marked rows.
                for _ in 0..600 {
                    let backlog: i64 = sqlx::query_scalar(
                        "SELECT count FROM information_schema.INNODB_METRICS \
                         WHERE name = 'trx_rseg_history_len'",
                    )
                    .fetch_optional(p)
                    .await?
                    .unwrap_or(0);
                    if backlog < 1000 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                n
            }
        })
    }
}

pub(crate) async fn open_scratch(
    url: Option<&str>,
) -> anyhow::Result<(Arc<dyn Store>, Finisher, DbGuard)> {
    let Some(url) = url.filter(|u| !u.starts_with("sqlite")) else {
        let (a, _b, guard) = sqlite_file(Arc::new(SystemClock)).await;
        let f = Finisher::Sqlite(a.pool().clone());
        return Ok((Arc::new(a), f, guard));
    };
    match Backend::from_url(url)? {
        Backend::Postgres => {
            let (db, guard) = scratch_postgres(url).await?;
            let s = PgStore::connect(&db, 10, None).await?;
            s.migrate().await?;
            let f = Finisher::Postgres(s.pool().clone());
            Ok((Arc::new(s), f, guard))
        }
        Backend::MySql => {
            let (db, guard) = scratch_mysql(url).await?;
            let s = MySqlStore::connect(&db, 10, None).await?;
            s.migrate().await?;
            let f = Finisher::MySql(s.pool().clone());
            Ok((Arc::new(s), f, guard))
        }
        Backend::Sqlite => unreachable!("handled above"),
    }
}

pub(crate) async fn fill_finished(
    store: &dyn Store,
    f: &Finisher,
    rows: u32,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut left = rows;
    while left > 0 {
        let take = left.min(5_000);
        store.enqueue_many(batch(take)).await?;
        left -= take;
    }
    let finished = f.finish_all().await?;
    tracing::info!(
        finished,
        secs = started.elapsed().as_secs_f64(),
        "filled the table"
    );
    Ok(())
}

fn batch(n: u32) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect()
}

async fn measure(store: &dyn Store, n: u32) -> anyhow::Result<Figures> {
    // Batch enqueue, 1,000 per call.
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let take = left.min(1000);
        store.enqueue_many(batch(take)).await?;
        left -= take;
    }
    let enqueue_per_s = rate(n, t.elapsed());

    // Claim+ack one at a time (a bounded sample: it is the slow path).
    let singles = (n / 10).clamp(100, 2_000);
    let t = Instant::now();
    let done1 = claim_ack(store, 1, singles).await?;
    let claim_ack_1_per_s = rate(done1, t.elapsed());

    // Claim+ack 100 at a time, the rest of the jobs.
    let t = Instant::now();
    let done100 = claim_ack(store, 100, u32::MAX).await?;
    let claim_ack_100_per_s = rate(done100, t.elapsed());
    Ok(Figures {
        enqueue_per_s,
        claim_ack_1_per_s,
        claim_ack_100_per_s,
    })
}

async fn claim_ack(store: &dyn Store, batch: u32, max: u32) -> anyhow::Result<u32> {
    let params = ClaimParams {
        owner: "bench".into(),
        limit: batch,
        lease: Duration::from_secs(60),
        aged_before: None,
        types: vec!["noop".into()],
        queues: None,
    };
    let mut done = 0;
    while done < max {
        let jobs = store.claim(&params).await?;
        if jobs.is_empty() {
            break;
        }
        let acks: Vec<Ack> = jobs
            .iter()
            .filter_map(|j| j.lease())
            .map(|lease| Ack {
                lease,
                outcome: Outcome::Completed {
                    result: json!(null),
                },
            })
            .collect();
        store.ack(&acks).await?;
        done += jobs.len() as u32;
    }
    Ok(done)
}

fn rate(n: u32, d: Duration) -> f64 {
    round(f64::from(n) / d.as_secs_f64().max(1e-9))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
