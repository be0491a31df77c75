//! Acker: writes job outcomes to the store in batches. While one write is in flight,
//! outcomes pile up and go together in the next (group commit), so throughput comes
//! from batching without a timer delaying the first ack. A failed write is retried
//! with back-off; nothing is dropped. A fenced ack (lease lost) is logged and counted.
//! Finished jobs and failed attempts are counted for metrics once their ack is written.
//! A finished job leaves the dispatcher's renewals, so while its ack waits (behind a
//! slow write, or a write retried while the database is away) the acker renews its
//! lease: a job that ran is not rescued and run again because its ack was slow.
//! Writes and renewals go in job-id order, so the two (and the dispatcher's renewals)
//! lock rows alike and never deadlock each other. How many outcomes wait unwritten is
//! published for the dispatcher ([`super::UnwrittenAcks`]), which stops claiming
//! while the acker falls behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::supervisor::SupervisorMsg;
use super::{Counters, Deps};
use crate::events::EngineEvent;
use crate::store::{Ack, JobLease, Outcome, StoreError};
use crate::telemetry;

pub struct Acker;

/// The metric labels of an acked job (the ack itself carries only the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLabels {
    pub queue: String,
    pub job_type: String,
    /// The job belongs to a workflow: once its final outcome is written, dependents
    /// it released may be due, so the dispatcher is woken.
    pub workflow: bool,
    /// The job has a concurrency key: once it is no longer running, a job of the
    /// same key may start, so the dispatcher is woken.
    pub keyed: bool,
}

pub enum AckerMsg {
    /// An outcome to write; with labels, it is counted in the job metrics once written.
    Ack(Ack, Option<JobLabels>),
    Written(Result<Vec<bool>, StoreError>, Vec<Ack>),
    RetryWrite,
    /// Renew the leases of acks that have waited a while.
    Renew,
    /// A renewal's answer, with the leases it asked for.
    Renewed(Result<tokio::time::Instant, StoreError>, Vec<JobLease>),
    /// Replies once every outcome received so far is written.
    Flush(RpcReplyPort<()>),
}

pub struct AckerState {
    deps: Arc<Deps>,
    /// The supervisor, which forwards a wake-up to the current dispatcher.
    sup: ActorRef<SupervisorMsg>,
    buffer: Vec<Ack>,
    /// A write is in flight, or a failed one waits for its retry.
    writing: bool,
    /// A renewal is in flight.
    renewing: bool,
    failures: u32,
    waiters: Vec<RpcReplyPort<()>>,
    /// Labels of buffered or in-flight acks, by (job, attempt).
    labels: HashMap<(uuid::Uuid, u32), JobLabels>,
    /// When each buffered or in-flight ack arrived (or its lease was last renewed).
    since: HashMap<(uuid::Uuid, u32), tokio::time::Instant>,
    /// The batch being written.
    in_flight: Vec<JobLease>,
}

impl AckerState {
    /// Publishes how many outcomes wait unwritten.
    fn publish(&self) {
        let n = self.buffer.len() + self.in_flight.len();
        self.deps.unwritten.set(n);
        metrics::gauge!(telemetry::ACKS_UNWRITTEN).set(n as f64);
    }

    fn write(&mut self, myself: &ActorRef<AckerMsg>) {
        if self.writing || self.buffer.is_empty() {
            if !self.writing {
                for w in self.waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            return;
        }
        let n = self.buffer.len().min(self.deps.config.ack_batch);
        let mut batch: Vec<Ack> = self.buffer.drain(..n).collect();
        batch.sort_by_key(|a| a.lease.id);
        self.in_flight = batch.iter().map(|a| a.lease.clone()).collect();
        self.writing = true;
        let store = self.deps.store.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let r = store.ack(&batch).await;
            let _ = me.cast(AckerMsg::Written(r, batch));
        });
    }

    /// Renews, in one call, the leases of acks that have waited a sixth of the lease
    /// or more (checked every sixth): an ack's lease is renewed at most a third of the
    /// lease after its job finished, as the dispatcher renews running jobs every third.
    fn renew(&mut self, myself: &ActorRef<AckerMsg>) {
        if self.renewing {
            return;
        }
        let now = tokio::time::Instant::now();
        let old = self.deps.config.lease / 6;
        let mut leases: Vec<JobLease> = self
            .buffer
            .iter()
            .map(|a| &a.lease)
            .chain(&self.in_flight)
            .filter(|l| {
                self.since
                    .get(&(l.id, l.attempt))
                    .is_some_and(|t| now.duration_since(*t) >= old)
            })
            .cloned()
            .collect();
        if leases.is_empty() {
            return;
        }
        leases.sort_by_key(|l| l.id);
        self.renewing = true;
        let store = self.deps.store.clone();
        let lease = self.deps.config.lease;
        let me = myself.clone();
        tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            // Renewed as of when it was sent: the next renewal is due from then.
            let r = store.extend_leases(&leases, lease).await.map(|_| sent);
            let _ = me.cast(AckerMsg::Renewed(r, leases));
        });
    }
}

