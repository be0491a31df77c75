//! Several kyu processes on one database: the node registry, the leader, and cron.
//!
//! - **Nodes.** Every process (`kyu serve`, `kyu api`, `kyu worker`) runs a
//!   [`NodeAgent`]: it registers the process ([`NodeInfo`]) and heartbeats every
//!   `heartbeat_interval`. A node whose last heartbeat is older than `dead_after` is
//!   dead: the leader rescues its running jobs at once (fenced like any rescue), without
//!   waiting for their leases. On a graceful shutdown the agent deregisters the node.
//! - **Leader.** Nodes that run an engine stand for leader: each renews (or tries to take)
//!   one lease row in the database every `leader_renew`, in one atomic statement by the
//!   database clock; the row lasts `leader_ttl`. Only the leader runs maintenance (lease
//!   rescue, dead-node rescue, pruning, cron): the engine's Scheduler asks
//!   [`Leadership::is_leader`] before each. API-only nodes register but never lead: they
//!   have no Scheduler, and a deployment without a worker has nothing to maintain.
//!   A leader stops acting as one when a renew fails, times out, or finds another holder,
//!   and in any case at its local deadline (sent + 0.9 × ttl, on the monotonic clock), which
//!   falls before the row expires in the database: so a leader that stalls past its lease
//!   has stopped before another can take over. When the leader dies, another node takes
//!   over within `leader_ttl + leader_renew`.
//! - **Cron.** [`CronEntry`]s are enqueued by the leader: each due tick with the unique
//!   key `cron:<name>:<tick epoch seconds>` and `run_at` = the tick, through
//!   [`Store::enqueue_cron`], which records the last tick per entry in the same
//!   transaction. A new leader reads that record and enqueues the ticks it missed (at most
//!   `cron_catch_up`, the newest), so no tick is enqueued twice or skipped across a leader
//!   change. Schedules are read in UTC.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::job::NewJob;
use crate::priority::Priority;
use crate::store::{NodeInfo, Store, StoreError};
use crate::telemetry;

/// The name of the maintenance leader's lease row.
pub const LEADER_LEASE: &str = "maintenance";

/// Timing of the node registry and of the leader election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub heartbeat_interval: Duration,
    /// A node silent this long is dead (its jobs are rescued by the leader).
    pub dead_after: Duration,
    /// How long a leadership lease lasts unless renewed.
    pub leader_ttl: Duration,
    /// How often the leader renews (and others try to take) the lease.
    pub leader_renew: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            heartbeat_interval: Duration::from_secs(2),
            dead_after: Duration::from_secs(10),
            leader_ttl: Duration::from_secs(5),
            leader_renew: Duration::from_secs(1),
        }
    }
}

impl NodeConfig {
    /// Names the first setting out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat_interval: expected more than 0".into());
        }
        if self.dead_after <= self.heartbeat_interval {
            return Err("dead_after: expected more than the heartbeat interval".into());
        }
        if self.leader_renew.is_zero() {
            return Err("leader_renew: expected more than 0".into());
        }
        if self.leader_ttl <= self.leader_renew {
            return Err("leader_ttl: expected more than the renew interval".into());
        }
        Ok(())
    }

    /// The longest a renew may take before the leader steps down.
    fn renew_timeout(&self) -> Duration {
        (self.leader_ttl / 2).max(self.leader_renew)
    }
}

#[derive(Debug)]
struct LeaderState {
    standalone: bool,
    held: AtomicBool,
    /// The local deadline of the lease held (monotonic).
    until: Mutex<Option<Instant>>,
}

/// Whether this node is the leader, shared by the elector and the engine's Scheduler.
#[derive(Debug, Clone)]
pub struct Leadership(Arc<LeaderState>);

impl Default for Leadership {
    fn default() -> Self {
        Leadership::standalone()
    }
}

impl Leadership {
    /// Always the leader: an engine on its own (a library user, tests).
    pub fn standalone() -> Leadership {
        Leadership(Arc::new(LeaderState {
            standalone: true,
            held: AtomicBool::new(true),
            until: Mutex::new(None),
        }))
    }

    /// Not the leader until an [`Elector`] wins the lease.
    pub fn elected() -> Leadership {
        Leadership(Arc::new(LeaderState {
            standalone: false,
            held: AtomicBool::new(false),
            until: Mutex::new(None),
        }))
    }

    /// True while this node holds an unexpired lease (or is standalone).
    pub fn is_leader(&self) -> bool {
        if self.0.standalone {
            return true;
        }
        self.0.held.load(Ordering::Acquire) && self.until().is_some_and(|u| Instant::now() < u)
    }

