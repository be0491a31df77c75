//! Settings from the environment, with the seed's names (`JOB_QUEUE_*`,
//! `RATE_LIMIT_*`), `DATABASE_URL` and `KYU_*`. A bad value stops start-up with an
//! error that names the key. The source is a map, so tests never touch the process
//! environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use std::net::SocketAddr;

use crate::api::auth::{TokenEntry, parse_tokens};
use crate::cli::DEFAULT_DATABASE_URL;
use crate::store::failpoint::Failpoints;
use kyu_actors::Prefetch;
use kyu_actors::flow::{FlowRules, FlowSetting};

/// Every key `Settings::from_env` reads for operators (the crash-test hooks
/// `KYU_LEDGER_PATH` and `KYU_FAILPOINTS` aside). `config/kyu.toml` documents each.
pub const KEYS: &[&str] = &[
    "DATABASE_URL",
    "JOB_QUEUE_WORKER_COUNT",
    "KYU_WORKERS_MIN",
    "KYU_WORKERS_MAX",
    "KYU_AUTOSCALE",
    "JOB_QUEUE_MAX_RETRIES",
    "JOB_QUEUE_BATCH_SIZE",
    "JOB_QUEUE_POLL_INTERVAL",
    "KYU_LEASE",
    "KYU_RESCUE_INTERVAL",
    "KYU_SHUTDOWN_GRACE",
    "KYU_RETENTION",
    "RATE_LIMIT_REQUESTS_PER_MINUTE",
    "RATE_LIMIT_BURST_SIZE",
    "JOB_WORKER_ENABLED",
    "KYU_BIND",
    "KYU_API_TOKENS",
    "KYU_MAX_BODY_BYTES",
    "KYU_MAX_PAYLOAD_BYTES",
    "KYU_MAX_BATCH",
    "KYU_HEADER_READ_TIMEOUT",
    "KYU_MAX_CONNECTIONS",
    "KYU_API_RATE_LIMIT_PER_MINUTE",
    "KYU_API_RATE_LIMIT_PER_HOUR",
    "KYU_API_RATE_LIMIT_ROLES",
    "KYU_API_RATE_LIMIT_STORAGE",
    "AI_REQUEST_TIMEOUT",
    "AI_MAX_CONCURRENT_REQUESTS",
    "AI_FALLBACK_ENABLED",
    "GROQ_API_KEY",
    "GROQ_BASE_URL",
    "GROQ_MODEL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "KYU_RATE_LIMITS",
    "KYU_FETCH_ALLOW_PRIVATE",
    "KYU_FETCH_ALLOW",
    "KYU_FETCH_MAX_BYTES",
    "KYU_FETCH_TIMEOUT",
    "KYU_FETCH_MAX_REDIRECTS",
    "KYU_WEBHOOK_SECRET",
    "KYU_WEBHOOK_ALLOW_PRIVATE",
    "KYU_WEBHOOK_TIMEOUT",
    "REDIS_URL",
    "KYU_REDIS_PREFIX",
    "KYU_WAKE",
    "KYU_METRICS_SAMPLE_INTERVAL",
    "KYU_METRICS_BIND",
    "KYU_NODE_HEARTBEAT_INTERVAL",
    "KYU_NODE_DEAD_AFTER",
    "KYU_NODE_RETENTION",
    "KYU_LEADER_TTL",
    "KYU_LEADER_RENEW_INTERVAL",
    "KYU_CRON",
    "KYU_CRON_CATCH_UP",
    "KYU_REMOTE_TYPE",
    "KYU_PREFETCH",
    "KYU_PREFETCH_MAX",
    "KYU_CONCURRENCY",
    "KYU_CONCURRENCY_KEY",
    "KYU_TIER_PRIORITY",
    "KYU_TIERS",
    "KYU_FAIR_SHARE_RATE",
    "KYU_FAIR_SHARE_WEIGHT",
];

/// Keys whose file form is a list of tables (`[[kyu_cron]]` …), carried as JSON.
const TABLE_LISTS: &[&str] = &[
    "KYU_CRON",
    "KYU_REMOTE_TYPE",
    "KYU_CONCURRENCY",
    "KYU_CONCURRENCY_KEY",
    "KYU_TIER_PRIORITY",
    "KYU_FAIR_SHARE_WEIGHT",
];

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad setting {key}={value:?}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub message: String,
}

