//! `extract_content`: fetch a URL a user sent and return the article's main text
//! (payload `{url}`; result `{title, text, byline?, length, url, excerpt?, language?}`).
//! `summarize` uses it for `url` payloads. The URL is untrusted, so the fetch goes
//! through the SSRF guard with size, time, redirect and content-type limits
//! ([`fetch`]); the bytes are decoded by their declared charset ([`charset`]) and the
//! main text found by Readability ([`readable`]).

mod charset;
mod fetch;
mod readable;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError, PayloadError};
use reqwest::Url;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::FetchSettings;
use crate::net::guard::{AllowedBy, NetPolicy, guarded_client};

pub use readable::Readable;

/// Progress once the page is downloaded (extraction is the rest).
const FETCHED_PERCENT: u8 = 50;

/// An article's main text.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub title: Option<String>,
    pub byline: Option<String>,
    pub text: String,
    /// Where it was found (after redirects).
    pub url: String,
}

/// The `extract_content` handler: one guarded client, shared by its jobs.
pub struct ExtractContent {
    client: reqwest::Client,
    policy: NetPolicy,
    max_bytes: usize,
}

impl ExtractContent {
    pub fn new(s: &FetchSettings) -> anyhow::Result<ExtractContent> {
        let policy = NetPolicy {
            allow_private: s.allow_private,
            allow: s.allow.clone(),
            allowed_by: AllowedBy::Fetch,
        };
        Ok(ExtractContent {
            client: guarded_client(&policy, s.timeout, s.max_redirects)?,
            policy,
            max_bytes: s.max_bytes,
        })
    }

    /// Fetches `url` within the limits and extracts its main text; stops early when
    /// `cancel` fires.
    pub async fn extract(
        &self,
        url: &str,
        cancel: &CancellationToken,
    ) -> Result<Article, JobError> {
        let (url, found) = self.read(url, cancel, None).await?;
        Ok(Article {
            title: found.title,
            byline: found.byline,
            text: found.text,
            url,
        })
    }

    /// Fetches and extracts, reporting progress to `ctx` if given; returns the final
    /// URL and what was found.
    async fn read(
        &self,
        url: &str,
        cancel: &CancellationToken,
        ctx: Option<&JobContext>,
    ) -> Result<(String, Readable), JobError> {
        let url =
            parse_url(url).map_err(|m| JobError::non_retryable(format!("payload.url {m}")))?;
        let page = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return Err(JobError::Canceled("canceled while fetching the page".into()));
            }
            page = fetch::fetch(&self.client, &self.policy, &url, self.max_bytes) => page?,
        };
        if let Some(ctx) = ctx {
            ctx.progress.set(FETCHED_PERCENT).await;
            ctx.check_canceled()?;
        }
        let final_url = page.url.to_string();
        let at = final_url.clone();
        let found = tokio::task::spawn_blocking(move || {
            let html = charset::decode(&page.body, page.content_type.as_deref());
            readable::extract(&html, &at)
        })
        .await
        .map_err(|e| JobError::retryable(format!("extraction did not finish: {e}")))??;
        Ok((final_url, found))
    }
}

#[async_trait]
impl Handler for ExtractContent {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let url = ctx
            .payload
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| JobError::non_retryable("payload.url must be a string"))?
            .to_owned();
        let (url, found) = self.read(&url, &ctx.cancel, Some(&ctx)).await?;
        ctx.progress.set(100).await;
        Ok(result(url, found))
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        match payload.get("url") {
            Some(Value::String(u)) => parse_url(u)
                .map(|_| ())
                .map_err(|m| PayloadError::new("url", m)),
            Some(_) => Err(PayloadError::new("url", "must be a string")),
            None => Err(PayloadError::new("url", "is required")),
        }
    }
}

/// An absolute http(s) URL, or why not.
fn parse_url(u: &str) -> Result<Url, String> {
    let url = Url::parse(u.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("must be an http or https URL, not {other}:")),
    }
}

/// The job's result JSON; optional fields are left out when unknown.
fn result(url: String, r: Readable) -> Value {
    let mut m = Map::new();
    m.insert("title".into(), json!(r.title));
    m.insert("length".into(), json!(r.text.chars().count()));
    m.insert("text".into(), Value::String(r.text));
    m.insert("url".into(), Value::String(url));
    for (key, value) in [
        ("byline", r.byline),
        ("excerpt", r.excerpt),
        ("language", r.language),
    ] {
        if let Some(v) = value {
            m.insert(key.into(), Value::String(v));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> ExtractContent {
        ExtractContent::new(&crate::config::Settings::default().fetch).unwrap()
    }

    #[test]
    fn validate_names_the_url_field() {
        let h = handler();
        assert!(h.validate(&json!({"url": "https://example.com/a"})).is_ok());
        for (payload, want) in [
            (json!({}), "is required"),
            (json!({"url": 7}), "must be a string"),
            (json!({"url": "not a url"}), "not a valid URL"),
            (json!({"url": "/relative"}), "not a valid URL"),
            (json!({"url": "file:///etc/passwd"}), "not file:"),
            (json!({"url": "ftp://example.com/"}), "not ftp:"),
        ] {
            let e = h.validate(&payload).unwrap_err();
            assert_eq!(e.field, "url", "{payload}");
            assert!(e.message.contains(want), "{payload}: {}", e.message);
        }
    }

    #[test]
    fn result_leaves_out_unknown_fields() {
        let r = Readable {
            title: None,
            byline: None,
            text: "日本語".into(),
            excerpt: Some("e".into()),
            language: None,
        };
        let v = result("https://x/".into(), r);
        assert_eq!(
            v,
            json!({"title": null, "text": "日本語", "length": 3, "url": "https://x/", "excerpt": "e"})
        );
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_by_default() {
        let h = handler();
        let ctx = JobContext::detached("extract_content", json!({"url": "http://127.0.0.1:9/"}));
        let e = h.run(ctx).await.unwrap_err();
        assert_eq!(e.kind().as_str(), "non_retryable");
        assert!(
            e.to_string().contains("127.0.0.1 is a loopback address"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn canceled_before_the_answer() {
        let h = handler();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let e = h
            .extract("https://example.com/", &cancel)
            .await
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "canceled");
    }
}
