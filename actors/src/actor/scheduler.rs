//! Scheduler: rescues jobs whose lease expired (their node died or stalled) every
//! rescue tick, wakes the dispatcher when a delayed job falls due, and prunes finished
//! jobs after the retention period. It never claims; the dispatcher does.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::dispatcher::DispatcherMsg;
use super::{Counters, Deps};
use crate::events::EngineEvent;

pub struct Scheduler;

pub enum SchedulerMsg {
    Tick,
    Prune,
    SetDispatcher(ActorRef<DispatcherMsg>),
}

pub struct SchedulerState {
    deps: Arc<Deps>,
    dispatcher: ActorRef<DispatcherMsg>,
}

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
        Ok(SchedulerState { deps, dispatcher })
    }

    async fn handle(
        &self,
        _me: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        st: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick => {
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
                // A delayed job due before the next tick: wake the dispatcher on time.
                if let Ok(Some(at)) = st.deps.store.next_run_at().await {
                    let wait = (at - st.deps.clock.now()).to_std().unwrap_or_default();
                    if wait <= st.deps.config.rescue_interval {
                        st.dispatcher.send_after(wait, || DispatcherMsg::Wake);
                    }
                }
            }
            SchedulerMsg::Prune => {
                let retention = chrono::Duration::from_std(st.deps.config.retention)
                    .unwrap_or(chrono::Duration::MAX);
                let before = st.deps.clock.now() - retention;
                match st.deps.store.prune(before, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "pruned finished jobs"),
                    Err(e) => tracing::error!(error = %e, "prune failed"),
                }
            }
            SchedulerMsg::SetDispatcher(d) => st.dispatcher = d,
        }
        Ok(())
    }
}
