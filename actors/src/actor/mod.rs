//! The actor tree. Each actor is a zero-sized behaviour with its
//! state built in `pre_start`; logic that can be pure lives outside, in the crate root.

pub mod acker;
pub mod autoscaler;
pub mod dispatcher;
mod remote_fetches;
pub mod scheduler;
pub mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::autoscale::ResourceProbe;
use crate::clock::SharedClock;
use crate::cluster::{CronEntry, Leadership};
use crate::config::EngineConfig;
use crate::events::Events;
use crate::handler::HandlerRegistry;
use crate::rate_limit::RateLimitBackend;
use crate::store::Store;

/// What every actor of one engine shares.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub handlers: HandlerRegistry,
    pub config: EngineConfig,
    /// This engine's lease owner: fresh per start.
    pub owner: String,
    pub events: Events,
    pub limiter: Arc<dyn RateLimitBackend>,
    pub probe: Option<Arc<dyn ResourceProbe>>,
    pub counters: Counters,
    /// Outcomes the acker holds unwritten: the dispatcher's brake.
    pub unwritten: UnwrittenAcks,
    /// Where handlers run (a runtime of their own).
    pub jobs: tokio::runtime::Handle,
    /// Whether this node runs maintenance (rescue, pruning, cron) now.
    pub leadership: Leadership,
    /// Recurring jobs the leader enqueues.
    pub cron: Vec<CronEntry>,
}

/// Running totals, read by `Engine::stats`.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub canceled: AtomicU64,
    pub fenced: AtomicU64,
    pub worker_replacements: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub rescued: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// How many outcomes the acker holds unwritten (buffered or in flight), published by
/// the acker after each message. The dispatcher claims no more while a full batch
/// waits behind the one being written: a node whose database writes acks slower than
/// its pool runs jobs would otherwise run ever further ahead of them — memory without
/// bound, and leases of finished jobs piling up until the leader rescues jobs that ran.
#[derive(Debug, Default)]
pub struct UnwrittenAcks {
    count: AtomicUsize,
    /// The dispatcher held a claim back for this: tell it when a write lands.
    braked: AtomicBool,
}

impl UnwrittenAcks {
    pub fn set(&self, n: usize) {
        self.count.store(n, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    /// Whether more than `limit` wait, in which case the next write that lands says so
    /// ([`UnwrittenAcks::release`]). The count is read again after braking, so a write
    /// that landed between the two reads is not missed.
    pub fn over(&self, limit: usize) -> bool {
        if self.get() <= limit {
            return false;
        }
        self.braked.store(true, Ordering::SeqCst);
        self.get() > limit
    }
    /// A write landed (call after [`UnwrittenAcks::set`]): whether the dispatcher
    /// waited for one.
    pub fn release(&self) -> bool {
        self.braked.swap(false, Ordering::SeqCst)
    }
}
