//! What the engine tells an observer (tests wait on these instead of sleeping;
//! River's test signals). Sending never blocks and is skipped when nobody listens.

use uuid::Uuid;

use crate::error::ErrorKind;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A claim returned this many jobs.
    Claimed(usize),
    /// A handler started (job id, attempt).
    Started(Uuid, u32),
    /// A handler ended: `None` for success, else the error kind.
    Finished(Uuid, Option<ErrorKind>),
    /// A handler panicked; its worker slot was replaced.
    WorkerReplaced(Uuid),
    /// This many outcomes were written; `fenced` of them were refused (lease lost).
    Acked { written: usize, fenced: usize },
    /// The dispatcher held a claim back: this many outcomes wait unwritten.
    AcksBehind(usize),
    /// Expired leases rescued by the scheduler.
    Rescued(usize),
    /// Jobs of dead nodes rescued by the leader.
    RescuedOrphans(usize),
    /// The leader enqueued a cron tick (entry, tick).
    CronEnqueued(String, chrono::DateTime<chrono::Utc>),
    /// The autoscaler set the pool to this size.
    PoolResized(usize),
    /// The supervisor restarted this child.
    Restarted(&'static str),
    /// A job waited for its provider's token and was put back for later.
    RateLimited(Uuid),
}

/// An optional event sink.
#[derive(Clone, Default)]
pub struct Events(Option<tokio::sync::mpsc::UnboundedSender<EngineEvent>>);

impl Events {
    pub fn new(tx: Option<tokio::sync::mpsc::UnboundedSender<EngineEvent>>) -> Events {
        Events(tx)
    }

    pub fn emit(&self, e: EngineEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}
