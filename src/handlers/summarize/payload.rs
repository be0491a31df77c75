//! The `summarize` payload, checked once: at enqueue (`Handler::validate`, a 422 naming
//! the field) and again when the job runs (a payload stored before a rule changed).
//!
//! `{article_id?, text | url, length?, language?, providers?}`; `length` and `language`
//! may also come in a `user_preferences` object. With both `text` and `url`,
//! the text is summarized and the URL is not fetched.

use kyu_actors::PayloadError;
use serde_json::{Map, Value};

use super::chain::Step;
use crate::handlers::language::normalize_tag;
use crate::providers::SummaryLength;

/// Where the article comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Text(String),
    Url(String),
}

/// A checked payload.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarizePayload {
    /// Echoed in the result: a string or an integer.
    pub article_id: Option<Value>,
    pub source: Source,
    pub length: SummaryLength,
    /// The summary's language tag; `None`: the source's language.
    pub language: Option<String>,
    /// The chain override.
    pub providers: Option<Vec<Step>>,
}

impl SummarizePayload {
    pub fn parse(payload: &Value) -> Result<SummarizePayload, PayloadError> {
        let obj = payload
            .as_object()
            .ok_or_else(|| PayloadError::new("", "must be a JSON object"))?;
        let prefs = match obj.get("user_preferences") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => {
                return Err(PayloadError::new("user_preferences", "must be an object"));
            }
        };
        Ok(SummarizePayload {
            article_id: article_id(obj)?,
            source: source(obj)?,
            length: length(obj, prefs)?,
            language: language(obj, prefs)?,
            providers: providers(obj)?,
        })
    }
}

fn article_id(obj: &Map<String, Value>) -> Result<Option<Value>, PayloadError> {
    match obj.get("article_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(Value::String(s.clone()))),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(Value::Number(n.clone()))),
        Some(_) => Err(PayloadError::new(
            "article_id",
            "must be a non-empty string or an integer",
        )),
    }
}

fn source(obj: &Map<String, Value>) -> Result<Source, PayloadError> {
    match obj.get("text") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if !t.trim().is_empty() => return Ok(Source::Text(t.clone())),
        Some(Value::String(_)) => return Err(PayloadError::new("text", "must not be empty")),
        Some(_) => return Err(PayloadError::new("text", "must be a string")),
    }
    match obj.get("url") {
        None | Some(Value::Null) => Err(PayloadError::new(
            "text",
            "give the article as text, or its url",
        )),
        Some(Value::String(u)) => {
            let parsed = reqwest::Url::parse(u.trim())
                .map_err(|e| PayloadError::new("url", format!("must be an http(s) URL ({e})")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(PayloadError::new("url", "must be an http(s) URL"));
            }
            Ok(Source::Url(parsed.to_string()))
        }
        Some(_) => Err(PayloadError::new("url", "must be a string")),
    }
}

/// `payload.<key>`, else `payload.user_preferences.<key>`, with the field name to blame.
fn preference<'a>(
    obj: &'a Map<String, Value>,
    prefs: Option<&'a Map<String, Value>>,
    key: &str,
) -> Option<(&'a Value, String)> {
    match obj.get(key) {
        Some(v) if !v.is_null() => Some((v, key.to_owned())),
        _ => prefs
            .and_then(|p| p.get(key))
            .filter(|v| !v.is_null())
            .map(|v| (v, format!("user_preferences.{key}"))),
    }
}

fn length(
    obj: &Map<String, Value>,
    prefs: Option<&Map<String, Value>>,
) -> Result<SummaryLength, PayloadError> {
    match preference(obj, prefs, "length") {
        None => Ok(SummaryLength::default()),
        Some((v, field)) => v
            .as_str()
            .and_then(SummaryLength::parse)
            .ok_or_else(|| PayloadError::new(field, "must be short, medium or long")),
    }
}

fn language(
    obj: &Map<String, Value>,
    prefs: Option<&Map<String, Value>>,
) -> Result<Option<String>, PayloadError> {
    match preference(obj, prefs, "language") {
        None => Ok(None),
        Some((v, field)) => {
            v.as_str().and_then(normalize_tag).map(Some).ok_or_else(|| {
                PayloadError::new(field, "must be a language tag like ja, en or pt-BR")
            })
        }
    }
}

fn providers(obj: &Map<String, Value>) -> Result<Option<Vec<Step>>, PayloadError> {
    let list = match obj.get("providers") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(_) => {
            return Err(PayloadError::new(
                "providers",
                "must be a non-empty list of groq, claude or extractive",
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().and_then(Step::parse).ok_or_else(|| {
                PayloadError::new(
                    format!("providers[{i}]"),
                    "must be groq, claude or extractive",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(v: Value) -> String {
        SummarizePayload::parse(&v).unwrap_err().field
    }

    #[test]
    fn a_full_payload_parses() {
        let p = SummarizePayload::parse(&json!({
            "article_id": 42, "text": "Hello.", "length": "short", "language": "JA",
            "providers": ["claude", "extractive"]
        }))
        .unwrap();
        assert_eq!(p.article_id, Some(json!(42)));
        assert_eq!(p.source, Source::Text("Hello.".into()));
        assert_eq!(p.length, SummaryLength::Short);
        assert_eq!(p.language.as_deref(), Some("ja"));
        assert_eq!(p.providers, Some(vec![Step::Claude, Step::Extractive]));
    }

    #[test]
    fn defaults_and_seed_preferences() {
        let p = SummarizePayload::parse(&json!({
            "article_id": "a-1", "url": "https://example.com/a",
            "user_preferences": {"length": "long", "language": "en"}
        }))
        .unwrap();
        assert_eq!(p.source, Source::Url("https://example.com/a".into()));
        assert_eq!(p.length, SummaryLength::Long);
        assert_eq!(p.language.as_deref(), Some("en"));
        let p = SummarizePayload::parse(&json!({"text": "x"})).unwrap();
        assert_eq!(
            (p.length, p.language, p.providers),
            (SummaryLength::Medium, None, None)
        );
    }

    #[test]
    fn bad_payloads_name_their_field() {
        assert_eq!(field(json!([])), "");
        assert_eq!(field(json!({})), "text");
        assert_eq!(field(json!({"text": "  "})), "text");
        assert_eq!(field(json!({"text": 5})), "text");
        assert_eq!(field(json!({"url": "ftp://x/y"})), "url");
        assert_eq!(field(json!({"url": "not a url"})), "url");
        assert_eq!(field(json!({"text": "x", "length": "huge"})), "length");
        assert_eq!(
            field(json!({"text": "x", "language": "japanese"})),
            "language"
        );
        assert_eq!(
            field(json!({"text": "x", "user_preferences": {"length": 3}})),
            "user_preferences.length"
        );
        assert_eq!(field(json!({"text": "x", "providers": []})), "providers");
        assert_eq!(
            field(json!({"text": "x", "providers": ["groq", "gpt"]})),
            "providers[1]"
        );
        assert_eq!(field(json!({"text": "x", "article_id": 1.5})), "article_id");
        assert_eq!(field(json!({"text": "x", "article_id": {}})), "article_id");
    }
}
