//! Autoscaler: every few seconds reads CPU and memory through the probe, asks the
//! dispatcher how busy the pool is, and resizes it within [min, max] by the pure
//! policy in `autoscale.rs`, at most once per cooldown. Its readings and target are
//! published as gauges.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, call_t};

use super::Deps;
use super::dispatcher::DispatcherMsg;
use crate::autoscale::{Cooldown, PoolView, Reading, decide};
use crate::events::EngineEvent;
use crate::telemetry;

pub struct Autoscaler;

pub enum AutoscalerMsg {
    Tick,
    SetDispatcher(ActorRef<DispatcherMsg>),
    /// The last reading and decision.
    Last(ractor::RpcReplyPort<Option<(Reading, usize)>>),
}

pub struct AutoscalerState {
    deps: Arc<Deps>,
    dispatcher: ActorRef<DispatcherMsg>,
    cooldown: Cooldown,
    last: Option<(Reading, usize)>,
}

impl Actor for Autoscaler {
    type Msg = AutoscalerMsg;
    type State = AutoscalerState;
    type Arguments = (Arc<Deps>, ActorRef<DispatcherMsg>);

    async fn pre_start(
        &self,
        me: ActorRef<AutoscalerMsg>,
        (deps, dispatcher): (Arc<Deps>, ActorRef<DispatcherMsg>),
    ) -> Result<AutoscalerState, ActorProcessingErr> {
        me.send_interval(deps.config.autoscale_interval, || AutoscalerMsg::Tick);
        let cooldown = Cooldown::new(deps.config.autoscale_cooldown);
        Ok(AutoscalerState {
            deps,
            dispatcher,
            cooldown,
            last: None,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<AutoscalerMsg>,
        msg: AutoscalerMsg,
        st: &mut AutoscalerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AutoscalerMsg::Tick => {
                let Some(probe) = st.deps.probe.clone() else {
                    return Ok(());
                };
                let reading = probe.read();
                metrics::gauge!(telemetry::AUTOSCALER_CPU).set(reading.cpu_percent / 100.0);
                metrics::gauge!(telemetry::AUTOSCALER_MEMORY).set(reading.memory_percent / 100.0);
                let Ok(stats) = call_t!(st.dispatcher, DispatcherMsg::Stats, 1000) else {
                    return Ok(());
                };
                let c = &st.deps.config;
                let view = PoolView {
                    size: stats.pool_size,
                    busy: stats.busy,
                    backlog: stats.backlog,
                };
                let target = decide(reading, view, c.min_workers, c.max_workers);
                st.last = Some((reading, target));
                metrics::gauge!(telemetry::WORKERS_TARGET).set(target as f64);
                if target != stats.pool_size && st.cooldown.try_pass(tokio::time::Instant::now()) {
                    tracing::info!(
                        from = stats.pool_size,
                        to = target,
                        cpu = reading.cpu_percent,
                        memory = reading.memory_percent,
                        "autoscaler resizes the pool"
                    );
                    let _ = st.dispatcher.cast(DispatcherMsg::SetPoolSize(target));
                    st.deps.events.emit(EngineEvent::PoolResized(target));
                }
            }
            AutoscalerMsg::SetDispatcher(d) => st.dispatcher = d,
            AutoscalerMsg::Last(reply) => {
                let _ = reply.send(st.last);
            }
        }
        Ok(())
    }
}