/// Everything `kyu worker` needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub database_url: String,
    /// Pool size at start (`JOB_QUEUE_WORKER_COUNT`).
    pub worker_count: usize,
    pub workers_min: usize,
    pub workers_max: usize,
    /// Whether the autoscaler may resize the pool (`KYU_AUTOSCALE`).
    pub autoscale: bool,
    /// Retries after the first attempt for jobs that do not say (`JOB_QUEUE_MAX_RETRIES`).
    pub max_retries: u32,
    /// Most jobs one claim takes (`JOB_QUEUE_BATCH_SIZE`).
    pub batch_size: u32,
    /// Jobs claimed ahead of the pool (`KYU_PREFETCH`, `KYU_PREFETCH_MAX`).
    pub prefetch: Prefetch,
    /// Fallback poll when no wake-up arrives (`JOB_QUEUE_POLL_INTERVAL`).
    pub poll_interval: Duration,
    pub lease: Duration,
    pub rescue_interval: Duration,
    pub shutdown_grace: Duration,
    /// How long finished jobs are kept (`KYU_RETENTION`).
    pub retention: Duration,
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Whether `kyu serve` runs the engine beside the API (`JOB_WORKER_ENABLED`).
    pub worker_enabled: bool,
    /// The API's address (`KYU_BIND`).
    pub bind: SocketAddr,
    /// Bearer tokens (`KYU_API_TOKENS`: `name:role:sha256-hex`, comma separated).
    /// Empty: no auth, and the API binds to loopback only.
    pub tokens: Vec<TokenEntry>,
    /// Largest request body (`KYU_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest job payload, as JSON text (`KYU_MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Most jobs in one batch enqueue (`KYU_MAX_BATCH`).
    pub max_batch: usize,
    /// A client must send its request headers within this (`KYU_HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog (`KYU_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Requests per client per minute and hour (`KYU_API_RATE_LIMIT_*`; off by default).
    pub api_rate_limit: crate::api::rate_limit::RateLimitSettings,
    /// AI provider calls (used by the provider handlers).
    pub ai_request_timeout: Duration,
    pub ai_max_concurrent_requests: usize,
    pub ai_fallback_enabled: bool,
    /// Groq, or any OpenAI-compatible chat-completions server (`GROQ_*`).
    pub groq: ProviderSettings,
    /// Anthropic's messages API (`ANTHROPIC_*`).
    pub anthropic: ProviderSettings,
    /// Buckets of named providers (`KYU_RATE_LIMITS`: `groq=100/10,claude=50/5`, per
    /// minute / burst); other providers get `RATE_LIMIT_*`.
    pub provider_limits: std::collections::BTreeMap<String, kyu_actors::Limit>,
    /// What `extract_content` may fetch (`KYU_FETCH_*`).
    pub fetch: FetchSettings,
    /// How the `http` (webhook) job calls out (`KYU_WEBHOOK_*`).
    pub webhook: WebhookSettings,
    /// Redis for wake-ups and shared limits across nodes (`REDIS_URL`; none: one node).
    pub redis_url: Option<String>,
    /// Start of every Redis key and channel kyu uses (`KYU_REDIS_PREFIX`, default `kyu:`),
    /// so several deployments (or parallel tests) can share one Redis.
    pub redis_prefix: String,
    /// How other nodes learn of new jobs (`KYU_WAKE`): see [`crate::wake::WakeMode`].
    pub wake: crate::wake::WakeMode,
    /// How often queue gauges are read from the store (`KYU_METRICS_SAMPLE_INTERVAL`).
    pub metrics_sample_interval: Duration,
    /// Where `kyu worker` serves `/metrics` and `/healthz` (`KYU_METRICS_BIND`; none: no
    /// listener). `kyu serve` and `kyu api` serve them on `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// How often this process records its heartbeat (`KYU_NODE_HEARTBEAT_INTERVAL`).
    pub node_heartbeat_interval: Duration,
    /// A node silent this long is dead; the leader rescues its jobs (`KYU_NODE_DEAD_AFTER`).
    pub node_dead_after: Duration,
    /// Rows of dead nodes are deleted after this long (`KYU_NODE_RETENTION`).
    pub node_retention: Duration,
    /// The leader lease's lifetime (`KYU_LEADER_TTL`) and renew interval
    /// (`KYU_LEADER_RENEW_INTERVAL`).
    pub leader_ttl: Duration,
    pub leader_renew_interval: Duration,
    /// Recurring jobs the leader enqueues (`KYU_CRON`, or `[[kyu_cron]]` in the file).
    pub cron: Vec<crate::cluster::CronSpec>,
    /// Most missed ticks per cron entry a new leader still enqueues (`KYU_CRON_CATCH_UP`).
    pub cron_catch_up: u32,
    /// Job types run by remote workers (`KYU_REMOTE_TYPE`, or `[[kyu_remote_type]]`).
    pub remote_types: Vec<crate::handlers::remote_type::RemoteType>,
    /// Concurrency keys and their limits, key templates by type, priorities by tier
    /// (`[[kyu_concurrency]]`, `[[kyu_concurrency_key]]`, `[[kyu_tier_priority]]`).
    pub flow: kyu_actors::flow::FlowRules,
    /// Token name → tier (`KYU_TIERS`: `name=tier`, comma separated).
    pub tiers: std::collections::HashMap<String, String>,
    /// Jobs per second a tenant's share allows and tenants' weights
    /// (`KYU_FAIR_SHARE_RATE`, `[[kyu_fair_share_weight]]`).
    pub fair_share: kyu_actors::fair_share::FairShare,
    /// Registers the `ledger` job type (crash tests) writing to this file.
    pub ledger_path: Option<PathBuf>,
    pub failpoints: Option<Failpoints>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            worker_count: 5,
            workers_min: 1,
            workers_max: 10,
            autoscale: true,
            max_retries: 3,
            // The engine's default claim cap, written once.
            batch_size: kyu_actors::EngineConfig::default().claim_batch,
            prefetch: Prefetch::default(),
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            rescue_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            rate_limit_per_minute: 100,
            rate_limit_burst: 10,
            worker_enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            tokens: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            max_payload_bytes: 64 * 1024,
            max_batch: 1000,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            api_rate_limit: Default::default(),
            ai_request_timeout: Duration::from_secs(30),
            ai_max_concurrent_requests: 10,
            ai_fallback_enabled: true,
            groq: ProviderSettings {
                api_key: None,
                base_url: "https://api.groq.com/openai/v1".to_owned(),
                model: "llama-3.1-8b-instant".to_owned(),
            },
            anthropic: ProviderSettings {
                api_key: None,
                base_url: "https://api.anthropic.com".to_owned(),
                model: "claude-haiku-4-5".to_owned(),
            },
            provider_limits: std::collections::BTreeMap::new(),
            fetch: FetchSettings {
                allow_private: false,
                allow: Vec::new(),
                max_bytes: 5 * 1024 * 1024,
                timeout: Duration::from_secs(20),
                max_redirects: 5,
            },
            webhook: WebhookSettings {
                secret: None,
                allow_private: false,
                timeout: Duration::from_secs(30),
            },
            redis_url: None,
            redis_prefix: "kyu:".to_owned(),
            wake: crate::wake::WakeMode::Auto,
            metrics_sample_interval: Duration::from_secs(5),
            metrics_bind: None,
            node_heartbeat_interval: Duration::from_secs(2),
            node_dead_after: Duration::from_secs(10),
            node_retention: Duration::from_secs(3600),
            leader_ttl: Duration::from_secs(5),
            leader_renew_interval: Duration::from_secs(1),
            cron: Vec::new(),
            cron_catch_up: 60,
            remote_types: Vec::new(),
            flow: Default::default(),
            tiers: Default::default(),
            fair_share: Default::default(),
            ledger_path: None,
            failpoints: None,
        }
    }
}

