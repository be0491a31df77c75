//! `kyu bench --claim`: what one claim of 100 costs beside a backlog (issue 22). For
//! each `--backlog` size, a scratch database gets that many queued no-op jobs, all past
//! the aging bound (plus a few fresh), written by SQL (`store::claim_plan`); then
//! `--samples` claims of 100 through the store, each timed, the claimed jobs put back
//! (untimed) so the backlog keeps its size. p50/p99 in ms per size.

use std::time::Instant;

use serde::Serialize;

use crate::bench::store::{Finisher, open_scratch};
use crate::cli::BenchArgs;
use crate::store::claim_plan::{self, Backlog};

const LIMIT: u32 = 100;
const REQUEUE: &str = "UPDATE jobs SET status = 'queued', attempts = 0, lease_owner = NULL, \
     lease_expires_at = NULL, started_at = NULL WHERE status = 'running'";

#[derive(Debug, Serialize)]
pub struct ClaimFigures {
    pub rows: u64,
    pub fill_s: f64,
    pub claim_p50_ms: f64,
    pub claim_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ClaimBenchReport {
    pub system: &'static str,
    pub bench: &'static str,
    pub backend: &'static str,
    pub version: &'static str,
    pub limit: u32,
    pub samples: usize,
    pub sizes: Vec<ClaimFigures>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<ClaimBenchReport> {
    let mut sizes = Vec::new();
    let mut backend = "sqlite";
    for &rows in &args.backlog {
        let (store, f, _guard) = open_scratch(args.database_url.as_deref()).await?;
        backend = store.backend();
        let b = Backlog {
            aged: rows,
            fresh: 5,
            now: claim_plan::now_ms(),
        };
        let t = Instant::now();
        match &f {
            Finisher::Sqlite(p) => claim_plan::fill_sqlite(p, b).await?,
            Finisher::Postgres(p) => claim_plan::fill_postgres(p, b).await?,
            Finisher::MySql(p) => claim_plan::fill_mysql(p, b).await?,
        }
        let fill_s = t.elapsed().as_secs_f64();
        let mut lat = Vec::with_capacity(args.samples);
        let params = claim_plan::params(LIMIT);
        for _ in 0..args.samples.max(1) {
            let t = Instant::now();
            let jobs = store.claim(&params).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(!jobs.is_empty(), "the backlog ran dry");
            requeue(&f).await?;
        }
        lat.sort_by(f64::total_cmp);
        let fig = ClaimFigures {
            rows,
            fill_s: round2(fill_s),
            claim_p50_ms: round2(pct(&lat, 0.50)),
            claim_p99_ms: round2(pct(&lat, 0.99)),
        };
        tracing::info!(?fig, backend, "claim bench size");
        sizes.push(fig);
    }
    Ok(ClaimBenchReport {
        system: "kyu",
        bench: "claim",
        backend,
        version: env!("CARGO_PKG_VERSION"),
        limit: LIMIT,
        samples: args.samples,
        sizes,
    })
}

async fn requeue(f: &Finisher) -> Result<(), sqlx::Error> {
    match f {
        Finisher::Sqlite(p) => sqlx::query(REQUEUE).execute(p).await.map(drop),
        Finisher::Postgres(p) => sqlx::query(REQUEUE).execute(p).await.map(drop),
        Finisher::MySql(p) => sqlx::query(REQUEUE).execute(p).await.map(drop),
    }
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
