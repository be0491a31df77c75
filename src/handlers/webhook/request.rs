//! The `http` job's payload as a typed request, checked once: at enqueue
//! (`Handler::validate`, so a bad payload is a 422 naming its field) and again when
//! the job runs (a job enqueued through the library API skips the first check).

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use kyu_actors::PayloadError;

/// Methods a webhook may use.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Headers a payload may not set: kyu sets them itself (identity, signature), or they
/// describe the connection or the framing and would break the request.
const RESERVED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "idempotency-key",
];

/// Headers under this prefix are kyu's own (`X-Kyu-Job-Id`, `X-Kyu-Signature`, …).
const KYU_PREFIX: &str = "x-kyu-";

/// A webhook call, as the payload asks for it.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: Url,
    pub method: Method,
    /// The payload's own headers (never logged: they may carry credentials).
    pub headers: HeaderMap,
    pub body: Option<Body>,
}

/// What is sent as the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// The Content-Type kyu sets unless the payload's headers name one.
    pub content_type: &'static str,
}

impl WebhookRequest {
    /// Reads `{url, method?, headers?, body?}`; the error names the field at fault.
    pub fn parse(payload: &Value) -> Result<WebhookRequest, PayloadError> {
        if !payload.is_object() {
            return Err(PayloadError::new("", "must be an object"));
        }
        Ok(WebhookRequest {
            url: url(payload.get("url"))?,
            method: method(payload.get("method"))?,
            headers: headers(payload.get("headers"))?,
            body: body(payload.get("body"))?,
        })
    }

    /// Whether the payload's headers set the Content-Type themselves.
    pub fn has_content_type(&self) -> bool {
        self.headers.contains_key(CONTENT_TYPE)
    }
}

fn url(v: Option<&Value>) -> Result<Url, PayloadError> {
    let s = match v {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(PayloadError::new("url", "is required"));
        }
        Some(_) => return Err(PayloadError::new("url", "must be a string")),
    };
    // The parser's message quotes no part of the URL (which may hold credentials).
    let url = Url::parse(s).map_err(|e| PayloadError::new("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PayloadError::new("url", "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(PayloadError::new("url", "has no host"));
    }
    Ok(url)
}

fn method(v: Option<&Value>) -> Result<Method, PayloadError> {
    let name = match v {
        None | Some(Value::Null) => return Ok(Method::POST),
        Some(Value::String(s)) => s.trim().to_ascii_uppercase(),
        Some(_) => return Err(PayloadError::new("method", "must be a string")),
    };
    if !METHODS.contains(&name.as_str()) {
        return Err(PayloadError::new(
            "method",
            format!("must be one of {}", METHODS.join(", ")),
        ));
    }
    Method::from_bytes(name.as_bytes())
        .map_err(|_| PayloadError::new("method", "not an HTTP method"))
}

fn headers(v: Option<&Value>) -> Result<HeaderMap, PayloadError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(HeaderMap::new()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(PayloadError::new(
                "headers",
                "must be an object of header names to string values",
            ));
        }
    };
    let mut out = HeaderMap::new();
    for (name, value) in map {
        let field = format!("headers.{name}");
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PayloadError::new(&field, "not a valid header name"))?;
        if RESERVED.contains(&n.as_str()) || n.as_str().starts_with(KYU_PREFIX) {
            return Err(PayloadError::new(
                &field,
                "is set by kyu and cannot be given",
            ));
        }
        let Value::String(s) = value else {
            return Err(PayloadError::new(&field, "must be a string"));
        };
        // The message never quotes the value: it may be a credential.
        let v = HeaderValue::from_str(s)
            .map_err(|_| PayloadError::new(&field, "not a valid header value"))?;
        out.append(n, v);
    }
    Ok(out)
}

fn body(v: Option<&Value>) -> Result<Option<Body>, PayloadError> {
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Body {
            bytes: s.as_bytes().to_vec(),
            content_type: "text/plain; charset=utf-8",
        }),
        Some(other) => Some(Body {
            bytes: serde_json::to_vec(other)
                .map_err(|e| PayloadError::new("body", e.to_string()))?,
            content_type: "application/json",
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(p: Value) -> String {
        WebhookRequest::parse(&p).unwrap_err().field
    }

    #[test]
    fn a_minimal_payload_posts_nothing() {
        let r = WebhookRequest::parse(&json!({"url": "https://example.com/hook"})).unwrap();
        assert_eq!(r.method, Method::POST);
        assert!(r.headers.is_empty());
        assert_eq!(r.body, None);
    }

    #[test]
    fn bodies_are_text_or_json() {
        let r = WebhookRequest::parse(&json!({"url": "http://a.example", "body": "hi"})).unwrap();
        assert_eq!(r.body.unwrap().content_type, "text/plain; charset=utf-8");
        let r =
            WebhookRequest::parse(&json!({"url": "http://a.example", "body": {"a": 1}})).unwrap();
        let b = r.body.unwrap();
        assert_eq!(b.content_type, "application/json");
        assert_eq!(b.bytes, br#"{"a":1}"#);
    }

    #[test]
    fn methods_are_checked_case_insensitively() {
        let r =
            WebhookRequest::parse(&json!({"url": "http://a.example", "method": "put"})).unwrap();
        assert_eq!(r.method, Method::PUT);
        assert_eq!(
            field(json!({"url": "http://a.example", "method": "TRACE"})),
            "method"
        );
        assert_eq!(
            field(json!({"url": "http://a.example", "method": 1})),
            "method"
        );
    }

    #[test]
    fn urls_must_be_http() {
        assert_eq!(field(json!({})), "url");
        assert_eq!(field(json!({"url": ""})), "url");
        assert_eq!(field(json!({"url": 5})), "url");
        assert_eq!(field(json!({"url": "not a url"})), "url");
        assert_eq!(field(json!({"url": "ftp://a.example/x"})), "url");
        assert_eq!(field(json!({"url": "file:///etc/passwd"})), "url");
        assert_eq!(field(json!("http://a.example")), "");
    }

    #[test]
    fn headers_name_the_one_at_fault() {
        let h = |headers: Value| field(json!({"url": "http://a.example", "headers": headers}));
        assert_eq!(h(json!(["X-A"])), "headers");
        assert_eq!(h(json!({"X-Num": 1})), "headers.X-Num");
        assert_eq!(h(json!({"Bad Name": "v"})), "headers.Bad Name");
        assert_eq!(h(json!({"X-Nl": "a\r\nInjected: 1"})), "headers.X-Nl");
        for reserved in [
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "X-Kyu-Signature",
            "x-kyu-job-id",
            "Idempotency-Key",
        ] {
            assert_eq!(h(json!({ reserved: "v" })), format!("headers.{reserved}"));
        }
        let r = WebhookRequest::parse(&json!({
            "url": "http://a.example",
            "headers": {"Authorization": "Bearer t", "Content-Type": "application/cloudevents+json"}
        }))
        .unwrap();
        assert_eq!(r.headers.len(), 2);
        assert!(r.has_content_type());
    }

    #[test]
    fn errors_do_not_quote_header_values() {
        let e = WebhookRequest::parse(&json!({
            "url": "http://a.example",
            "headers": {"Authorization": "Bearer s3cret\n"}
        }))
        .unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
