//! Scheduler: wakes the dispatcher when a delayed job falls due (on every node), and,
//! only while this node is the leader ([`crate::cluster`]): rescues jobs whose lease
//! expired or whose node died every rescue tick, prunes finished jobs (and rows of long
//! dead nodes), enqueues due cron ticks and lets the store tidy its claim indexes
//! ([`crate::Store::tidy_claim_indexes`]). It never claims; the dispatcher does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::dispatcher::DispatcherMsg;
use super::{Counters, Deps};
use crate::cluster::CronRunner;
use crate::events::EngineEvent;
use crate::telemetry;

pub struct Scheduler;

pub enum SchedulerMsg {
    Tick,
    Prune,
    Cron,
    Tidy,
    SetDispatcher(ActorRef<DispatcherMsg>),
}

pub struct SchedulerState {
    deps: Arc<Deps>,
    dispatcher: ActorRef<DispatcherMsg>,
    cron: CronRunner,
    /// A tidy of the claim indexes is under way (it runs beside the ticks: a vacuum
    /// of a large table takes seconds, and rescues must not wait for it).
    tidying: Arc<AtomicBool>,
}

/// How often the leader asks the store whether its claim indexes need tidying.
const TIDY_INTERVAL: Duration = Duration::from_secs(1);

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = (Arc<Deps>, ActorRef<DispatcherMsg>);

    async fn pre_start(
        &self,
        me: ActorRef<SchedulerMsg>,
        (deps, dispatcher): (Arc<Deps>, ActorRef<DispatcherMsg>),
    ) -> Result<SchedulerState, ActorProcessingErr> {
        me.send_interval(deps.config.rescue_interval, || SchedulerMsg::Tick);
        me.send_interval(deps.config.prune_interval, || SchedulerMsg::Prune);
        me.send_interval(TIDY_INTERVAL, || SchedulerMsg::Tidy);
        if !deps.cron.is_empty() {
            me.send_interval(deps.config.cron_interval, || SchedulerMsg::Cron);
        }
        Ok(SchedulerState {
            deps,
            dispatcher,
            cron: CronRunner::default(),
            tidying: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        st: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick if st.deps.leadership.is_leader() => {
                if let Some(dead_after) = st.deps.config.node_dead_after {
                    match st.deps.store.rescue_dead_owners(dead_after, 1000).await {
                        Ok(ids) if !ids.is_empty() => {
                            tracing::warn!(
                                rescued = ids.len(),
                                "rescued jobs of nodes that stopped heartbeating"
                            );
                            Counters::add(&st.deps.counters.rescued, ids.len() as u64);
                            st.deps.events.emit(EngineEvent::RescuedOrphans(ids.len()));
                            let _ = st.dispatcher.cast(DispatcherMsg::Wake);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "dead-node rescue failed; retrying next tick")
                        }
                    }
                }
                match st.deps.store.rescue_expired(1000).await {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::warn!(rescued = ids.len(), "rescued jobs whose lease expired");
                        Counters::add(&st.deps.counters.rescued, ids.len() as u64);
                        st.deps.events.emit(EngineEvent::Rescued(ids.len()));
                        let _ = st.dispatcher.cast(DispatcherMsg::Wake);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "lease rescue failed; retrying next tick")
                    }
                }
                wake_for_due(st).await;
            }
            SchedulerMsg::Tick => wake_for_due(st).await,
            SchedulerMsg::Prune if st.deps.leadership.is_leader() => {
                let retention = chrono::Duration::from_std(st.deps.config.retention)
                    .unwrap_or(chrono::Duration::MAX);
                let before = st.deps.clock.now() - retention;
                match st.deps.store.prune(before, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "pruned finished jobs"),
                    Err(e) => tracing::error!(error = %e, "prune failed"),
                }
                if st.deps.config.node_dead_after.is_some() {
                    match st
                        .deps
                        .store
                        .prune_nodes(st.deps.config.node_retention)
                        .await
                    {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, "pruned rows of long-dead nodes"),
                        Err(e) => tracing::error!(error = %e, "node prune failed"),
                    }
                }
            }
            SchedulerMsg::Prune => {}
            SchedulerMsg::Tidy if st.deps.leadership.is_leader() => {
                if !st.tidying.swap(true, Ordering::AcqRel) {
                    let (store, tidying) = (st.deps.store.clone(), st.tidying.clone());
                    tokio::spawn(async move {
                        if let Err(e) = store.tidy_claim_indexes().await {
                            tracing::warn!(error = %e, "tidying the claim indexes failed");
                        }
                        tidying.store(false, Ordering::Release);
                    });
                }
            }
            SchedulerMsg::Tidy => {}
            SchedulerMsg::Cron if st.deps.leadership.is_leader() => {
                let now = st.deps.clock.now();
                let catch_up = st.deps.config.cron_catch_up;
                match st
                    .cron
                    .run(&*st.deps.store, &st.deps.cron, now, catch_up)
                    .await
                {
                    Ok(done) => {
                        if !done.is_empty() {
                            let _ = st.dispatcher.cast(DispatcherMsg::Wake);
                        }
                        for (name, tick) in done {
                            metrics::counter!(telemetry::CRON_ENQUEUED, "cron" => name.clone())
                                .increment(1);
                            st.deps.events.emit(EngineEvent::CronEnqueued(name, tick));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cron enqueue failed; retrying"),
                }
            }
            SchedulerMsg::Cron => st.cron.step_down(),
            SchedulerMsg::SetDispatcher(d) => st.dispatcher = d,
        }
        Ok(())
    }
}

/// A delayed job due before the next tick: wake the dispatcher on time.
async fn wake_for_due(st: &SchedulerState) {
    if let Ok(Some(at)) = st.deps.store.next_run_at().await {
        let wait = (at - st.deps.clock.now()).to_std().unwrap_or_default();
        if wait <= st.deps.config.rescue_interval {
            st.dispatcher.send_after(wait, || DispatcherMsg::Wake);
        }
    }
}
