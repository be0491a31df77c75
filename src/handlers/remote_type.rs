//! Job types run by remote workers (`[[kyu_remote_type]]` in `config/kyu.toml`, or
//! `KYU_REMOTE_TYPE` as a JSON list): kyu never runs them itself, but knows them, so
//! enqueueing one is accepted while no worker is connected, its payload is checked at
//! enqueue against the type's JSON Schema (422 naming the field), and new jobs get the
//! type's defaults (queue, priority, timeout, retries).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobDefaults, JobError, PayloadError};
use serde::Deserialize;
use serde_json::Value;

/// One declared remote type, as written in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteTypeSpec {
    pub name: String,
    pub queue: Option<String>,
    pub priority: Option<u8>,
    pub timeout_seconds: Option<f64>,
    pub max_retries: Option<u32>,
    /// A JSON Schema for the payload: a JSON text or an inline table.
    pub schema: Option<Value>,
}

/// Parses `KYU_REMOTE_TYPE` (a JSON list of [`RemoteTypeSpec`]) and checks each entry.
pub fn parse_remote_types(text: &str) -> Result<Vec<RemoteType>, String> {
    let specs: Vec<RemoteTypeSpec> =
        serde_json::from_str(text).map_err(|e| format!("expected a list of tables: {e}"))?;
    let mut out: Vec<RemoteType> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let name = spec.name.clone();
        let at = |m: String| format!("entry {} ({name}): {m}", i + 1);
        if out.iter().any(|t| t.spec.name == spec.name) {
            return Err(at("the name is declared twice".into()));
        }
        out.push(RemoteType::new(spec).map_err(at)?);
    }
    Ok(out)
}

/// A declared remote type: its payload check and defaults.
#[derive(Clone)]
pub struct RemoteType {
    pub spec: RemoteTypeSpec,
    schema: Option<Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for RemoteType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteType")
            .field("spec", &self.spec)
            .finish()
    }
}

impl PartialEq for RemoteType {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl RemoteType {
    pub fn new(mut spec: RemoteTypeSpec) -> Result<RemoteType, String> {
        let name_ok = |n: &str| !n.is_empty() && n.chars().count() <= 100 && !n.contains('\0');
        if !name_ok(&spec.name) {
            return Err("name: must be 1 to 100 characters".into());
        }
        if spec.queue.as_deref().is_some_and(|q| !name_ok(q)) {
            return Err("queue: must be 1 to 100 characters".into());
        }
        if spec.priority.is_some_and(|p| !(1..=10).contains(&p)) {
            return Err("priority: must be 1 to 10".into());
        }
        if spec
            .timeout_seconds
            .is_some_and(|t| !t.is_finite() || t <= 0.0 || t > 7.0 * 24.0 * 3600.0)
        {
            return Err("timeout_seconds: must be more than 0 and at most 604800".into());
        }
        if spec.max_retries.is_some_and(|r| r > 999) {
            return Err("max_retries: must be 0 to 999".into());
        }
        // A schema written as a string is JSON text.
        if let Some(Value::String(text)) = &spec.schema {
            spec.schema = Some(
                serde_json::from_str(text).map_err(|e| format!("schema: not JSON: {e}"))?,
            );
        }
        let schema = spec
            .schema
            .as_ref()
            .map(|s| jsonschema::validator_for(s).map_err(|e| format!("schema: {e}")))
            .transpose()?
            .map(Arc::new);
        Ok(RemoteType { spec, schema })
    }
}

#[async_trait]
impl Handler for RemoteType {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        // The local pool never claims a remote type; this is only reached if a job of
        // this type were handed to it by mistake.
        Err(JobError::non_retryable(format!(
            "`{}` is run by remote workers, not by kyu itself",
            self.spec.name
        )))
    }

    fn remote(&self) -> bool {
        true
    }

    fn defaults(&self) -> JobDefaults {
        JobDefaults {
            priority: self.spec.priority,
            max_retries: self.spec.max_retries,
            queue: self.spec.queue.clone(),
            timeout: self.spec.timeout_seconds.map(Duration::from_secs_f64),
            ..JobDefaults::default()
        }
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        match schema.iter_errors(payload).next() {
            None => Ok(()),
            Some(e) => {
                let field = e
                    .instance_path()
                    .into_iter()
                    .map(|seg| seg.to_string())
                    .collect::<Vec<_>>()
                    .join(".");
                Err(PayloadError::new(field, e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stocks() -> RemoteType {
        let t = parse_remote_types(
            r#"[{"name": "collect_stock_data", "queue": "stocks", "priority": 5,
                 "timeout_seconds": 3600,
                 "schema": "{\"type\": \"object\", \"required\": [\"symbols\"], \"properties\": {\"symbols\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}"}]"#,
        )
        .unwrap();
        t.into_iter().next().unwrap()
    }

    #[test]
    fn checks_payloads_and_names_the_field() {
        let t = stocks();
        assert!(t.validate(&json!({"symbols": ["7203"]})).is_ok());
        let e = t.validate(&json!({"symbols": ["7203", 5]})).unwrap_err();
        assert_eq!(e.field, "symbols.1");
        let e = t.validate(&json!({})).unwrap_err();
        assert_eq!(e.field, "");
        assert!(e.message.contains("symbols"), "{}", e.message);
        assert!(t.remote());
        let d = t.defaults();
        assert_eq!(d.queue.as_deref(), Some("stocks"));
        assert_eq!(d.timeout, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_bad_declarations() {
        assert!(parse_remote_types(r#"[{"name": ""}]"#).is_err());
        assert!(parse_remote_types(r#"[{"name": "a"}, {"name": "a"}]"#).is_err());
        assert!(parse_remote_types(r#"[{"name": "a", "priority": 11}]"#).is_err());
        assert!(parse_remote_types(r#"[{"name": "a", "schema": "{"}]"#).is_err());
        assert!(parse_remote_types(r#"[{"name": "a", "schema": {"type": 5}}]"#).is_err());
        assert!(parse_remote_types(r#"[{"name": "a", "what": 1}]"#).is_err());
    }
}
