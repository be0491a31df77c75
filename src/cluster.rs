//! Several processes on one database, as the service wires it: every process
//! registers itself in the node registry and heartbeats; processes that run an engine
//! stand for leader, and the leader runs maintenance and the cron entries of the
//! settings (see [`kyu_actors::cluster`] for the rules and the bounds).

use std::sync::Arc;

use chrono::Utc;
use kyu_actors::cluster::{CronEntry, Leadership, NodeAgent, NodeConfig};
use kyu_actors::{HandlerRegistry, NodeInfo, Priority, Store};
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// One recurring job as configured (`[[kyu_cron]]` in the file, or `KYU_CRON` as a
/// JSON list of the same objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// Unique; part of each tick's unique key `cron:<name>:<tick epoch seconds>`.
    pub name: String,
    /// A cron expression in UTC: 5 fields, or 6 with seconds first.
    pub schedule: String,
    /// The job type.
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default = "default_queue")]
    pub queue: String,
    /// 1..10; the type's default when absent.
    #[serde(default)]
    pub priority: Option<i64>,
}

fn default_queue() -> String {
    "default".into()
}

impl CronSpec {
    /// The engine's entry; names the problem otherwise.
    pub fn entry(&self) -> Result<CronEntry, String> {
        let mut e = CronEntry::new(
            self.name.clone(),
            &self.schedule,
            self.job_type.clone(),
            self.payload.clone(),
        )
        .map_err(|m| format!("cron `{}`: {m}", self.name))?;
        e.queue = self.queue.clone();
        if let Some(p) = self.priority {
            e.priority = Some(
                Priority::new(p)
                    .map_err(|_| format!("cron `{}`: priority must be 1..10", self.name))?,
            );
        }
        // The job must be valid too (queue, type); the store checks the same way.
        kyu_actors::validate_new_job(&e.job(Utc::now()))
            .map_err(|err| format!("cron `{}`: {err}", self.name))?;
        Ok(e)
    }
}

/// Parses `KYU_CRON`: a JSON list of [`CronSpec`] objects with unique names.
pub fn parse_cron(text: &str) -> Result<Vec<CronSpec>, String> {
    let specs: Vec<CronSpec> = serde_json::from_str(text)
        .map_err(|e| format!("expected a JSON list of cron entries: {e}"))?;
    let mut names = std::collections::HashSet::new();
    for s in &specs {
        s.entry()?;
        if !names.insert(s.name.clone()) {
            return Err(format!("cron name `{}` is used twice", s.name));
        }
    }
    Ok(specs)
}

/// The cron entries of `s`, checked against the job types this process runs.
pub fn cron_entries(s: &Settings, handlers: &HandlerRegistry) -> anyhow::Result<Vec<CronEntry>> {
    let types = handlers.types();
    s.cron
        .iter()
        .map(|spec| {
            if !types.contains(&spec.job_type) {
                anyhow::bail!(
                    "bad setting KYU_CRON: cron `{}` names the unknown job type `{}` (known: {})",
                    spec.name,
                    spec.job_type,
                    types.join(", ")
                );
            }
            spec.entry()
                .map_err(|m| anyhow::anyhow!("bad setting KYU_CRON: {m}"))
        })
        .collect()
}

/// The node registry's and the election's timing from `s`.
pub fn node_config(s: &Settings) -> NodeConfig {
    NodeConfig {
        heartbeat_interval: s.node_heartbeat_interval,
        dead_after: s.node_dead_after,
        leader_ttl: s.leader_ttl,
        leader_renew: s.leader_renew_interval,
    }
}

/// The process's role in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
    Serve,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Serve => "serve",
        }
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Registers this process and starts heartbeating; `leadership` (engine nodes) makes it
/// stand for leader. `id` is the engine's lease owner id, or a fresh id without one.
pub async fn start_node(
    store: Arc<dyn Store>,
    s: &Settings,
    role: Role,
    id: String,
    pool_size: usize,
    leadership: Option<Leadership>,
) -> NodeAgent {
    let info = NodeInfo {
        id,
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").into(),
        role: role.as_str().into(),
        pool_size: u32::try_from(pool_size).unwrap_or(u32::MAX),
        started_at: Utc::now(),
    };
    NodeAgent::start(store, info, node_config(s), leadership).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_specs_parse_and_name_their_problems() {
        let ok = parse_cron(
            r#"[{"name":"tick","schedule":"* * * * * *","type":"echo","payload":{"a":1},"priority":7}]"#,
        )
        .unwrap();
        assert_eq!(ok[0].queue, "default");
        assert_eq!(ok[0].entry().unwrap().priority.map(|p| p.get()), Some(7));
        assert!(parse_cron("[]").unwrap().is_empty());
        let e = parse_cron(r#"[{"name":"x","schedule":"nope","type":"echo"}]"#).unwrap_err();
        assert!(e.contains("cron `x`"), "{e}");
        let e = parse_cron(
            r#"[{"name":"x","schedule":"* * * * *","type":"echo"},{"name":"x","schedule":"* * * * *","type":"echo"}]"#,
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(
            parse_cron(r#"[{"name":"x","schedule":"* * * * *","type":"echo","bogus":1}]"#).is_err()
        );
        assert!(
            parse_cron(r#"[{"name":"x","schedule":"* * * * *","type":"echo","priority":11}]"#)
                .is_err()
        );
    }
}
