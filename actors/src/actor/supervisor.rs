//! Supervisor: starts Acker, Dispatcher, Scheduler and (if enabled) Autoscaler linked;
//! restarts a child that fails, with back-off, and gives up cleanly — stopping the
//! engine with an error — after too many restarts in a window. On shutdown it stops
//! its children in order: the dispatcher drains (grace period), the acker flushes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent, call_t,
};
use uuid::Uuid;

use super::acker::{Acker, AckerMsg};
use super::autoscaler::{Autoscaler, AutoscalerMsg};
use super::dispatcher::{Dispatcher, DispatcherMsg, DispatcherStats};
use super::scheduler::{Scheduler, SchedulerMsg};
use super::{Counters, Deps};
use crate::autoscale::Reading;
use crate::events::EngineEvent;
use crate::restart_budget::RestartBudget;
use crate::telemetry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Child {
    Acker,
    Dispatcher,
    Scheduler,
    Autoscaler,
}

impl Child {
    pub fn name(self) -> &'static str {
        match self {
            Child::Acker => "acker",
            Child::Dispatcher => "dispatcher",
            Child::Scheduler => "scheduler",
            Child::Autoscaler => "autoscaler",
        }
    }
}

pub struct Supervisor;

pub enum SupervisorMsg {
    Wake,
    /// The acker wrote a batch the dispatcher waited for.
    AcksWritten,
    Fetch(crate::remote::PendingFetch),
    DueAt(Vec<chrono::DateTime<chrono::Utc>>),
    StopWorker(String),
    Cancel(Uuid),
    Stats(RpcReplyPort<DispatcherStats>),
    Autoscaler(RpcReplyPort<Option<(Reading, usize)>>),
    Restart(Child),
    /// Test hook: makes the child fail as a bug would.
    Crash(Child),
    Shutdown(Duration, RpcReplyPort<()>),
}

pub struct SupervisorState {
    deps: Arc<Deps>,
    acker: ActorRef<AckerMsg>,
    dispatcher: ActorRef<DispatcherMsg>,
    scheduler: ActorRef<SchedulerMsg>,
    autoscaler: Option<ActorRef<AutoscalerMsg>>,
    budgets: HashMap<Child, RestartBudget>,
    stopping: bool,
}

impl SupervisorState {
    fn which(&self, cell: &ActorCell) -> Option<Child> {
        let id = cell.get_id();
        if id == self.acker.get_id() {
            Some(Child::Acker)
        } else if id == self.dispatcher.get_id() {
            Some(Child::Dispatcher)
        } else if id == self.scheduler.get_id() {
            Some(Child::Scheduler)
        } else if self.autoscaler.as_ref().is_some_and(|a| a.get_id() == id) {
            Some(Child::Autoscaler)
        } else {
            None
        }
    }
}

async fn spawn_acker(
    deps: &Arc<Deps>,
    sup: ActorCell,
) -> Result<ActorRef<AckerMsg>, ActorProcessingErr> {
    let wake: ActorRef<SupervisorMsg> = sup.clone().into();
    Ok(Actor::spawn_linked(None, Acker, (deps.clone(), wake), sup)
        .await?
        .0)
}

async fn spawn_dispatcher(
    deps: &Arc<Deps>,
    acker: ActorRef<AckerMsg>,
    sup: ActorCell,
) -> Result<ActorRef<DispatcherMsg>, ActorProcessingErr> {
    Ok(
        Actor::spawn_linked(None, Dispatcher, (deps.clone(), acker), sup)
            .await?
            .0,
    )
}

async fn spawn_scheduler(
    deps: &Arc<Deps>,
    d: ActorRef<DispatcherMsg>,
    sup: ActorCell,
) -> Result<ActorRef<SchedulerMsg>, ActorProcessingErr> {
    Ok(Actor::spawn_linked(None, Scheduler, (deps.clone(), d), sup)
        .await?
        .0)
}