    fn until(&self) -> Option<Instant> {
        *self.0.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds the lease until `until` (local, monotonic).
    pub fn grant(&self, until: Instant) {
        *self.0.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        if !self.0.held.swap(true, Ordering::AcqRel) {
            tracing::info!("became the leader: running maintenance (rescue, pruning, cron)");
            metrics::gauge!(telemetry::LEADER).set(1.0);
        }
    }

    /// Stops acting as leader, unplanned (a failed or refused renew): logged as a warning.
    pub fn revoke(&self, why: &str) {
        if self.step_down() {
            tracing::warn!(reason = why, "no longer the leader: maintenance stopped");
        }
    }

    /// Stops acting as leader because this node is shutting down: the expected end of a
    /// clean stop, so it is logged at info, not as a warning.
    pub fn resign(&self) {
        if self.step_down() {
            tracing::info!("leadership handed over: this node is shutting down");
        }
    }

    /// Drops the lease; `true` if this node held it.
    fn step_down(&self) -> bool {
        *self.0.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let held = self.0.held.swap(false, Ordering::AcqRel);
        if held {
            metrics::gauge!(telemetry::LEADER).set(0.0);
        }
        held
    }
}

/// Takes or renews the leader lease for one node.
pub struct Elector {
    store: Arc<dyn Store>,
    node: String,
    ttl: Duration,
    timeout: Duration,
    leadership: Leadership,
}

impl Elector {
    pub fn new(
        store: Arc<dyn Store>,
        node: impl Into<String>,
        config: &NodeConfig,
        leadership: Leadership,
    ) -> Elector {
        Elector {
            store,
            node: node.into(),
            ttl: config.leader_ttl,
            timeout: config.renew_timeout(),
            leadership,
        }
    }

    /// One acquire-or-renew. Returns whether this node leads now.
    pub async fn step(&self) -> bool {
        let sent = Instant::now();
        let r = tokio::time::timeout(
            self.timeout,
            self.store
                .acquire_leadership(LEADER_LEASE, &self.node, self.ttl),
        )
        .await;
        match r {
            Ok(Ok(true)) => {
                // The row expires at the database's now + ttl, measured after `sent`;
                // stop a tenth early for clock-rate and clock-reading error.
                self.leadership.grant(sent + self.ttl - self.ttl / 10);
                true
            }
            Ok(Ok(false)) => {
                self.leadership.revoke("another node holds the lease");
                false
            }
            Ok(Err(e)) => {
                self.leadership.revoke(&format!("renew failed: {e}"));
                false
            }
            Err(_) => {
                self.leadership.revoke("renew timed out");
                false
            }
        }
    }

    /// Steps down and frees the lease so the next node need not wait for it.
    pub async fn resign(&self) {
        self.leadership.resign();
        // Released even if a renew just failed: the row may still name this node.
        if let Err(e) = self
            .store
            .release_leadership(LEADER_LEASE, &self.node)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader lease; it expires by itself");
        }
    }
}

/// Registers this process, heartbeats, and (for engine nodes) stands for leader.
pub struct NodeAgent {
    store: Arc<dyn Store>,
    id: String,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    elector: Option<Arc<Elector>>,
}

impl NodeAgent {
    /// Registers `info` (one heartbeat, awaited) and starts heartbeating; with
    /// `leadership`, also stands for leader and keeps it up to date.
    pub async fn start(
        store: Arc<dyn Store>,
        info: NodeInfo,
        config: NodeConfig,
        leadership: Option<Leadership>,
    ) -> NodeAgent {
        if let Err(e) = store.heartbeat(&info).await {
            tracing::warn!(error = %e, "could not register this node; retrying");
        }
        tracing::info!(node = %info.id, role = %info.role, host = %info.host, "node registered");
        metrics::gauge!(telemetry::LEADER).set(0.0);
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(heartbeat_loop(
            store.clone(),
            info.clone(),
            config.heartbeat_interval,
            stop.clone(),
        )));
        let elector =
            leadership.map(|l| Arc::new(Elector::new(store.clone(), &info.id, &config, l)));
        if let Some(e) = &elector {
            tasks.push(tokio::spawn(elect_loop(
                e.clone(),
                config.leader_renew,
                stop.clone(),
            )));
        }
        NodeAgent {
            store,
            id: info.id,
            stop,
            tasks,
            elector,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops heartbeating, gives up leadership and deregisters (graceful shutdown).
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(e) = &self.elector {
            e.resign().await;
        }
        match self.store.deregister(&self.id).await {
            Ok(()) => tracing::info!(node = %self.id, "node deregistered"),
            Err(e) => tracing::warn!(error = %e, "could not deregister this node"),
        }
    }
}

async fn heartbeat_loop(
    store: Arc<dyn Store>,
    info: NodeInfo,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(every.max(Duration::from_secs(1)), store.heartbeat(&info)).await
        {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("node heartbeat recovered");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "node heartbeat failed; other nodes will think this one dead if it goes on");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("node heartbeat timed out");
            }
            _ => {}
        }
    }
}

