//! `kyu worker`: the engine alone against the configured database, until SIGTERM or
//! SIGINT (graceful: running jobs get the grace period, the rest are given back).

use std::sync::Arc;

use kyu_actors::{Engine, EngineConfig, HandlerRegistry, Reading, ResourceProbe, Store};

use crate::chaos::handler::LedgerJob;
use crate::chaos::ledger::Ledger;
use crate::config::Settings;
use crate::probe::SystemProbe;
use crate::store::{self, StoreOptions};

/// The sysinfo probe as the autoscaler's seam.
struct Probe(SystemProbe);

impl ResourceProbe for Probe {
    fn read(&self) -> Reading {
        let r = self.0.read();
        Reading {
            cpu_percent: r.cpu_percent,
            memory_percent: r.memory_percent,
        }
    }
}

/// The engine settings `s` asks for.
pub fn engine_config(s: &Settings) -> EngineConfig {
    EngineConfig {
        workers: s.worker_count.clamp(s.workers_min, s.workers_max),
        min_workers: s.workers_min,
        max_workers: s.workers_max,
        autoscale: s.autoscale,
        claim_batch: s.batch_size,
        poll_interval: s.poll_interval,
        lease: s.lease,
        rescue_interval: s.rescue_interval,
        retention: s.retention,
        rate_limit_per_minute: s.rate_limit_per_minute,
        rate_limit_burst: s.rate_limit_burst,
        ..EngineConfig::default()
    }
}

/// Opens (and migrates) the store `s` names, counted for metrics.
pub async fn open_store(s: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let mut store = store::open(&s.database_url, StoreOptions::default()).await?;
    if let Some(fp) = s.failpoints {
        store = fp.wrap(store);
    }
    Ok(store::metered::MeteredStore::wrap(store))
}

/// The job types this process runs: the built-ins and those `s` switches on.
pub fn handlers(s: &Settings) -> anyhow::Result<HandlerRegistry> {
    let mut r = HandlerRegistry::with_builtins();
    if let Some(path) = &s.ledger_path {
        r.insert("ledger", Arc::new(LedgerJob::new(Ledger::open(path)?)));
    }
    Ok(r)
}

/// Starts the engine `s` describes on `store`.
pub async fn start_engine(s: &Settings, store: Arc<dyn Store>) -> anyhow::Result<Engine> {
    let mut b = Engine::builder()
        .store(store)
        .handlers(handlers(s)?)
        .config(engine_config(s));
    if s.autoscale {
        b = b.probe(Arc::new(Probe(SystemProbe::new()?)));
    }
    Ok(b.start().await?)
}

/// Runs until a signal, then stops gracefully.
pub async fn run(s: Settings) -> anyhow::Result<()> {
    let engine = start_engine(&s, open_store(&s).await?).await?;
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!(grace_ms = s.shutdown_grace.as_millis() as u64, "stopping: finishing running jobs");
            engine.shutdown(s.shutdown_grace).await?;
            tracing::info!("stopped");
            Ok(())
        }
        err = engine.stopped() => Err(err.into()),
    }
}

/// SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
