//! The remote workers this process serves: who is connected, which types they run,
//! which jobs they hold, whether they were asked to stop. Kept in memory; what other
//! nodes must know is written to the store's node registry (role `remote`), so a worker
//! kyu stops hearing from is dead for every node and the leader rescues its jobs exactly
//! as for a dead kyu node. Any call of a worker, and a fetch that is waiting, is a sign
//! of life; the registry writes them at most once per [`BEAT_EVERY`] per worker.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kyu_actors::{NodeInfo, Store, telemetry};
use uuid::Uuid;

/// How often a live worker's node row is written (well inside `KYU_NODE_DEAD_AFTER`).
pub const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A worker not heard from for this long is dropped from memory (its node row is the
/// leader's to judge).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// One connected worker, as this process knows it.
#[derive(Debug, Clone)]
pub struct RemoteWorker {
    pub id: String,
    pub host: String,
    pub version: String,
    pub types: BTreeSet<String>,
    pub started_at: DateTime<Utc>,
    pub last_seen: Instant,
    pub last_seen_at: DateTime<Utc>,
    /// Jobs handed to it and not yet reported, with (queue, type) for metrics.
    pub in_flight: HashMap<Uuid, (String, String)>,
    /// Long-poll fetches it has waiting now.
    pub waiting: usize,
    pub stopped: bool,
    beat_written: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    workers: HashMap<String, RemoteWorker>,
    /// Types registered by any worker since start: enqueueing them is accepted.
    registered: HashSet<String>,
}

/// The worker `id`, made if unknown, marked alive now.
fn entry<'a>(g: &'a mut Inner, id: &str) -> &'a mut RemoteWorker {
    let now = Instant::now();
    let w = g
        .workers
        .entry(id.to_owned())
        .or_insert_with(|| RemoteWorker {
            id: id.to_owned(),
            host: String::new(),
            version: String::new(),
            types: BTreeSet::new(),
            started_at: Utc::now(),
            last_seen: now,
            last_seen_at: Utc::now(),
            in_flight: HashMap::new(),
            waiting: 0,
            stopped: false,
            beat_written: None,
        });
    w.last_seen = now;
    w.last_seen_at = Utc::now();
    w
}

/// A fetch waiting: the worker counts as alive until it drops.
pub struct WaitGuard {
    workers: RemoteWorkers,
    worker: String,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut g = self.workers.lock();
        if let Some(w) = g.workers.get_mut(&self.worker) {
            w.waiting = w.waiting.saturating_sub(1);
            w.last_seen = Instant::now();
            w.last_seen_at = Utc::now();
        }
    }
}

/// Shared by the API handlers.
#[derive(Clone, Default)]
pub struct RemoteWorkers {
    inner: Arc<Mutex<Inner>>,
}

/// What a worker says of itself when it fetches.
pub struct Hello<'a> {
    pub id: &'a str,
    pub types: &'a [String],
    pub host: Option<&'a str>,
    pub version: Option<&'a str>,
}

impl RemoteWorkers {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a fetch: the worker exists, serves `types`, and waits until the guard
    /// drops (also when the client goes away mid-wait). Returns whether it was asked
    /// to stop.
    pub fn fetch_started(&self, hello: &Hello<'_>) -> (bool, WaitGuard) {
        let mut g = self.lock();
        g.registered.extend(hello.types.iter().cloned());
        let w = entry(&mut g, hello.id);
        w.types.extend(hello.types.iter().cloned());
        if let Some(h) = hello.host {
            w.host = h.to_owned();
        }
        if let Some(v) = hello.version {
            w.version = v.to_owned();
        }
        w.waiting += 1;
        let stopped = w.stopped;
        drop(g);
        (
            stopped,
            WaitGuard {
                workers: self.clone(),
                worker: hello.id.to_owned(),
            },
        )
    }

    /// Jobs handed to `worker` ((id, queue, type) each).
    pub fn handed(&self, worker: &str, jobs: impl IntoIterator<Item = (Uuid, String, String)>) {
        let mut g = self.lock();
        let w = entry(&mut g, worker);
        for (id, queue, job_type) in jobs {
            w.in_flight.insert(id, (queue, job_type));
        }
    }

