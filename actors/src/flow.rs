//! Flow control decided at enqueue: which concurrency key a job gets (its own, or one
//! its type derives from the payload), the limit configured for that key, and the
//! priority a type gets for a caller's tier (seed 000's `calculateJobPriority`).
//!
//! The limit itself is enforced where jobs are claimed (each store's claim, under a
//! lock or the single writer), never by a handler checking first.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::ConcurrencyKey;
use crate::priority::Priority;

/// Most jobs one concurrency key may run at once.
pub const MAX_CONCURRENCY_LIMIT: u32 = 10_000;
/// A key no rule matches: one job at a time (a key means "not two at once" unless
/// configured otherwise).
pub const DEFAULT_CONCURRENCY_LIMIT: u32 = 1;

/// `[[kyu_concurrency]]`: keys matching `key` (`*` matches any run of characters) run
/// at most `limit` jobs at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyRule {
    pub key: String,
    pub limit: u32,
}

/// `[[kyu_concurrency_key]]`: jobs of `type` that name no key get one made from
/// `key`, where `{payload.a.b}` is replaced by that payload field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTemplate {
    #[serde(rename = "type")]
    pub job_type: String,
    pub key: String,
}

/// `[[kyu_tier_priority]]`: jobs of `type` enqueued for `tier` get `priority` unless
/// the request names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPriority {
    pub tier: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub priority: u8,
}

/// Why a job's key could not be made: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub field: String,
    pub message: String,
}

/// Which of the three lists a bad rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowSetting {
    Limits,
    Templates,
    Tiers,
}

/// A rule that cannot be used, and the list it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfigError {
    pub setting: FlowSetting,
    pub message: String,
}

/// All flow-control settings, resolved once at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowRules {
    limits: Vec<ConcurrencyRule>,
    templates: HashMap<String, String>,
    tiers: HashMap<(String, String), Priority>,
}

impl FlowRules {
    /// Checks the rules: limits in range, templates well formed, priorities 1–10.
    pub fn new(
        limits: Vec<ConcurrencyRule>,
        templates: Vec<KeyTemplate>,
        tiers: Vec<TierPriority>,
    ) -> Result<FlowRules, FlowConfigError> {
        let err = |setting, message| FlowConfigError { setting, message };
        for r in &limits {
            if r.key.is_empty() || r.limit == 0 || r.limit > MAX_CONCURRENCY_LIMIT {
                return Err(err(
                    FlowSetting::Limits,
                    format!(
                        "concurrency rule {:?}: needs a key and a limit of 1 to {MAX_CONCURRENCY_LIMIT}",
                        r.key
                    ),
                ));
            }
        }
        let mut by_type = HashMap::new();
        for t in templates {
            fields(&t.key).map_err(|e| {
                err(
                    FlowSetting::Templates,
                    format!("concurrency key for {:?}: {e}", t.job_type),
                )
            })?;
            if by_type.insert(t.job_type.clone(), t.key).is_some() {
                return Err(err(
                    FlowSetting::Templates,
                    format!("two concurrency keys for type {:?}", t.job_type),
                ));
            }
        }
        let mut by_tier = HashMap::new();
        for t in tiers {
            let p = Priority::new(i64::from(t.priority)).map_err(|e| {
                err(
                    FlowSetting::Tiers,
                    format!("tier {:?} type {:?}: {e}", t.tier, t.job_type),
                )
            })?;
            by_tier.insert((t.tier, t.job_type), p);
        }
        Ok(FlowRules {
            limits,
            templates: by_type,
            tiers: by_tier,
        })
    }

    /// The limit for `key`: the first rule whose pattern matches, else 1.
    pub fn limit_for(&self, key: &str) -> u32 {
        self.limits
            .iter()
            .find(|r| glob_match(&r.key, key))
            .map_or(DEFAULT_CONCURRENCY_LIMIT, |r| r.limit)
    }

    /// The key a job runs under: the one it names, else its type's template filled from
    /// the payload; with the configured limit unless `limit` is given.
    pub fn concurrency(
        &self,
        job_type: &str,
        payload: &Value,
        key: Option<String>,
        limit: Option<u32>,
    ) -> Result<Option<ConcurrencyKey>, FlowError> {
        let key = match key {
            Some(k) => k,
            None => match self.templates.get(job_type) {
                Some(t) => fill(t, payload)?,
                None if limit.is_some() => {
                    return Err(FlowError {
                        field: "concurrency_limit".into(),
                        message: "needs a concurrency_key".into(),
                    });
                }
                None => return Ok(None),
            },
        };
        let limit = limit.unwrap_or_else(|| self.limit_for(&key));
        Ok(Some(ConcurrencyKey { key, limit }))
    }

