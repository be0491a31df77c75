//! `kyu worker`: the engine alone against the configured database, until SIGTERM or
//! SIGINT (graceful: running jobs get the grace period, the rest are given back).

use std::sync::Arc;

use anyhow::Context;
use kyu_actors::rate_limit::Limit;
use kyu_actors::{
    Engine, EngineBuilder, EngineConfig, HandlerRegistry, Reading, ResourceProbe, Store,
};

use crate::chaos::handler::LedgerJob;
use crate::chaos::ledger::Ledger;
use crate::cluster::Role;
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
        prefetch: s.prefetch,
        poll_interval: s.poll_interval,
        // Waiting remote fetches are woken by wake-ups; only several nodes on MariaDB
        // without Redis have none (SQLite runs in one process, PostgreSQL has NOTIFY).
        fetch_on_poll: s.redis_url.is_none()
            && matches!(
                crate::store::Backend::from_url(&s.database_url),
                Ok(crate::store::Backend::MySql)
            ),
        lease: s.lease,
        rescue_interval: s.rescue_interval,
        retention: s.retention,
        rate_limit_per_minute: s.rate_limit_per_minute,
        rate_limit_burst: s.rate_limit_burst,
        node_dead_after: Some(s.node_dead_after),
        node_retention: s.node_retention,
        cron_catch_up: s.cron_catch_up,
        ..EngineConfig::default()
    }
}

/// Opens (and migrates) the store `s` names, counted for metrics, behind the circuit
/// breaker that answers at once while it is down or full.
pub async fn open_store(s: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let opts = StoreOptions {
        fair_share: s.fair_share.clone(),
        ..StoreOptions::default()
    };
    let mut store = store::open(&s.database_url, opts).await?;
    if let Some(fp) = s.failpoints {
        store = fp.wrap(store);
    }
    Ok(guard_store(store))
}

/// `store` counted for metrics, behind the circuit breaker: the store every engine and
/// API of a process uses (`kyu bench` too, so it measures what `kyu serve` does).
pub fn guard_store(store: Arc<dyn Store>) -> Arc<dyn Store> {
    store::circuit::CircuitStore::wrap(store::metered::MeteredStore::wrap(store))
}

/// The job types this process runs: the built-ins, the seed's jobs (`src/handlers`) and
/// those `s` switches on.
pub fn handlers(s: &Settings) -> anyhow::Result<HandlerRegistry> {
    let mut r = crate::handlers::registry(s)?;
    if let Some(path) = &s.ledger_path {
        r.insert("ledger", Arc::new(LedgerJob::new(Ledger::open(path)?)));
    }
    Ok(r)
}

/// The Redis link `REDIS_URL` asks for (`None`: no Redis). Open it once per process:
/// it is the one source of `kyu_redis_up`.
pub fn redis_link(s: &Settings) -> anyhow::Result<Option<Arc<crate::redis::Link>>> {
    s.redis_url
        .as_deref()
        .map(|url| {
            crate::redis::Link::open(url, &s.redis_prefix)
                .context("bad REDIS_URL (expected redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,HOST:PORT)")
        })
        .transpose()
}

/// Starts the engine `s` describes on `store`, running `handlers` (built once per
/// process by [`handlers`]); with a Redis link, its rate-limit buckets are shared with
/// the other nodes (local ones while Redis is away).
pub async fn start_engine(
    s: &Settings,
    store: Arc<dyn Store>,
    handlers: HandlerRegistry,
    redis: Option<&Arc<crate::redis::Link>>,
) -> anyhow::Result<Engine> {
    Ok(engine_builder(s, store, handlers, redis)?.start().await?)
}

/// The engine [`start_engine`] starts, not yet started (`kyu bench` adds its event
/// sink to it).
pub fn engine_builder(
    s: &Settings,
    store: Arc<dyn Store>,
    handlers: HandlerRegistry,
    redis: Option<&Arc<crate::redis::Link>>,
) -> anyhow::Result<EngineBuilder> {
    let cron = crate::cluster::cron_entries(s, &handlers)?;
    // Maintenance (rescue, pruning, cron) runs only while this node is elected leader:
    // the caller starts the node agent with `engine.leadership()`.
    let mut b = Engine::builder()
        .store(store)
        .handlers(handlers)
        .config(engine_config(s))
        .leadership(kyu_actors::Leadership::elected())
        .cron(cron);
    for (provider, limit) in &s.provider_limits {
        b = b.provider_limit(provider.clone(), *limit);
    }
    if let Some(link) = redis {
        let default = Limit {
            per_minute: s.rate_limit_per_minute,
            burst: s.rate_limit_burst,
        };
        b = b.rate_limiter(Arc::new(crate::redis::RedisRateLimiter::new(
            link.clone(),
            default,
            s.provider_limits.clone().into_iter().collect(),
        )));
    }
    if s.autoscale {
        b = b.probe(Arc::new(Probe(SystemProbe::new()?)));
    }
    Ok(b)
}

/// Runs until a signal, then stops gracefully.
pub async fn run(s: Settings) -> anyhow::Result<()> {
    let redis = redis_link(&s)?;
    let store = open_store(&s).await?;
    // Before the engine, so its first readings are recorded; the listener stops when
    // this sender says so or is dropped.
    let (stop_metrics, mut stopped) = tokio::sync::watch::channel(());
    if let Some(addr) = s.metrics_bind {
        let until = async move {
            let _ = stopped.changed().await;
        };
        crate::telemetry::endpoint::start(addr, &s, store.backend(), until).await?;
    }
    let engine = Arc::new(start_engine(&s, store.clone(), handlers(&s)?, redis.as_ref()).await?);
    let node = start_engine_node(store, &s, Role::Worker, &engine).await;
    // Jobs committed on other nodes wake this engine at once (polling stays the fallback).
    let _listening = crate::wake::WakeBus::from_settings(&s)?.wake_engine(&engine)?;
    tokio::select! {
        _ = shutdown_signal() => {
            // Leadership moves at once; the node's jobs are drained below, not rescued.
            node.shutdown().await;
            tracing::info!(grace_ms = s.shutdown_grace.as_millis() as u64, "stopping: finishing running jobs");
            engine.shutdown(s.shutdown_grace).await?;
            let _ = stop_metrics.send(());
            tracing::info!("stopped");
            Ok(())
        }
        err = engine.stopped() => Err(err.into()),
    }
}

/// Registers an engine's process as a node (id = the engine's lease owner) that stands
/// for leader.
pub async fn start_engine_node(
    store: Arc<dyn Store>,
    s: &Settings,
    role: Role,
    engine: &Engine,
) -> kyu_actors::NodeAgent {
    crate::cluster::start_node(
        store,
        s,
        role,
        engine.owner().to_owned(),
        engine_config(s).workers,
        Some(engine.leadership()),
    )
    .await
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