async fn spawn_autoscaler(
    deps: &Arc<Deps>,
    d: ActorRef<DispatcherMsg>,
    sup: ActorCell,
) -> Result<Option<ActorRef<AutoscalerMsg>>, ActorProcessingErr> {
    if !deps.config.autoscale || deps.probe.is_none() {
        return Ok(None);
    }
    Ok(Some(
        Actor::spawn_linked(None, Autoscaler, (deps.clone(), d), sup)
            .await?
            .0,
    ))
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Deps>;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        deps: Arc<Deps>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let cell = me.get_cell();
        let acker = spawn_acker(&deps, cell.clone()).await?;
        let dispatcher = spawn_dispatcher(&deps, acker.clone(), cell.clone()).await?;
        let scheduler = spawn_scheduler(&deps, dispatcher.clone(), cell.clone()).await?;
        let autoscaler = spawn_autoscaler(&deps, dispatcher.clone(), cell).await?;
        Ok(SupervisorState {
            deps,
            acker,
            dispatcher,
            scheduler,
            autoscaler,
            budgets: HashMap::new(),
            stopping: false,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Wake => {
                let _ = st.dispatcher.cast(DispatcherMsg::Wake);
            }
            SupervisorMsg::AcksWritten => {
                let _ = st.dispatcher.cast(DispatcherMsg::AcksWritten);
            }
            SupervisorMsg::Fetch(f) => {
                let _ = st.dispatcher.cast(DispatcherMsg::Fetch(f));
            }
            SupervisorMsg::DueAt(t) => {
                let _ = st.dispatcher.cast(DispatcherMsg::DueAt(t));
            }
            SupervisorMsg::StopWorker(w) => {
                let _ = st.dispatcher.cast(DispatcherMsg::StopWorker(w));
            }
            SupervisorMsg::Cancel(id) => {
                let _ = st.dispatcher.cast(DispatcherMsg::Cancel(id));
            }
            SupervisorMsg::Stats(reply) => {
                let s = call_t!(st.dispatcher, DispatcherMsg::Stats, 2000).unwrap_or_default();
                let _ = reply.send(s);
            }
            SupervisorMsg::Autoscaler(reply) => {
                let last = match &st.autoscaler {
                    Some(a) => call_t!(a, AutoscalerMsg::Last, 2000).unwrap_or(None),
                    None => None,
                };
                let _ = reply.send(last);
            }
            SupervisorMsg::Crash(child) => {
                let cell = match child {
                    Child::Acker => st.acker.get_cell(),
                    Child::Dispatcher => st.dispatcher.get_cell(),
                    Child::Scheduler => st.scheduler.get_cell(),
                    Child::Autoscaler => match &st.autoscaler {
                        Some(a) => a.get_cell(),
                        None => return Ok(()),
                    },
                };
                cell.kill();
            }
            SupervisorMsg::Restart(child) if !st.stopping => {
                let cell = me.get_cell();
                match child {
                    Child::Acker => {
                        st.acker = spawn_acker(&st.deps, cell).await?;
                        let _ = st
                            .dispatcher
                            .cast(DispatcherMsg::SetAcker(st.acker.clone()));
                    }
                    Child::Dispatcher => {
                        st.dispatcher = spawn_dispatcher(&st.deps, st.acker.clone(), cell).await?;
                        let _ = st
                            .scheduler
                            .cast(SchedulerMsg::SetDispatcher(st.dispatcher.clone()));
                        if let Some(a) = &st.autoscaler {
                            let _ = a.cast(AutoscalerMsg::SetDispatcher(st.dispatcher.clone()));
                        }
                    }
                    Child::Scheduler => {
                        st.scheduler =
                            spawn_scheduler(&st.deps, st.dispatcher.clone(), cell).await?;
                    }
                    Child::Autoscaler => {
                        st.autoscaler =
                            spawn_autoscaler(&st.deps, st.dispatcher.clone(), cell).await?;
                    }
                }
                Counters::add(&st.deps.counters.actor_restarts, 1);
                metrics::counter!(telemetry::ACTOR_RESTARTS, "actor" => child.name()).increment(1);
                st.deps.events.emit(EngineEvent::Restarted(child.name()));
                tracing::warn!(actor = child.name(), "restarted a failed actor");
            }
            SupervisorMsg::Restart(_) => {}
            SupervisorMsg::Shutdown(grace, reply) => {
                st.stopping = true;
                let drained = call_t!(
                    st.dispatcher,
                    DispatcherMsg::Drain,
                    grace.as_millis() as u64
                )
                .is_ok();
                if !drained {
                    let n =
                        call_t!(st.dispatcher, DispatcherMsg::ReleaseRunning, 5000).unwrap_or(0);
                    tracing::info!(released = n, "grace period over: gave back unfinished jobs");
                }
                if call_t!(st.acker, AckerMsg::Flush, 30_000).is_err() {
                    tracing::error!(
                        "could not write every outcome before stopping; their leases will expire and the jobs run again"
                    );
                }
                if let Some(a) = &st.autoscaler {
                    a.stop(None);
                }
                st.scheduler.stop(None);
                st.dispatcher.stop(None);
                st.acker.stop(None);
                let _ = reply.send(());
                me.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = ?st.which(cell).map(Child::name), error = %err, "actor failed");
                cell
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if st.stopping {
                    return Ok(());
                }
                tracing::error!(actor = ?st.which(cell).map(Child::name), ?reason, "actor stopped unexpectedly");
                cell
            }
            _ => return Ok(()),
        };
        if st.stopping {
            return Ok(());
        }
        let Some(child) = st.which(cell) else {
            return Ok(());
        };
        let (max, window) = (st.deps.config.max_restarts, st.deps.config.restart_window);
        let budget = st
            .budgets
            .entry(child)
            .or_insert_with(|| RestartBudget::new(max, window));
        if budget.allow(tokio::time::Instant::now()) {
            let wait = budget.backoff();
            me.send_after(wait, move || SupervisorMsg::Restart(child));
        } else {
            tracing::error!(
                actor = child.name(),
                "too many restarts; stopping the engine"
            );
            st.stopping = true;
            me.stop(Some(format!("{} failed too often", child.name())));
        }
        Ok(())
    }
}