    /// The priority a job of `job_type` gets for `tier`, if configured.
    pub fn tier_priority(&self, tier: &str, job_type: &str) -> Option<Priority> {
        self.tiers
            .get(&(tier.to_owned(), job_type.to_owned()))
            .copied()
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The `{payload.…}` paths of a template, checked for balance.
fn fields(template: &str) -> Result<Vec<Vec<&str>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
        let path = &after[..close];
        let segs: Vec<&str> = path.split('.').collect();
        if segs.len() < 2 || segs[0] != "payload" || segs.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "{{{path}}} in {template:?}: expected {{payload.FIELD}}"
            ));
        }
        out.push(segs[1..].to_vec());
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray }} in {template:?}"));
    }
    Ok(out)
}

/// The template with each `{payload.a.b}` replaced by that field (strings as they
/// are, numbers and booleans as JSON).
fn fill(template: &str, payload: &Value) -> Result<String, FlowError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').unwrap_or(after.len());
        let path = &after[..close];
        let field = path.to_owned();
        let value = path
            .split('.')
            .skip(1)
            .try_fold(payload, |v, seg| v.get(seg))
            .ok_or_else(|| FlowError {
                field: field.clone(),
                message: "needed for this type's concurrency key".into(),
            })?;
        match value {
            Value::String(s) => out.push_str(s),
            Value::Number(_) | Value::Bool(_) => out.push_str(&value.to_string()),
            _ => {
                return Err(FlowError {
                    field,
                    message: "must be a string, number or boolean (it names a concurrency key)"
                        .into(),
                });
            }
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("chatwork:*", "chatwork:42"));
        assert!(glob_match("chatwork:*", "chatwork:"));
        assert!(!glob_match("chatwork:*", "slack:42"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(glob_match("openai", "openai"));
        assert!(!glob_match("openai", "openai2"));
        assert!(glob_match("*:sync", "user:1:sync"));
    }

    fn rules() -> FlowRules {
        FlowRules::new(
            vec![
                ConcurrencyRule {
                    key: "chatwork:*".into(),
                    limit: 1,
                },
                ConcurrencyRule {
                    key: "openai".into(),
                    limit: 5,
                },
            ],
            vec![KeyTemplate {
                job_type: "sync_rooms".into(),
                key: "chatwork:{payload.user.id}".into(),
            }],
            vec![TierPriority {
                tier: "pro".into(),
                job_type: "summarize".into(),
                priority: 9,
            }],
        )
        .unwrap()
    }

    #[test]
    fn keys_come_from_the_job_or_the_template() {
        let r = rules();
        let k = r
            .concurrency("sync_rooms", &json!({"user": {"id": 7}}), None, None)
            .unwrap()
            .unwrap();
        assert_eq!((k.key.as_str(), k.limit), ("chatwork:7", 1));
        let k = r
            .concurrency("x", &json!({}), Some("openai".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(k.limit, 5);
        let k = r
            .concurrency("x", &json!({}), Some("other".into()), Some(3))
            .unwrap()
            .unwrap();
        assert_eq!((k.key.as_str(), k.limit), ("other", 3));
        assert_eq!(r.concurrency("x", &json!({}), None, None).unwrap(), None);
        let e = r
            .concurrency("sync_rooms", &json!({"user": {}}), None, None)
            .unwrap_err();
        assert_eq!(e.field, "payload.user.id");
        let e = r.concurrency("x", &json!({}), None, Some(2)).unwrap_err();
        assert_eq!(e.field, "concurrency_limit");
    }

    #[test]
    fn bad_rules_are_refused() {
        let t = |key: &str| {
            FlowRules::new(
                vec![],
                vec![KeyTemplate {
                    job_type: "t".into(),
                    key: key.into(),
                }],
                vec![],
            )
        };
        assert!(t("u:{payload.id}").is_ok());
        assert!(t("u:{id}").is_err());
        assert!(t("u:{payload.id").is_err());
        assert!(t("u:payload.id}").is_err());
        let lim = FlowRules::new(
            vec![ConcurrencyRule {
                key: "a".into(),
                limit: 0,
            }],
            vec![],
            vec![],
        );
        assert_eq!(lim.unwrap_err().setting, FlowSetting::Limits);
    }

    #[test]
    fn tiers() {
        let r = rules();
        assert_eq!(
            r.tier_priority("pro", "summarize").map(|p| p.get()),
            Some(9)
        );
        assert_eq!(r.tier_priority("free", "summarize"), None);
    }
}