    /// A heartbeat or report from `worker`: alive now (known again after a restart
    /// of this process, when its first call is not a fetch).
    pub fn seen(&self, worker: &str) {
        entry(&mut self.lock(), worker);
    }

    /// A job `worker` held is no longer its (reported, or its lease was lost); returns
    /// its (queue, type) if known.
    pub fn finished(&self, worker: &str, job: Uuid) -> Option<(String, String)> {
        self.lock()
            .workers
            .get_mut(worker)
            .and_then(|w| w.in_flight.remove(&job))
    }

    /// The (queue, type) of a job `worker` holds, if known.
    pub fn labels(&self, worker: &str, job: Uuid) -> Option<(String, String)> {
        self.lock()
            .workers
            .get(worker)
            .and_then(|w| w.in_flight.get(&job).cloned())
    }

    /// Asks `worker` to stop; false if this process does not know it.
    pub fn stop(&self, worker: &str) -> bool {
        match self.lock().workers.get_mut(worker) {
            Some(w) => {
                w.stopped = true;
                true
            }
            None => false,
        }
    }

    pub fn is_stopped(&self, worker: &str) -> bool {
        self.lock().workers.get(worker).is_some_and(|w| w.stopped)
    }

    /// Whether some worker registered `job_type`.
    pub fn serves(&self, job_type: &str) -> bool {
        self.lock().registered.contains(job_type)
    }

    /// Types served by a worker heard from within `live`.
    pub fn live_types(&self, live: Duration) -> BTreeSet<String> {
        self.lock()
            .workers
            .values()
            .filter(|w| w.last_seen.elapsed() <= live || w.waiting > 0)
            .flat_map(|w| w.types.iter().cloned())
            .collect()
    }

    /// Workers heard from within `live` (or waiting in a fetch now).
    pub fn snapshot(&self, live: Duration) -> Vec<RemoteWorker> {
        let mut v: Vec<RemoteWorker> = self
            .lock()
            .workers
            .values()
            .filter(|w| w.last_seen.elapsed() <= live || w.waiting > 0)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Node rows due for a heartbeat: live workers whose row was not written within
    /// [`BEAT_EVERY`]. Marks them written.
    fn due_beats(&self, live: Duration) -> Vec<NodeInfo> {
        let mut g = self.lock();
        g.workers
            .retain(|_, w| w.waiting > 0 || w.last_seen.elapsed() < FORGET_AFTER);
        let mut out = Vec::new();
        let (mut connected, mut busy) = (0usize, 0usize);
        for w in g.workers.values_mut() {
            if w.waiting > 0 || w.last_seen.elapsed() <= live {
                connected += 1;
                busy += w.in_flight.len();
            }
            // A row only for a sign of life since the last row: a killed worker's row
            // stops at its last call, so it is dead `dead_after` later, not more.
            let news = w.waiting > 0 || w.beat_written.is_none_or(|t| w.last_seen > t);
            if !news || w.beat_written.is_some_and(|t| t.elapsed() < BEAT_EVERY) {
                continue;
            }
            w.beat_written = Some(Instant::now());
            out.push(NodeInfo {
                id: w.id.clone(),
                host: w.host.clone(),
                version: w.version.clone(),
                role: "remote".into(),
                pool_size: u32::try_from(w.in_flight.len()).unwrap_or(u32::MAX),
                started_at: w.started_at,
            });
        }
        metrics::gauge!(telemetry::WORKERS, "kind" => "remote", "state" => "connected")
            .set(connected as f64);
        metrics::gauge!(telemetry::WORKERS, "kind" => "remote", "state" => "busy")
            .set(busy as f64);
        out
    }

    /// Writes live workers' node rows every [`BEAT_EVERY`] until the process ends. A
    /// worker is live while it calls or waits in a fetch; one silent for `dead_after`
    /// gets no more rows, so the leader finds it dead and rescues its jobs.
    pub fn spawn_beats(&self, store: Arc<dyn Store>, dead_after: Duration) {
        let me = self.clone();
        // Shown as connected while heard from within half the dead interval.
        let live = (dead_after / 2).max(Duration::from_millis(500));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT_EVERY / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for node in me.due_beats(live) {
                    if let Err(e) = store.heartbeat(&node).await {
                        tracing::warn!(worker = %node.id, error = %e, "remote worker heartbeat not written");
                    }
                }
            }
        });
    }
}
