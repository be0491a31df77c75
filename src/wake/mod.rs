//! Wake-ups across processes.
//!
//! Why: a dispatcher that finds nothing to claim sleeps until the next poll
//! (`JOB_QUEUE_POLL_INTERVAL`, 5 s by default). In one process an enqueue wakes it at
//! once ([`kyu_actors::Engine::wake`]), but a job created through an API node is
//! committed by a process whose engine is elsewhere (or absent): without a signal the
//! worker nodes find it only at their next poll. Here every committed enqueue that makes
//! a job due now is announced on a bus, and every node with an engine wakes its
//! dispatcher when it hears it.
//!
//! The bus carries no job and no state: the store stays the only source of truth, a
//! message only says "look now". So a lost message costs latency, never a job — polling
//! stays on everywhere as the fallback, and a node that (re)connects wakes itself once
//! because it may have missed messages while it was away.
//!
//! Transports ([`WakeMode`], `KYU_WAKE`): Redis pub/sub ([`redis`], channel
//! `<KYU_REDIS_PREFIX>wake`) when `REDIS_URL` is set, PostgreSQL LISTEN/NOTIFY
//! ([`postgres`], channel [`PG_CHANNEL`]) otherwise when the database is PostgreSQL.
//! MariaDB without Redis has no such signal and SQLite runs in one process: both poll.
//!
//! Publishing ([`Publisher`]) never blocks an enqueue: it sets a flag that a background
//! task turns into one message, so a burst of commits (or a whole batch) costs one
//! message per [`COALESCE`] window. Each process has a random id sent as the payload;
//! a process ignores its own messages (its engine was woken in-process already).
//!
//! Subscribing ([`subscribe`]) runs in `kyu serve` (with the engine) and `kyu worker`: a
//! dedicated connection receives messages and calls the wake function. The connection is
//! checked end to end by a probe message this process publishes every [`PROBE_EVERY`]
//! and must hear back (a cut that delivers no error — a half-open socket, a killed
//! LISTEN backend behind a proxy — is otherwise invisible). A lost
//! connection is remade with back-off (100 ms doubling to 2 s), with one warning per
//! outage and a note when it is back; jobs meanwhile start by polling.

pub mod postgres;
pub mod redis;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kyu_actors::{Engine, NewJob, RunAt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::config::Settings;

/// The PostgreSQL NOTIFY channel (per database, so tests on their own databases never
/// hear each other).
pub const PG_CHANNEL: &str = "kyu_jobs";
/// At most one message per this window; commits meanwhile share the next one.
pub const COALESCE: Duration = Duration::from_millis(2);
/// How often a subscriber checks its connection end to end with a probe message.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);
/// Connecting (and subscribing) may take this long before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One publish may take this long (a hung Redis or database delays wake-ups only).
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Payloads starting with this are probes, not wake-ups.
const PROBE: &str = "probe:";

/// How nodes learn of new jobs (`KYU_WAKE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakeMode {
    /// Redis when `REDIS_URL` is set, else PostgreSQL when the database is, else none.
    #[default]
    Auto,
    Redis,
    Postgres,
    /// Polling only.
    Off,
}

impl FromStr for WakeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(WakeMode::Auto),
            "redis" => Ok(WakeMode::Redis),
            "postgres" | "postgresql" | "pg" => Ok(WakeMode::Postgres),
            "off" | "none" | "poll" => Ok(WakeMode::Off),
            other => Err(format!("unknown wake mode {other:?}")),
        }
    }
}