/// A key/value source: the process environment or a test map.
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn process() -> Env {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Adds the settings of a TOML file (`config/kyu.toml`: the keys of [`KEYS`] in lower
    /// case) under those already set, so the environment overrides the file.
    pub fn with_file(self, path: &std::path::Path) -> Result<Env, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Self::bad("KYU_CONFIG", &source, format!("cannot read: {e}")))?;
        self.with_toml(&text, &source)
    }

    /// [`Env::with_file`] on text; `source` names it in errors.
    pub fn with_toml(mut self, text: &str, source: &str) -> Result<Env, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Self::bad("KYU_CONFIG", source, e.to_string()))?;
        for (k, v) in table {
            let key = k.to_ascii_uppercase();
            if !KEYS.contains(&key.as_str()) {
                return Err(Self::bad(
                    &k,
                    &v.to_string(),
                    format!("unknown key in {source}"),
                ));
            }
            let value = match v {
                // `[[kyu_cron]]` tables: carried as the JSON list KYU_CRON takes.
                // `[[kyu_cron]]` and `[[kyu_remote_type]]` tables: carried as the JSON
                // lists KYU_CRON and KYU_REMOTE_TYPE take.
                toml::Value::Array(items) if TABLE_LISTS.contains(&key.as_str()) => {
                    serde_json::to_string(&items)
                        .map_err(|e| Self::bad(&k, "[…]", e.to_string()))?
                }
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    v.to_string()
                }
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Self::bad(&k, "[…]", "expected a list of strings"))?
                    .join(","),
                other => {
                    return Err(Self::bad(
                        &k,
                        &other.to_string(),
                        "expected a string, number or boolean",
                    ));
                }
            };
            self.0.entry(key).or_insert(value);
        }
        Ok(self)
    }

    /// Sets `key` (a command-line flag over the environment).
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn bad(key: &str, value: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            value: value.to_owned(),
            message: message.into(),
        }
    }

    fn parse<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, ConfigError> {
        self.raw(key)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| Self::bad(key, v, format!("expected {what}")))
            })
            .transpose()
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.raw(key)
            .map(|v| {
                humantime::parse_duration(v.trim()).map_err(|e| {
                    Self::bad(
                        key,
                        v,
                        format!("expected a duration like 500ms, 5s or 2m ({e})"),
                    )
                })
            })
            .transpose()
    }

    /// A list of tables (`[[kyu_…]]` in the file, a JSON list in the environment);
    /// empty when unset.
    fn table_list<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Vec<T>, ConfigError> {
        self.raw(key).map_or(Ok(Vec::new()), |v| {
            serde_json::from_str(v)
                .map_err(|e| Self::bad(key, v, format!("expected a list of tables: {e}")))
        })
    }

    /// `KYU_PREFETCH`: "auto" (the default: measured, at most `KYU_PREFETCH_MAX` jobs
    /// ahead) or a fixed number of jobs per worker.
    fn prefetch(&self) -> Result<Prefetch, ConfigError> {
        let max: u32 = self
            .parse("KYU_PREFETCH_MAX", "a whole number")?
            .unwrap_or(kyu_actors::prefetch::AUTO_MAX);
        if max > 100_000 {
            return Err(Self::bad(
                "KYU_PREFETCH_MAX",
                &max.to_string(),
                "expected 0..=100000",
            ));
        }
        match self.raw("KYU_PREFETCH").map(str::trim) {
            None => Ok(Prefetch::default()),
            Some(v) if v.eq_ignore_ascii_case("auto") => Ok(Prefetch::Auto { max }),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(Prefetch::PerWorker(n)),
                _ => Err(Self::bad(
                    "KYU_PREFETCH",
                    v,
                    "expected auto or jobs per worker, 1..=1000",
                )),
            },
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.raw(key)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(Self::bad(key, v, "expected true or false")),
            })
            .transpose()
    }
}