async fn elect_loop(elector: Arc<Elector>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = elector.step() => {}
        }
    }
}

/// A cron schedule (5 fields, or 6 with seconds first), read in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: String,
    cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Schedule {
    pub fn parse(pattern: &str) -> Result<Schedule, String> {
        let cron = croner::Cron::from_str(pattern.trim())
            .map_err(|e| format!("bad cron expression `{pattern}`: {e}"))?;
        Ok(Schedule {
            pattern: pattern.trim().to_owned(),
            cron,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Ticks in (`after`, `now`], oldest first, at most the newest `max`.
    pub fn ticks(&self, after: DateTime<Utc>, now: DateTime<Utc>, max: u32) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        if max == 0 || now <= after {
            return out;
        }
        // Walk back from now: a long gap costs at most `max` steps.
        let Ok(mut t) = self.cron.find_previous_occurrence(&now, true) else {
            return out;
        };
        while t > after && out.len() < max as usize {
            out.push(t);
            match self.cron.find_previous_occurrence(&t, false) {
                Ok(p) if p < t => t = p,
                _ => break,
            }
        }
        out.reverse();
        out
    }

    /// The first tick after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}

/// One recurring job.
#[derive(Debug, Clone, PartialEq)]
pub struct CronEntry {
    /// Unique among entries: part of each tick's unique key and of the tick record.
    pub name: String,
    pub schedule: Schedule,
    pub job_type: String,
    pub payload: serde_json::Value,
    pub queue: String,
    pub priority: Option<Priority>,
}

impl CronEntry {
    /// An entry on the default queue with the type's default priority.
    pub fn new(
        name: impl Into<String>,
        schedule: &str,
        job_type: impl Into<String>,
        payload: serde_json::Value,
    ) -> Result<CronEntry, String> {
        let name = name.into();
        if name.is_empty() || name.chars().count() > 100 || name.contains('\0') {
            return Err("cron name: must be 1 to 100 characters long, without NUL".into());
        }
        Ok(CronEntry {
            name,
            schedule: Schedule::parse(schedule)?,
            job_type: job_type.into(),
            payload,
            queue: "default".into(),
            priority: None,
        })
    }

    /// The unique key of one tick's job.
    pub fn unique_key(&self, tick: DateTime<Utc>) -> String {
        format!("cron:{}:{}", self.name, tick.timestamp())
    }

    /// The job of one tick: due at the tick (by the store's clock).
    pub fn job(&self, tick: DateTime<Utc>) -> NewJob {
        let mut j = NewJob::new(self.job_type.clone(), self.payload.clone())
            .queue(self.queue.clone())
            .unique_key(self.unique_key(tick))
            .run_at(tick);
        if let Some(p) = self.priority {
            j = j.priority(p);
        }
        j
    }
}

/// The leader's cron loop state: where each entry stands.
#[derive(Debug, Default)]
pub struct CronRunner {
    /// Entry → last tick known to be enqueued (read from the store on taking over).
    last: HashMap<String, DateTime<Utc>>,
    /// Whether `last` was read since this node last became the leader.
    synced: bool,
}

impl CronRunner {
    /// Forgets what it knew: the next run as leader reads the store again.
    pub fn step_down(&mut self) {
        self.synced = false;
        self.last.clear();
    }

    /// Enqueues every due tick of `entries` as of `now` (the caller is the leader).
    /// Returns the ticks this call enqueued, as (entry, tick).
    pub async fn run(
        &mut self,
        store: &dyn Store,
        entries: &[CronEntry],
        now: DateTime<Utc>,
        catch_up: u32,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        if !self.synced {
            for e in entries {
                // An entry never enqueued starts now: no history is made up.
                let last = store.cron_last_tick(&e.name).await?.unwrap_or(now);
                self.last.insert(e.name.clone(), last);
            }
            self.synced = true;
        }
        let mut done = Vec::new();
        for e in entries {
            let last = self.last.get(&e.name).copied().unwrap_or(now);
            let ticks = e.schedule.ticks(last, now, catch_up);
            if let Some(first) = ticks.first()
                && e.schedule.next_after(last).is_some_and(|n| n < *first)
            {
                tracing::warn!(cron = %e.name, since = %last, "cron ticks older than the catch-up bound were skipped");
            }
            for tick in ticks {
                if store
                    .enqueue_cron(&e.name, tick, e.job(tick))
                    .await?
                    .is_some()
                {
                    tracing::debug!(cron = %e.name, %tick, "cron tick enqueued");
                    done.push((e.name.clone(), tick));
                }
                self.last.insert(e.name.clone(), tick);
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{ManualClock, MemoryStore};
    use crate::{Clock, ListJobs};
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn store(clock: &Arc<ManualClock>) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new(clock.clone()))
    }

    async fn keys(store: &dyn Store) -> Vec<String> {
        let page = store
            .list(&ListJobs {
                limit: 500,
                ..ListJobs::default()
            })
            .await
            .unwrap();
        let mut k: Vec<String> = page.jobs.into_iter().filter_map(|j| j.unique_key).collect();
        k.sort();
        k
    }

    #[test]
    fn schedule_ticks_are_bounded_and_ordered() {
        let s = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(s.ticks(at(0), at(3), 10), vec![at(1), at(2), at(3)]);
        assert_eq!(s.ticks(at(0), at(100), 2), vec![at(99), at(100)]);
        assert!(s.ticks(at(5), at(5), 10).is_empty());
        let m = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            m.ticks(at(0), at(0) + chrono::Duration::minutes(11), 10)
                .len(),
            2
        );
        assert!(Schedule::parse("not a cron").is_err());
    }

    #[tokio::test]
    async fn leadership_is_exclusive_and_moves_when_the_leader_stops() {
        let clock = Arc::new(ManualClock::fixed());
        let store = store(&clock);
        let cfg = NodeConfig::default();
        let (la, lb) = (Leadership::elected(), Leadership::elected());
        let a = Elector::new(store.clone(), "a", &cfg, la.clone());
        let b = Elector::new(store.clone(), "b", &cfg, lb.clone());
        assert!(a.step().await);
        assert!(!b.step().await);
        assert!(la.is_leader() && !lb.is_leader());
        clock.advance(Duration::from_secs(1));
        assert!(a.step().await, "the holder renews");
        // a stops renewing (dies); after the ttl b takes over.
        clock.advance(Duration::from_secs(4));
        assert!(!b.step().await, "not before the lease expires");
        clock.advance(Duration::from_secs(2));
        assert!(b.step().await);
        assert!(!a.step().await, "the old leader sees the new holder");
        assert!(!la.is_leader() && lb.is_leader());
        // A graceful resign hands over at once.
        b.resign().await;
        assert!(!lb.is_leader());
        assert!(a.step().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_leader_stops_at_its_local_deadline() {
        let clock = Arc::new(ManualClock::fixed());
        let store = store(&clock);
        let cfg = NodeConfig::default();
        let l = Leadership::elected();
        let a = Elector::new(store, "a", &cfg, l.clone());
        assert!(a.step().await);
        tokio::time::advance(Duration::from_millis(4400)).await;
        assert!(l.is_leader());
        // No renew for 0.9 × ttl: it stops before the row (5 s) expires.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!l.is_leader());
        assert!(Leadership::standalone().is_leader());
    }

    #[tokio::test]
    async fn cron_ticks_are_neither_skipped_nor_doubled_across_a_leader_change() {
        let clock = Arc::new(ManualClock::fixed());
        clock.set(at(0));
        let store = store(&clock);
        let e = CronEntry::new("tick", "* * * * * *", "echo", json!({})).unwrap();
        let entries = vec![e];
        let mut a = CronRunner::default();
        assert!(
            a.run(&*store, &entries, clock.now(), 60)
                .await
                .unwrap()
                .is_empty()
        );
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            assert_eq!(
                a.run(&*store, &entries, clock.now(), 60)
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
        // a dies; b takes over 7 s later and catches up every missed tick once.
        clock.advance(Duration::from_secs(7));
        let mut b = CronRunner::default();
        let caught = b.run(&*store, &entries, clock.now(), 60).await.unwrap();
        assert_eq!(caught.len(), 7);
        // a was only stalled and runs again late: nothing doubles.
        assert!(
            a.run(&*store, &entries, clock.now(), 60)
                .await
                .unwrap()
                .is_empty()
        );
        let want: Vec<String> = (1..=10)
            .map(|s| format!("cron:tick:{}", at(s).timestamp()))
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(keys(&*store).await, want);
        assert_eq!(store.cron_last_tick("tick").await.unwrap(), Some(at(10)));
    }

    #[tokio::test]
    async fn cron_catch_up_is_bounded() {
        let clock = Arc::new(ManualClock::fixed());
        clock.set(at(0));
        let store = store(&clock);
        let entries = vec![CronEntry::new("t", "* * * * * *", "echo", json!({})).unwrap()];
        let mut a = CronRunner::default();
        a.run(&*store, &entries, clock.now(), 5).await.unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            a.run(&*store, &entries, clock.now(), 5)
                .await
                .unwrap()
                .len(),
            1
        );
        clock.advance(Duration::from_secs(999));
        let mut b = CronRunner::default();
        let caught = b.run(&*store, &entries, clock.now(), 5).await.unwrap();
        let ticks: Vec<DateTime<Utc>> = caught.into_iter().map(|(_, t)| t).collect();
        assert_eq!(ticks, (996..=1000).map(at).collect::<Vec<_>>());
    }
}