impl Actor for Acker {
    type Msg = AckerMsg;
    type State = AckerState;
    type Arguments = (Arc<Deps>, ActorRef<SupervisorMsg>);

    async fn pre_start(
        &self,
        me: ActorRef<AckerMsg>,
        (deps, sup): (Arc<Deps>, ActorRef<SupervisorMsg>),
    ) -> Result<AckerState, ActorProcessingErr> {
        me.send_interval(deps.config.lease / 6, || AckerMsg::Renew);
        // A restarted acker starts empty (what the old one held is rescued by lease):
        // a dispatcher waiting on the old one's writes need not wait for a poll.
        deps.unwritten.set(0);
        if deps.unwritten.release() {
            let _ = sup.cast(SupervisorMsg::AcksWritten);
        }
        Ok(AckerState {
            deps,
            sup,
            buffer: Vec::new(),
            writing: false,
            renewing: false,
            failures: 0,
            waiters: Vec::new(),
            labels: HashMap::new(),
            since: HashMap::new(),
            in_flight: Vec::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<AckerMsg>,
        msg: AckerMsg,
        st: &mut AckerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AckerMsg::Ack(a, labels) => {
                if let Some(l) = labels {
                    st.labels.insert((a.lease.id, a.lease.attempt), l);
                }
                st.since
                    .insert((a.lease.id, a.lease.attempt), tokio::time::Instant::now());
                st.buffer.push(a);
                st.write(&me);
            }
            AckerMsg::Written(Ok(applied), batch) => {
                st.writing = false;
                st.in_flight.clear();
                st.publish();
                if st.deps.unwritten.release() {
                    let _ = st.sup.cast(SupervisorMsg::AcksWritten);
                }
                for a in &batch {
                    st.since.remove(&(a.lease.id, a.lease.attempt));
                }
                st.failures = 0;
                let c = &st.deps.counters;
                let mut fenced = 0;
                let mut released = false;
                for (a, ok) in batch.iter().zip(&applied) {
                    let labels = st.labels.remove(&(a.lease.id, a.lease.attempt));
                    released |= *ok && labels.as_ref().is_some_and(|l| l.keyed);
                    released |= *ok
                        && labels.as_ref().is_some_and(|l| l.workflow)
                        && matches!(
                            a.outcome,
                            Outcome::Completed { .. }
                                | Outcome::Failed { .. }
                                | Outcome::Canceled { .. }
                        );
                    if let (true, Some(l)) = (ok, &labels) {
                        telemetry::record_outcome(&l.queue, &l.job_type, &a.outcome);
                    }
                    if !ok {
                        fenced += 1;
                        tracing::warn!(job = %a.lease.id, attempt = a.lease.attempt,
                            "ack fenced: lease lost (the job was rescued or finished elsewhere)");
                        continue;
                    }
                    match &a.outcome {
                        Outcome::Completed { .. } => Counters::add(&c.completed, 1),
                        Outcome::Retry { .. } => Counters::add(&c.retried, 1),
                        Outcome::Failed { .. } => Counters::add(&c.failed, 1),
                        Outcome::Canceled { .. } => Counters::add(&c.canceled, 1),
                        Outcome::Released { .. } | Outcome::Snoozed { .. } => {}
                    }
                }
                Counters::add(&c.fenced, fenced as u64);
                if released {
                    let _ = st.sup.cast(SupervisorMsg::Wake);
                }
                st.deps.events.emit(EngineEvent::Acked {
                    written: batch.len(),
                    fenced,
                });
                st.write(&me);
            }
            AckerMsg::Written(Err(e), batch) => {
                st.writing = false;
                st.in_flight.clear();
                st.failures += 1;
                let wait = Duration::from_millis(50) * (1u32 << st.failures.min(7));
                tracing::error!(error = %e, pending = batch.len() + st.buffer.len(),
                    retry_in_ms = wait.as_millis() as u64, "ack write failed; retrying");
                let mut rest = std::mem::take(&mut st.buffer);
                st.buffer = batch;
                st.buffer.append(&mut rest);
                st.writing = true; // hold writes until the retry
                me.send_after(wait, || AckerMsg::RetryWrite);
            }
            AckerMsg::Renew => st.renew(&me),
            AckerMsg::Renewed(r, leases) => {
                st.renewing = false;
                match r {
                    Ok(sent) => {
                        for l in &leases {
                            if let Some(t) = st.since.get_mut(&(l.id, l.attempt)) {
                                *t = sent;
                            }
                        }
                    }
                    // Left as they were: the next tick tries them again.
                    Err(e) => tracing::warn!(error = %e, leases = leases.len(),
                        "renewing the leases of unwritten acks failed"),
                }
            }
            AckerMsg::RetryWrite => {
                st.writing = false;
                st.write(&me);
            }
            AckerMsg::Flush(reply) => {
                st.waiters.push(reply);
                st.write(&me);
            }
        }
        st.publish();
        Ok(())
    }
}