impl Settings {
    /// Reads every key over the defaults, then checks the whole.
    pub fn from_env(env: &Env) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        if let Some(v) = env.raw("DATABASE_URL") {
            s.database_url = v.to_owned();
        }
        s.worker_count = env
            .parse("JOB_QUEUE_WORKER_COUNT", "a whole number")?
            .unwrap_or(s.worker_count);
        s.workers_min = env
            .parse("KYU_WORKERS_MIN", "a whole number")?
            .unwrap_or(s.workers_min);
        s.workers_max = env
            .parse("KYU_WORKERS_MAX", "a whole number")?
            .unwrap_or(s.workers_max);
        s.autoscale = env.flag("KYU_AUTOSCALE")?.unwrap_or(s.autoscale);
        s.max_retries = env
            .parse("JOB_QUEUE_MAX_RETRIES", "a whole number")?
            .unwrap_or(s.max_retries);
        s.batch_size = env
            .parse("JOB_QUEUE_BATCH_SIZE", "a whole number")?
            .unwrap_or(s.batch_size);
        s.prefetch = env.prefetch()?;
        s.poll_interval = env
            .duration("JOB_QUEUE_POLL_INTERVAL")?
            .unwrap_or(s.poll_interval);
        s.lease = env.duration("KYU_LEASE")?.unwrap_or(s.lease);
        s.rescue_interval = env
            .duration("KYU_RESCUE_INTERVAL")?
            .unwrap_or(s.rescue_interval);
        s.shutdown_grace = env
            .duration("KYU_SHUTDOWN_GRACE")?
            .unwrap_or(s.shutdown_grace);
        s.retention = env.duration("KYU_RETENTION")?.unwrap_or(s.retention);
        s.rate_limit_per_minute = env
            .parse("RATE_LIMIT_REQUESTS_PER_MINUTE", "a whole number")?
            .unwrap_or(s.rate_limit_per_minute);
        s.rate_limit_burst = env
            .parse("RATE_LIMIT_BURST_SIZE", "a whole number")?
            .unwrap_or(s.rate_limit_burst);
        s.worker_enabled = env.flag("JOB_WORKER_ENABLED")?.unwrap_or(s.worker_enabled);
        s.bind = env
            .parse("KYU_BIND", "an address like 127.0.0.1:7878")?
            .unwrap_or(s.bind);
        if let Some(v) = env.raw("KYU_API_TOKENS") {
            // The value holds hashes, not tokens, but is still not echoed back.
            s.tokens = parse_tokens(v).map_err(|m| Env::bad("KYU_API_TOKENS", "…", m))?;
        }
        s.max_body_bytes = env
            .parse("KYU_MAX_BODY_BYTES", "a number of bytes")?
            .unwrap_or(s.max_body_bytes);
        s.max_payload_bytes = env
            .parse("KYU_MAX_PAYLOAD_BYTES", "a number of bytes")?
            .unwrap_or(s.max_payload_bytes);
        s.max_batch = env
            .parse("KYU_MAX_BATCH", "a whole number")?
            .unwrap_or(s.max_batch);
        s.header_read_timeout = env
            .duration("KYU_HEADER_READ_TIMEOUT")?
            .unwrap_or(s.header_read_timeout);
        s.max_connections = env
            .parse("KYU_MAX_CONNECTIONS", "a whole number")?
            .unwrap_or(s.max_connections);
        s.api_rate_limit.default.per_minute = env
            .parse(
                "KYU_API_RATE_LIMIT_PER_MINUTE",
                "a whole number (0: no limit)",
            )?
            .unwrap_or(s.api_rate_limit.default.per_minute);
        s.api_rate_limit.default.per_hour = env
            .parse(
                "KYU_API_RATE_LIMIT_PER_HOUR",
                "a whole number (0: no limit)",
            )?
            .unwrap_or(s.api_rate_limit.default.per_hour);
        if let Some(v) = env.raw("KYU_API_RATE_LIMIT_ROLES") {
            s.api_rate_limit.roles = crate::api::rate_limit::parse_role_quotas(v)
                .map_err(|m| Env::bad("KYU_API_RATE_LIMIT_ROLES", v, m))?;
        }
        s.api_rate_limit.storage = env
            .parse("KYU_API_RATE_LIMIT_STORAGE", "auto, redis or memory")?
            .unwrap_or(s.api_rate_limit.storage);
        s.ai_request_timeout = env
            .duration("AI_REQUEST_TIMEOUT")?
            .unwrap_or(s.ai_request_timeout);
        s.ai_max_concurrent_requests = env
            .parse("AI_MAX_CONCURRENT_REQUESTS", "a whole number")?
            .unwrap_or(s.ai_max_concurrent_requests);
        s.ai_fallback_enabled = env
            .flag("AI_FALLBACK_ENABLED")?
            .unwrap_or(s.ai_fallback_enabled);
        for (prefix, p) in [("GROQ", &mut s.groq), ("ANTHROPIC", &mut s.anthropic)] {
            if let Some(v) = env.raw(&format!("{prefix}_API_KEY")) {
                p.api_key = Some(Secret(v.trim().to_owned()));
            }
            if let Some(v) = env.raw(&format!("{prefix}_BASE_URL")) {
                let key = format!("{prefix}_BASE_URL");
                let url = reqwest::Url::parse(v.trim())
                    .map_err(|e| Env::bad(&key, v, format!("expected an http(s) URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(Env::bad(&key, v, "expected an http(s) URL"));
                }
                p.base_url = v.trim().trim_end_matches('/').to_owned();
            }
            if let Some(v) = env.raw(&format!("{prefix}_MODEL")) {
                p.model = v.trim().to_owned();
            }
        }
        if let Some(v) = env.raw("KYU_RATE_LIMITS") {
            s.provider_limits =
                parse_provider_limits(v).map_err(|m| Env::bad("KYU_RATE_LIMITS", v, m))?;
        }
        s.fetch.allow_private = env
            .flag("KYU_FETCH_ALLOW_PRIVATE")?
            .unwrap_or(s.fetch.allow_private);
        if let Some(v) = env.raw("KYU_FETCH_ALLOW") {
            s.fetch.allow = parse_addr_list(v).map_err(|m| Env::bad("KYU_FETCH_ALLOW", v, m))?;
        }
        s.fetch.max_bytes = env
            .parse("KYU_FETCH_MAX_BYTES", "a number of bytes")?
            .unwrap_or(s.fetch.max_bytes);
        s.fetch.timeout = env
            .duration("KYU_FETCH_TIMEOUT")?
            .unwrap_or(s.fetch.timeout);
        s.fetch.max_redirects = env
            .parse("KYU_FETCH_MAX_REDIRECTS", "a whole number")?
            .unwrap_or(s.fetch.max_redirects);
        if let Some(v) = env.raw("KYU_WEBHOOK_SECRET") {
            s.webhook.secret = Some(Secret(v.trim().to_owned()));
        }
        s.webhook.allow_private = env
            .flag("KYU_WEBHOOK_ALLOW_PRIVATE")?
            .unwrap_or(s.webhook.allow_private);
        s.webhook.timeout = env
            .duration("KYU_WEBHOOK_TIMEOUT")?
            .unwrap_or(s.webhook.timeout);
        s.redis_url = env.raw("REDIS_URL").map(str::to_owned);
        if let Some(v) = env.raw("KYU_REDIS_PREFIX") {
            s.redis_prefix = v.trim().to_owned();
        }
        s.wake = env
            .parse("KYU_WAKE", "auto, redis, postgres or off")?
            .unwrap_or(s.wake);
        s.metrics_sample_interval = env
            .duration("KYU_METRICS_SAMPLE_INTERVAL")?
            .unwrap_or(s.metrics_sample_interval);
        s.metrics_bind = env
            .parse("KYU_METRICS_BIND", "an address like 0.0.0.0:9464")?
            .or(s.metrics_bind);
        s.node_heartbeat_interval = env
            .duration("KYU_NODE_HEARTBEAT_INTERVAL")?
            .unwrap_or(s.node_heartbeat_interval);
        s.node_dead_after = env
            .duration("KYU_NODE_DEAD_AFTER")?
            .unwrap_or(s.node_dead_after);
        s.node_retention = env
            .duration("KYU_NODE_RETENTION")?
            .unwrap_or(s.node_retention);
        s.leader_ttl = env.duration("KYU_LEADER_TTL")?.unwrap_or(s.leader_ttl);
        s.leader_renew_interval = env
            .duration("KYU_LEADER_RENEW_INTERVAL")?
            .unwrap_or(s.leader_renew_interval);
        if let Some(v) = env.raw("KYU_CRON") {
            s.cron = crate::cluster::parse_cron(v).map_err(|m| Env::bad("KYU_CRON", v, m))?;
        }
        s.cron_catch_up = env
            .parse("KYU_CRON_CATCH_UP", "a whole number")?
            .unwrap_or(s.cron_catch_up);
        if let Some(v) = env.raw("KYU_REMOTE_TYPE") {
            s.remote_types = crate::handlers::remote_type::parse_remote_types(v)
                .map_err(|m| Env::bad("KYU_REMOTE_TYPE", v, m))?;
        }
        s.flow = FlowRules::new(
            env.table_list("KYU_CONCURRENCY")?,
            env.table_list("KYU_CONCURRENCY_KEY")?,
            env.table_list("KYU_TIER_PRIORITY")?,
        )
        .map_err(|e| {
            let key = match e.setting {
                FlowSetting::Limits => "KYU_CONCURRENCY",
                FlowSetting::Templates => "KYU_CONCURRENCY_KEY",
                FlowSetting::Tiers => "KYU_TIER_PRIORITY",
            };
            Env::bad(key, "[…]", e.message)
        })?;
        let rate = env
            .parse(
                "KYU_FAIR_SHARE_RATE",
                "a whole number of jobs per second (0: off)",
            )?
            .unwrap_or(kyu_actors::fair_share::DEFAULT_RATE);
        let weights = env.table_list("KYU_FAIR_SHARE_WEIGHT")?;
        s.fair_share = kyu_actors::fair_share::FairShare::new(rate, weights)
            .map_err(|m| Env::bad("KYU_FAIR_SHARE_WEIGHT", "[…]", m))?;
        if let Some(v) = env.raw("KYU_TIERS") {
            s.tiers = parse_tiers(v).map_err(|m| Env::bad("KYU_TIERS", v, m))?;
        }
        s.ledger_path = env.raw("KYU_LEDGER_PATH").map(PathBuf::from);
        if let Some(v) = env.raw(crate::store::failpoint::FAILPOINTS_ENV) {
            s.failpoints =
                Some(Failpoints::parse(v).map_err(|m| Env::bad("KYU_FAILPOINTS", v, m))?);
        }
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, message: &str| {
            Err(ConfigError {
                key: key.into(),
                value,
                message: message.into(),
            })
        };
        if !(1..=1000).contains(&self.workers_max) {
            return bad(
                "KYU_WORKERS_MAX",
                self.workers_max.to_string(),
                "expected 1..=1000",
            );
        }
        if self.workers_min == 0 || self.workers_min > self.workers_max {
            return bad(
                "KYU_WORKERS_MIN",
                self.workers_min.to_string(),
                "expected 1..=KYU_WORKERS_MAX",
            );
        }
        if self.worker_count == 0 || self.worker_count > 1000 {
            return bad(
                "JOB_QUEUE_WORKER_COUNT",
                self.worker_count.to_string(),
                "expected 1..=1000",
            );
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return bad(
                "JOB_QUEUE_BATCH_SIZE",
                self.batch_size.to_string(),
                "expected 1..=10000",
            );
        }
        if self.max_retries > 999 {
            return bad(
                "JOB_QUEUE_MAX_RETRIES",
                self.max_retries.to_string(),
                "expected 0..=999",
            );
        }
        if self.lease < Duration::from_millis(100) {
            return bad(
                "KYU_LEASE",
                format!("{:?}", self.lease),
                "expected at least 100ms",
            );
        }
        if self.poll_interval.is_zero() {
            return bad(
                "JOB_QUEUE_POLL_INTERVAL",
                "0".into(),
                "expected more than 0",
            );
        }
        if self.rescue_interval.is_zero() {
            return bad("KYU_RESCUE_INTERVAL", "0".into(), "expected more than 0");
        }
        if let Some(url) = &self.redis_url
            && let Err(m) = crate::redis::RedisTarget::parse(url)
        {
            // The URL may hold a password: not echoed back.
            return bad("REDIS_URL", "…".into(), &m);
        }
        if self.api_rate_limit.storage == crate::api::rate_limit::Storage::Redis
            && self.redis_url.is_none()
        {
            return bad(
                "KYU_API_RATE_LIMIT_STORAGE",
                "redis".into(),
                "needs REDIS_URL (or use auto or memory)",
            );
        }
        if let Err(m) = crate::wake::transport(self) {
            return bad("KYU_WAKE", self.wake.to_string(), &m);
        }
        if let Err(m) = crate::cluster::node_config(self).validate() {
            let (key, v) = if m.starts_with("heartbeat") {
                ("KYU_NODE_HEARTBEAT_INTERVAL", self.node_heartbeat_interval)
            } else if m.starts_with("dead_after") {
                ("KYU_NODE_DEAD_AFTER", self.node_dead_after)
            } else if m.starts_with("leader_renew") {
                ("KYU_LEADER_RENEW_INTERVAL", self.leader_renew_interval)
            } else {
                ("KYU_LEADER_TTL", self.leader_ttl)
            };
            return bad(key, format!("{v:?}"), &m);
        }
        if self.metrics_sample_interval < Duration::from_millis(100) {
            return bad(
                "KYU_METRICS_SAMPLE_INTERVAL",
                format!("{:?}", self.metrics_sample_interval),
                "expected at least 100ms",
            );
        }
        for (key, v) in [
            ("KYU_MAX_BODY_BYTES", self.max_body_bytes),
            ("KYU_MAX_PAYLOAD_BYTES", self.max_payload_bytes),
            ("KYU_MAX_BATCH", self.max_batch),
            ("KYU_MAX_CONNECTIONS", self.max_connections),
            (
                "AI_MAX_CONCURRENT_REQUESTS",
                self.ai_max_concurrent_requests,
            ),
        ] {
            if v == 0 {
                return bad(key, "0".into(), "expected more than 0");
            }
        }
        for (key, d) in [
            ("AI_REQUEST_TIMEOUT", self.ai_request_timeout),
            ("KYU_FETCH_TIMEOUT", self.fetch.timeout),
            ("KYU_WEBHOOK_TIMEOUT", self.webhook.timeout),
        ] {
            if d.is_zero() {
                return bad(key, "0".into(), "expected more than 0");
            }
        }
        if self.fetch.max_bytes == 0 {
            return bad("KYU_FETCH_MAX_BYTES", "0".into(), "expected more than 0");
        }
        if self.fetch.max_redirects > 20 {
            return bad(
                "KYU_FETCH_MAX_REDIRECTS",
                self.fetch.max_redirects.to_string(),
                "expected 0..=20",
            );
        }
        if self.header_read_timeout.is_zero() {
            return bad(
                "KYU_HEADER_READ_TIMEOUT",
                "0".into(),
                "expected more than 0",
            );
        }
        if self.rate_limit_per_minute == 0 {
            return bad(
                "RATE_LIMIT_REQUESTS_PER_MINUTE",
                "0".into(),
                "expected more than 0",
            );
        }
        Ok(())
    }
}

/// A value that must never be printed (API keys, signing secrets): `Debug` shows
/// `Secret(…)`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One AI provider's endpoint, key and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// None: the provider is skipped (and the result says so).
    pub api_key: Option<Secret>,
    /// Without a trailing slash.
    pub base_url: String,
    pub model: String,
}

