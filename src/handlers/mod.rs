//! The job types kyu runs out of the box (ARCHITECTURE §6, seed 000 §2): `summarize`
//! (an AI provider chain with an offline fallback), `extract_content`,
//! `validate_summary`, `http` (webhook), beside the engine's `noop`, `echo` and
//! `delay_print`. Each checks its payload at enqueue time (`Handler::validate`).

pub mod extract_content;
pub mod extractive;
pub mod language;
pub mod remote_type;
pub mod summarize;
pub mod validate_summary;
pub mod webhook;

use std::sync::Arc;

use kyu_actors::HandlerRegistry;

use crate::config::Settings;

/// Every built-in job type, configured by `s`.
pub fn registry(s: &Settings) -> anyhow::Result<HandlerRegistry> {
    let mut r = HandlerRegistry::with_builtins();
    let extract = Arc::new(extract_content::ExtractContent::new(&s.fetch)?);
    r.insert(
        "summarize",
        Arc::new(summarize::Summarize::new(s, extract.clone())?),
    );
    r.insert("extract_content", extract);
    r.insert(
        "validate_summary",
        Arc::new(validate_summary::ValidateSummary),
    );
    r.insert("http", Arc::new(webhook::Webhook::new(&s.webhook)?));
    for t in &s.remote_types {
        if r.get(&t.spec.name).is_some() {
            anyhow::bail!(
                "KYU_REMOTE_TYPE: `{}` is a job type kyu runs itself",
                t.spec.name
            );
        }
        r.insert(t.spec.name.clone(), Arc::new(t.clone()));
    }
    Ok(r)
}
