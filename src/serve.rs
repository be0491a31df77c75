//! `kyu serve` (API and engine in one process) and `kyu api` (API only). Refuses to
//! listen beyond loopback without tokens; on SIGTERM stops accepting, lets open requests
//! finish, then stops the engine gracefully. Installs the metrics recorder served at
//! `/metrics` and starts the samplers behind its gauges (queues, Redis).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use kyu_actors::{Engine, EngineError};
use tokio::net::TcpListener;

use crate::api::server::{self, ServerOptions};
use crate::api::{self, AppState, Limits};
use crate::cluster::Role;
use crate::config::Settings;
use crate::worker::{
    handlers, open_store, redis_link, shutdown_signal, start_engine, start_engine_node,
};

/// Runs the API, and the engine too when `with_engine` and `JOB_WORKER_ENABLED` say so.
pub async fn run(s: Settings, with_engine: bool) -> anyhow::Result<()> {
    if s.tokens.is_empty() && !s.bind.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: no API tokens are configured (KYU_API_TOKENS), so \
             anyone who can reach this address could read and create jobs. Listen on \
             127.0.0.1, or create tokens with `kyu token NAME --role admin` and set \
             KYU_API_TOKENS",
            s.bind
        );
    }
    // Bind before anything else: a busy port must fail here, before the database is
    // created or migrated, a node registered or an engine started.
    let listener = TcpListener::bind(s.bind).await.with_context(|| {
        format!(
            "cannot listen on {} (choose another with --bind or KYU_BIND)",
            s.bind
        )
    })?;
    let metrics_on = crate::telemetry::exporter::install().is_some();
    let store = open_store(&s).await?;
    let mut samplers = Vec::new();
    if metrics_on {
        crate::telemetry::exporter::build_info(store.backend());
        samplers.push(crate::telemetry::sampler::spawn(
            store.clone(),
            s.metrics_sample_interval,
        ));
    }
    // Its keeper publishes kyu_redis_up; the engine shares rate limits through it.
    let redis = redis_link(&s)?;
    // One registry for the engine and the API (payload checks, type defaults): its
    // provider clients and their concurrency cap exist once per process.
    let handlers = handlers(&s)?;
    let engine = if with_engine && s.worker_enabled {
        Some(Arc::new(
            start_engine(&s, store.clone(), handlers.clone(), redis.as_ref()).await?,
        ))
    } else {
        None
    };
    // The node registry: an engine node stands for leader (it runs maintenance and
    // cron); an API-only node registers under a fresh id and never leads.
    let role = if with_engine { Role::Serve } else { Role::Api };
    let node = match &engine {
        Some(e) => start_engine_node(store.clone(), &s, role, e).await,
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            crate::cluster::start_node(store.clone(), &s, role, id, 0, None).await
        }
    };
    // Wake-ups across nodes: this API announces what it commits; the engine (if any)
    // hears the other nodes' announcements. Dropped (stopped) when `run` returns.
    let bus = crate::wake::WakeBus::from_settings(&s)?;
    let _listening = match &engine {
        Some(e) => bus.wake_engine(e)?,
        None => None,
    };
    let state = AppState::new(
        store,
        engine.clone(),
        s.tokens.clone(),
        Limits {
            max_body_bytes: s.max_body_bytes,
            max_payload_bytes: s.max_payload_bytes,
            max_batch: s.max_batch,
            default_max_retries: s.max_retries,
        },
        handlers,
        bus.publisher()?,
    )
    .with_node_dead_after(s.node_dead_after)
    .with_flow(s.flow.clone(), s.tiers.clone())
    .with_rate_limit(api::rate_limit::ApiRateLimiter::new(
        s.api_rate_limit.clone(),
        redis.clone(),
    ));
    // Remote workers are nodes too: their rows keep them alive for every node.
    state
        .remote
        .spawn_beats(state.store.clone(), s.node_dead_after);
    let addr = listener.local_addr()?;
    tracing::info!(
        engine = engine.is_some(),
        auth = !s.tokens.is_empty(),
        "kyu listening on http://{addr}"
    );
    let died: Arc<Mutex<Option<EngineError>>> = Arc::default();
    let stop = {
        let died = died.clone();
        let engine = engine.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("stopping: draining requests"),
                e = engine_stopped(engine) => {
                    if let Ok(mut d) = died.lock() {
                        *d = Some(e);
                    }
                }
            }
        }
    };
    let opts = ServerOptions {
        header_read_timeout: s.header_read_timeout,
        max_connections: s.max_connections,
        drain: s.shutdown_grace,
    };
    server::serve(listener, api::router(state), opts, stop).await;
    // Leadership moves at once; this node's jobs are drained below, not rescued.
    node.shutdown().await;
    for t in samplers {
        t.abort();
    }
    if let Some(e) = died.lock().ok().and_then(|mut d| d.take()) {
        return Err(e.into());
    }
    if let Some(engine) = engine {
        tracing::info!(
            grace_ms = s.shutdown_grace.as_millis() as u64,
            "stopping: finishing running jobs"
        );
        engine.shutdown(s.shutdown_grace).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn engine_stopped(engine: Option<Arc<Engine>>) -> EngineError {
    match engine {
        Some(e) => e.stopped().await,
        None => std::future::pending().await,
    }
}