/// Limits of `extract_content`'s fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    /// Whether loopback, private, link-local and other internal addresses may be
    /// fetched (SSRF guard off). Tests switch it on for their loopback servers.
    pub allow_private: bool,
    /// Internal IP:port pairs that may be fetched although `allow_private` is false
    /// (`KYU_FETCH_ALLOW`, comma-separated; e.g. a sidecar, or a test's own server).
    pub allow: Vec<SocketAddr>,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: usize,
}

/// How the `http` job calls out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Signs each body: `X-Kyu-Signature: sha256=<hex HMAC-SHA256>`.
    pub secret: Option<Secret>,
    pub allow_private: bool,
    pub timeout: Duration,
}

/// `127.0.0.1:8080, [::1]:9000` → addresses.
fn parse_addr_list(v: &str) -> Result<Vec<SocketAddr>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.parse()
                .map_err(|_| format!("`{i}`: expected IP:port, like 127.0.0.1:8080 or [::1]:8080"))
        })
        .collect()
}

/// `groq=100/10,claude=50` → buckets (per minute / burst; burst defaults to 10).
fn parse_provider_limits(
    v: &str,
) -> Result<std::collections::BTreeMap<String, kyu_actors::Limit>, String> {
    let mut out = std::collections::BTreeMap::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, shape) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}`: expected provider=PER_MINUTE[/BURST]"))?;
        let (per, burst) = shape.split_once('/').unwrap_or((shape, "10"));
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{item}`: expected whole numbers above 0"))
        };
        out.insert(
            name.trim().to_owned(),
            kyu_actors::Limit {
                per_minute: num(per)?,
                burst: num(burst)?,
            },
        );
    }
    Ok(out)
}

