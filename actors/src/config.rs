//! Engine settings with their defaults, checked once at start.

use std::time::Duration;

pub use crate::prefetch::Prefetch;

/// How the engine runs. `validate` names the first bad field.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Pool size at start.
    pub workers: usize,
    pub min_workers: usize,
    pub max_workers: usize,
    /// Let the autoscaler resize the pool (off: a fixed pool, for benchmarks).
    pub autoscale: bool,
    pub autoscale_interval: Duration,
    /// Fewest ticks between two resizes (anti-flapping).
    pub autoscale_cooldown: Duration,
    /// Most jobs one claim takes.
    pub claim_batch: u32,
    /// Claimed-but-not-started jobs kept ahead of the pool (see [`Prefetch`]).
    pub prefetch: Prefetch,
    /// Fallback poll when no wake-up arrives.
    pub poll_interval: Duration,
    /// Whether the fallback poll also claims for waiting remote fetches: needed only
    /// where no wake-up reaches this node (several nodes on MariaDB without Redis).
    pub fetch_on_poll: bool,
    /// Lease per claim; renewed every third of it while a job runs.
    pub lease: Duration,
    pub rescue_interval: Duration,
    /// Jobs due this long are claimed before any priority (the starvation bound).
    pub aging_bound: Duration,
    /// Finished jobs older than this are pruned.
    pub retention: Duration,
    pub prune_interval: Duration,
    /// Retry back-off base: attempt n waits base × 2^(n-1), ± 25 % jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Most outcomes in one store write.
    pub ack_batch: usize,
    /// Token bucket for providers that have none of their own.
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Threads of the runtime handlers run on, apart from the engine's actors, so a
    /// handler that blocks its thread cannot starve lease renewal or the API.
    pub job_threads: usize,
    /// Supervisor: restarts allowed per child within `restart_window`.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// A registered node whose last heartbeat is older than this is dead: the leader
    /// rescues its running jobs without waiting for their leases. `None`: no node
    /// registry (a library engine on its own), leases alone decide.
    pub node_dead_after: Option<Duration>,
    /// Rows of dead nodes are deleted after this long.
    pub node_retention: Duration,
    /// How often the leader looks for due cron ticks.
    pub cron_interval: Duration,
    /// Most missed ticks of one cron entry a new leader still enqueues (the newest).
    pub cron_catch_up: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 5,
            min_workers: 1,
            max_workers: 10,
            autoscale: true,
            autoscale_interval: Duration::from_secs(5),
            autoscale_cooldown: Duration::from_secs(15),
            claim_batch: 500,
            prefetch: Prefetch::default(),
            poll_interval: Duration::from_secs(5),
            fetch_on_poll: false,
            lease: Duration::from_secs(30),
            rescue_interval: Duration::from_secs(5),
            aging_bound: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            ack_batch: 500,
            rate_limit_per_minute: 100,
            rate_limit_burst: 10,
            job_threads: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            node_dead_after: None,
            node_retention: Duration::from_secs(3600),
            cron_interval: Duration::from_millis(250),
            cron_catch_up: 60,
        }
    }
}

/// A config field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("engine config: {field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: &str| {
            Err(ConfigError {
                field,
                message: message.into(),
            })
        };
        if self.max_workers == 0 || self.max_workers > 1000 {
            return bad("max_workers", "expected 1..=1000");
        }
        if self.min_workers == 0 || self.min_workers > self.max_workers {
            return bad("min_workers", "expected 1..=max_workers");
        }
        if self.workers < self.min_workers || self.workers > self.max_workers {
            return bad("workers", "expected min_workers..=max_workers");
        }
        if self.claim_batch == 0 {
            return bad("claim_batch", "expected at least 1");
        }
        if self.lease < Duration::from_millis(100) {
            return bad("lease", "expected at least 100ms");
        }
        for (field, d) in [
            ("poll_interval", self.poll_interval),
            ("rescue_interval", self.rescue_interval),
            ("autoscale_interval", self.autoscale_interval),
            ("prune_interval", self.prune_interval),
            ("cron_interval", self.cron_interval),
        ] {
            if d.is_zero() {
                return bad(field, "expected more than 0");
            }
        }
        if self.job_threads == 0 || self.job_threads > 1024 {
            return bad("job_threads", "expected 1..=1024");
        }
        if self.ack_batch == 0 {
            return bad("ack_batch", "expected at least 1");
        }
        if self.rate_limit_per_minute == 0 {
            return bad("rate_limit_per_minute", "expected at least 1");
        }
        Ok(())
    }
}