impl fmt::Display for WakeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WakeMode::Auto => "auto",
            WakeMode::Redis => "redis",
            WakeMode::Postgres => "postgres",
            WakeMode::Off => "off",
        })
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The transport `s` selects, or why it cannot be used (a setting error).
pub fn transport(s: &Settings) -> Result<Option<Transport>, String> {
    let redis = || -> Result<Transport, String> {
        let url = s
            .redis_url
            .as_deref()
            .ok_or("KYU_WAKE=redis needs REDIS_URL")?;
        Ok(Transport::Redis {
            url: url.to_owned(),
            channel: format!("{}wake", s.redis_prefix),
        })
    };
    let pg = || -> Result<Transport, String> {
        if !is_postgres(&s.database_url) {
            return Err("KYU_WAKE=postgres needs a postgres:// DATABASE_URL".into());
        }
        Ok(Transport::Postgres {
            url: s.database_url.clone(),
            channel: PG_CHANNEL.to_owned(),
        })
    };
    match s.wake {
        WakeMode::Off => Ok(None),
        WakeMode::Redis => redis().map(Some),
        WakeMode::Postgres => pg().map(Some),
        WakeMode::Auto if s.redis_url.is_some() => redis().map(Some),
        WakeMode::Auto if is_postgres(&s.database_url) => pg().map(Some),
        WakeMode::Auto => Ok(None),
    }
}

/// Where wake-ups travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Redis { url: String, channel: String },
    Postgres { url: String, channel: String },
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Redis { .. } => "redis",
            Transport::Postgres { .. } => "postgres",
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            Transport::Redis { channel, .. } | Transport::Postgres { channel, .. } => channel,
        }
    }

    /// A connection that publishes (made lazily, remade after errors).
    fn sender(&self) -> anyhow::Result<Box<dyn Sender>> {
        Ok(match self {
            Transport::Redis { url, channel } => Box::new(redis::RedisSender::new(url, channel)?),
            Transport::Postgres { url, channel } => {
                Box::new(postgres::PgSender::new(url, channel)?)
            }
        })
    }

    /// Connects a subscription: its payloads arrive on the receiver, which closes when
    /// the connection is lost. Dropping the [`Subscription`] closes the connection.
    async fn subscribe(&self) -> Result<Subscription, String> {
        match self {
            Transport::Redis { url, channel } => redis::subscribe(url, channel).await,
            Transport::Postgres { url, channel } => postgres::subscribe(url, channel).await,
        }
    }
}

/// One message out (a backend's publishing connection).
#[async_trait]
trait Sender: Send {
    async fn send(&mut self, payload: &str) -> Result<(), String>;
}