/// `KYU_TIERS`: `token_name=tier` pairs, comma separated.
fn parse_tiers(v: &str) -> Result<std::collections::HashMap<String, String>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((n, t)) if !n.trim().is_empty() && !t.trim().is_empty() => {
                Ok((n.trim().to_owned(), t.trim().to_owned()))
            }
            _ => Err(format!("{e:?}: expected token_name=tier")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_and_defaults() {
        let s = Settings::from_env(&Env::from_pairs([
            ("JOB_QUEUE_WORKER_COUNT", "5"),
            ("JOB_QUEUE_MAX_RETRIES", "3"),
            ("JOB_QUEUE_BATCH_SIZE", "10"),
            ("JOB_QUEUE_POLL_INTERVAL", "5s"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "100"),
            ("RATE_LIMIT_BURST_SIZE", "10"),
            ("KYU_LEASE", "2s"),
        ]))
        .unwrap();
        assert_eq!(s.worker_count, 5);
        assert_eq!(s.batch_size, 10);
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert_eq!(s.lease, Duration::from_secs(2));
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Settings::from_env(&Env::from_pairs([("JOB_QUEUE_POLL_INTERVAL", "soon")]))
            .unwrap_err();
        assert_eq!(e.key, "JOB_QUEUE_POLL_INTERVAL");
        assert!(e.to_string().contains("JOB_QUEUE_POLL_INTERVAL"));
        let e =
            Settings::from_env(&Env::from_pairs([("JOB_QUEUE_WORKER_COUNT", "-1")])).unwrap_err();
        assert_eq!(e.key, "JOB_QUEUE_WORKER_COUNT");
        let e = Settings::from_env(&Env::from_pairs([("KYU_WORKERS_MIN", "20")])).unwrap_err();
        assert_eq!(e.key, "KYU_WORKERS_MIN");
        let e = Settings::from_env(&Env::from_pairs([("KYU_AUTOSCALE", "maybe")])).unwrap_err();
        assert_eq!(e.key, "KYU_AUTOSCALE");
        let e =
            Settings::from_env(&Env::from_pairs([("KYU_RATE_LIMITS", "groq=fast")])).unwrap_err();
        assert_eq!(e.key, "KYU_RATE_LIMITS");
        let e = Settings::from_env(&Env::from_pairs([("GROQ_BASE_URL", "ftp://x")])).unwrap_err();
        assert_eq!(e.key, "GROQ_BASE_URL");
    }

    #[test]
    fn api_rate_limits_read_and_name_their_key() {
        use crate::api::rate_limit::{Quota, Storage};
        let s = Settings::from_env(&Env::from_pairs([])).unwrap();
        assert!(!s.api_rate_limit.any(), "off by default");
        let s = Settings::from_env(&Env::from_pairs([
            ("KYU_API_RATE_LIMIT_PER_MINUTE", "60"),
            ("KYU_API_RATE_LIMIT_PER_HOUR", "1000"),
            ("KYU_API_RATE_LIMIT_ROLES", "worker=0/0,anonymous=10/100"),
            ("KYU_API_RATE_LIMIT_STORAGE", "memory"),
        ]))
        .unwrap();
        assert_eq!(
            s.api_rate_limit.quota("user"),
            Quota {
                per_minute: 60,
                per_hour: 1000
            }
        );
        assert!(s.api_rate_limit.quota("worker").is_unlimited());
        assert_eq!(s.api_rate_limit.quota("anonymous").per_minute, 10);
        assert_eq!(s.api_rate_limit.storage, Storage::Memory);
        for (k, v) in [
            ("KYU_API_RATE_LIMIT_PER_MINUTE", "-1"),
            ("KYU_API_RATE_LIMIT_PER_HOUR", "lots"),
            ("KYU_API_RATE_LIMIT_ROLES", "root=1/1"),
            ("KYU_API_RATE_LIMIT_STORAGE", "disk"),
            ("KYU_API_RATE_LIMIT_STORAGE", "redis"),
        ] {
            let e = Settings::from_env(&Env::from_pairs([(k, v)])).unwrap_err();
            assert_eq!(e.key, k, "{v}");
        }
        let e =
            Settings::from_env(&Env::from_pairs([("REDIS_URL", "redis+cluster://a")])).unwrap_err();
        assert_eq!(e.key, "REDIS_URL");
        let s = Settings::from_env(&Env::from_pairs([(
            "REDIS_URL",
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        )]))
        .unwrap();
        assert!(s.redis_url.is_some());
    }

    #[test]
    fn provider_limits_and_secrets() {
        let s = Settings::from_env(&Env::from_pairs([
            ("KYU_RATE_LIMITS", "groq=100/5, claude=50"),
            ("GROQ_API_KEY", "gsk-very-secret"),
        ]))
        .unwrap();
        assert_eq!(
            s.provider_limits.get("groq"),
            Some(&kyu_actors::Limit {
                per_minute: 100,
                burst: 5
            })
        );
        assert_eq!(s.provider_limits["claude"].burst, 10);
        assert!(!format!("{s:?}").contains("gsk-very-secret"));
    }
}
