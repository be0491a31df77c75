//! The OpenAPI 3.1 document, generated from the handlers' annotations, then completed
//! with what only the running process knows: the registered job types and the batch
//! limit, so generated clients (and schemathesis) see the real rules.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::remote::{fetch, report};
use super::{concurrency, error, health, jobs, model, nodes, queues, workflows};

#[derive(OpenApi)]
#[openapi(
    info(title = "kyu", description = "A durable, actor-based job engine"),
    paths(
        jobs::create, jobs::create_batch, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        workflows::create, workflows::list, workflows::get, workflows::cancel,
        queues::list, queues::pause, queues::resume, queues::workers, nodes::list,
        concurrency::list,
        health::healthz, health::readyz,
        fetch::fetch, fetch::stop, report::heartbeat, report::complete, report::fail,
        report::snooze, report::release, report::acks,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, model::Status)),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document for a process with these job types and batch limit.
pub fn document(job_types: &[String], max_batch: usize) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    if let Some(create) = doc.pointer_mut("/components/schemas/CreateJob") {
        if let Some(t) = create.pointer_mut("/properties/type") {
            t["enum"] = json!(job_types);
        }
        create["not"] = json!({ "required": ["delay_seconds", "run_at"] });
    }
    if let Some(job) = doc.pointer_mut("/components/schemas/CreateWorkflowJob") {
        if let Some(t) = job.pointer_mut("/properties/type") {
            t["enum"] = json!(job_types);
        }
        job["not"] = json!({ "required": ["delay_seconds", "run_at"] });
    }
    if let Some(jobs) = doc.pointer_mut("/components/schemas/CreateJobs/properties/jobs") {
        jobs["maxItems"] = json!(max_batch);
    }
    // Every /api route may answer 429 when rate limits are on (`KYU_API_RATE_LIMIT_*`).
    let limited = json!({
        "description": "Too many requests from this client in this window (rate limits on); `Retry-After` and `RateLimit-Reset` say when to come back",
        "headers": {
            "Retry-After": {"schema": {"type": "integer", "minimum": 1}},
            "RateLimit-Limit": {"schema": {"type": "integer", "minimum": 0}},
            "RateLimit-Remaining": {"schema": {"type": "integer", "minimum": 0}},
            "RateLimit-Reset": {"schema": {"type": "integer", "minimum": 1}}
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    });
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                if let Some(r) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    r.entry("429").or_insert_with(|| limited.clone());
                }
            }
        }
    }
    // A fetch's job type and queue names follow the rules of a job's.
    let name =
        json!({"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\x00]+$"});
    for list in ["types", "queues"] {
        let at = format!("/components/schemas/FetchRequest/properties/{list}");
        if let Some(p) = doc.pointer_mut(&at) {
            if p.get("items").is_some() {
                p["items"] = name.clone();
            } else {
                // Option<Vec<_>>: the array alternative.
                for key in ["oneOf", "anyOf"] {
                    let alts = p.get_mut(key).and_then(|a| a.as_array_mut());
                    for alt in alts.into_iter().flatten() {
                        if alt.get("items").is_some() {
                            alt["items"] = name.clone();
                        }
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_routes_document_the_rate_limit_answer() {
        let doc = document(&["echo".to_owned()], 10);
        let limited = &doc["paths"]["/api/v1/jobs"]["post"]["responses"]["429"];
        assert!(limited["headers"]["Retry-After"].is_object(), "{limited}");
        assert!(limited["headers"]["RateLimit-Remaining"].is_object());
        assert!(doc["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
    }
}