/// A live subscription: payloads in, reader task aborted on drop.
struct Subscription {
    rx: mpsc::Receiver<String>,
    reader: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Whether a committed enqueue of `jobs` made a job due now (delayed jobs are woken by
/// the scheduler of whichever node claims them, or found by polling).
pub fn any_due(jobs: &[NewJob]) -> bool {
    let now = Utc::now();
    jobs.iter().any(|j| match j.run_at {
        RunAt::Now => true,
        RunAt::At(t) => t <= now,
        RunAt::After(d) => d.is_zero(),
    })
}

/// This process on the bus: its id, and the transport (if any).
#[derive(Clone)]
pub struct WakeBus {
    transport: Option<Transport>,
    node: Arc<str>,
}

impl WakeBus {
    /// The bus `s` configures (none: a bus that does nothing).
    pub fn from_settings(s: &Settings) -> anyhow::Result<WakeBus> {
        let transport = transport(s).map_err(|m| anyhow::anyhow!("bad setting KYU_WAKE: {m}"))?;
        Ok(WakeBus::new(transport))
    }

    pub fn new(transport: Option<Transport>) -> WakeBus {
        WakeBus {
            transport,
            node: uuid::Uuid::new_v4().simple().to_string().into(),
        }
    }

    pub fn transport(&self) -> Option<&Transport> {
        self.transport.as_ref()
    }

    /// Starts the publishing task (on the current runtime); a no-op handle without a
    /// transport.
    pub fn publisher(&self) -> anyhow::Result<Publisher> {
        let Some(t) = &self.transport else {
            return Ok(Publisher::none());
        };
        let sender = t.sender()?;
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn(publish_loop(
            sender,
            notify.clone(),
            self.node.clone(),
            t.name(),
        ));
        Ok(Publisher {
            inner: Some(Arc::new(PublisherInner { notify, task })),
        })
    }

    /// Starts the subscribing task: `wake` runs on each message from another process
    /// and on each (re)connection. `None` without a transport; the task stops when the
    /// returned [`Listening`] drops.
    pub fn subscribe(
        &self,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<Option<Listening>> {
        let Some(t) = &self.transport else {
            return Ok(None);
        };
        let prober = t.sender()?;
        tracing::info!(
            transport = t.name(),
            channel = t.channel(),
            "listening for wake-ups from other nodes"
        );
        Ok(Some(Listening(tokio::spawn(subscribe_loop(
            t.clone(),
            prober,
            self.node.clone(),
            wake,
        )))))
    }

    /// [`WakeBus::subscribe`] waking `engine`'s dispatcher (while the engine exists).
    pub fn wake_engine(&self, engine: &Arc<Engine>) -> anyhow::Result<Option<Listening>> {
        let engine = Arc::downgrade(engine);
        self.subscribe(Arc::new(move || {
            if let Some(e) = engine.upgrade() {
                e.wake();
            }
        }))
    }
}

/// A running subscription task; dropping it stops the task.
pub struct Listening(JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The publishing handle: cheap to clone, never waits.
#[derive(Clone, Default)]
pub struct Publisher {
    inner: Option<Arc<PublisherInner>>,
}

struct PublisherInner {
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for PublisherInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    /// A handle that publishes nothing (one node, or wake-ups off).
    pub fn none() -> Publisher {
        Publisher { inner: None }
    }

    /// Announces that a job may be claimable now. Returns at once; bursts coalesce.
    pub fn publish(&self) {
        if let Some(i) = &self.inner {
            i.notify.notify_one();
        }
    }

    /// [`Publisher::publish`] if committing `jobs` (whose results are `done`) made a
    /// new job due now.
    pub fn after_enqueue(&self, due: bool, done: &[kyu_actors::Enqueued]) {
        if due && done.iter().any(|e| !e.duplicate) {
            self.publish();
        }
    }
}

/// One message per wake-up request, at most one per [`COALESCE`]: `notify_one` keeps a
/// single permit, so everything requested while a message is on its way becomes one
/// more message after it.
async fn publish_loop(
    mut sender: Box<dyn Sender>,
    notify: Arc<Notify>,
    node: Arc<str>,
    transport: &'static str,
) {
    let mut down = Outage::new(transport, "publishing wake-ups");
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        notify.notified().await;
        if let Some(t) = retry_at {
            // Backing off after a failure: this wake-up goes out when the wait is over
            // (requests meanwhile join it), so the first one after an outage is not lost.
            tokio::time::sleep_until(t).await;
        }
        let r = match tokio::time::timeout(SEND_TIMEOUT, sender.send(&node)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {SEND_TIMEOUT:?}")),
        };
        match r {
            Ok(()) => {
                retry_at = None;
                down.up();
            }
            Err(e) => {
                retry_at = Some(tokio::time::Instant::now() + down.failed(&e));
            }
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// Connect, wake once, wake on every foreign message, probe; on loss back off and
/// connect again — forever (the task is aborted at shutdown).
async fn subscribe_loop(
    t: Transport,
    mut prober: Box<dyn Sender>,
    node: Arc<str>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let mut down = Outage::new(t.name(), "wake-up subscription");
    let probe = format!("{PROBE}{node}");
    loop {
        let sub = match tokio::time::timeout(CONNECT_TIMEOUT, t.subscribe()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
        };
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                tokio::time::sleep(down.failed(&e)).await;
                continue;
            }
        };
        down.up();
        tracing::info!(
            transport = t.name(),
            channel = t.channel(),
            "wake-up subscription connected"
        );
        // Messages sent while we were away are gone: look once now.
        wake();
        let why = listen(&mut sub, &mut *prober, &probe, &node, &*wake).await;
        drop(sub);
        tokio::time::sleep(down.failed(why)).await;
    }
}

/// Serves one connection until it is lost; returns why.
async fn listen(
    sub: &mut Subscription,
    prober: &mut dyn Sender,
    probe: &str,
    node: &str,
    wake: &(dyn Fn() + Send + Sync),
) -> &'static str {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Set when a probe went out and nothing has been heard since.
    let mut waiting = false;
    loop {
        tokio::select! {
            m = sub.rx.recv() => {
                let Some(payload) = m else { return "connection lost" };
                waiting = false;
                if !payload.starts_with(PROBE) && payload != node {
                    wake();
                }
            }
            _ = tick.tick() => {
                if waiting {
                    return "probe not heard back";
                }
                waiting = true;
                // A failed probe send is not this connection's fault; the next tick
                // then finds nothing heard and reconnects, which is what we want.
                let _ = tokio::time::timeout(SEND_TIMEOUT, prober.send(probe)).await;
            }
        }
    }
}

/// Back-off and rate-limited logging for one connection: a warning when it goes down,
/// debug while it stays down, info when it is back.
struct Outage {
    transport: &'static str,
    what: &'static str,
    failures: u32,
}

impl Outage {
    fn new(transport: &'static str, what: &'static str) -> Outage {
        Outage {
            transport,
            what,
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next try.
    fn failed(&mut self, error: &str) -> Duration {
        if self.failures == 0 {
            tracing::warn!(
                transport = self.transport,
                error,
                "{} lost; jobs from other nodes start by polling until it is back",
                self.what
            );
        } else {
            tracing::debug!(
                transport = self.transport,
                error,
                failures = self.failures,
                "{} still down",
                self.what
            );
        }
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(6);
        (BACKOFF_MIN * 2u32.pow(exp)).min(BACKOFF_MAX)
    }

    fn up(&mut self) {
        if self.failures > 0 {
            tracing::info!(transport = self.transport, "{} is back", self.what);
        }
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env = crate::config::Env::from_pairs(pairs.iter().copied());
        Settings::from_env(&env).expect("settings")
    }

    #[test]
    fn auto_prefers_redis_then_postgres_then_nothing() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/db"),
            ("REDIS_URL", "redis://r:6379"),
            ("KYU_REDIS_PREFIX", "t1:"),
        ]);
        assert_eq!(
            transport(&s),
            Ok(Some(Transport::Redis {
                url: "redis://r:6379".into(),
                channel: "t1:wake".into()
            }))
        );
        let s = settings(&[("DATABASE_URL", "postgres://x/db")]);
        assert_eq!(
            transport(&s).ok().flatten().map(|t| t.name()),
            Some("postgres")
        );
        let s = settings(&[("DATABASE_URL", "mysql://x/db")]);
        assert_eq!(transport(&s), Ok(None));
        let s = settings(&[("DATABASE_URL", "sqlite://kyu.db")]);
        assert_eq!(transport(&s), Ok(None));
        let s = settings(&[("DATABASE_URL", "postgres://x/db"), ("KYU_WAKE", "off")]);
        assert_eq!(transport(&s), Ok(None));
    }

    #[test]
    fn a_forced_transport_that_cannot_work_is_a_setting_error() {
        let env = crate::config::Env::from_pairs([("KYU_WAKE", "redis")]);
        let err = Settings::from_env(&env).expect_err("no REDIS_URL");
        assert!(err.to_string().contains("KYU_WAKE"), "{err}");
        let env = crate::config::Env::from_pairs([("KYU_WAKE", "postgres")]);
        assert!(Settings::from_env(&env).is_err());
        let env = crate::config::Env::from_pairs([("KYU_WAKE", "sometimes")]);
        assert!(Settings::from_env(&env).is_err());
    }

    #[test]
    fn only_jobs_due_now_need_a_wake_up() {
        let now = NewJob::new("noop", serde_json::json!({}));
        let later = NewJob::new("noop", serde_json::json!({})).delay(Duration::from_secs(60));
        assert!(any_due(std::slice::from_ref(&now)));
        assert!(!any_due(std::slice::from_ref(&later)));
        assert!(any_due(&[later, now]));
    }

    #[test]
    fn back_off_grows_to_a_cap_and_resets() {
        let mut o = Outage::new("redis", "test");
        let waits: Vec<_> = (0..9).map(|_| o.failed("x")).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().expect("some"), BACKOFF_MAX);
        o.up();
        assert_eq!(o.failed("x"), BACKOFF_MIN);
    }

    /// A transport-free publisher is a no-op; a subscription with nothing configured
    /// starts nothing.
    #[tokio::test]
    async fn no_transport_means_no_tasks() {
        let bus = WakeBus::new(None);
        bus.publisher().expect("publisher").publish();
        assert!(bus.subscribe(Arc::new(|| {})).expect("subscribe").is_none());
    }
}
