//! Request bodies: JSON only, size-limited, and every failure an [`ApiError`] that names
//! the field (axum's own `Json` rejections are plain text, so it is not used).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body deserialized into `T`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::BadRequest {
                    code: "invalid_json",
                    message: format!("could not read the body: {r}"),
                    field: None,
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// The body limit in force, for the error message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Deserializes `bytes`, naming the field at fault. Every request body is an object
/// (serde would otherwise read `[…]` as a struct's fields in order).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        _ => {
            return Err(ApiError::BadRequest {
                code: "invalid_json",
                message: "the body must be a JSON object".into(),
                field: None,
            });
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(from_serde)?;
    de.end().map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        message: e.to_string(),
        field: None,
    })?;
    Ok(value)
}

fn from_serde(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !inner.is_data() {
        return ApiError::BadRequest {
            code: "invalid_json",
            message: inner.to_string(),
            field: None,
        };
    }
    let message = inner.to_string();
    // serde names missing and unknown fields only in the message: `missing field `x``.
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"));
    // An unknown field is already the last step of the path; a missing one is not.
    let field = match (path.as_str(), named) {
        (".", Some(n)) => n.to_owned(),
        (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => p.to_owned(),
        (p, Some(n)) => format!("{p}.{n}"),
        (p, None) => p.to_owned(),
    };
    ApiError::invalid(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u8,
        b: Option<Vec<Inner>>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        c: String,
    }

    fn field(body: &str) -> (String, Option<String>) {
        let e = parse::<T>(body.as_bytes()).unwrap_err().body().error;
        (e.code, e.field)
    }

    #[test]
    fn names_the_field() {
        assert_eq!(field("{"), ("invalid_json".into(), None));
        assert_eq!(field("[1]"), ("invalid_json".into(), None));
        assert_eq!(field(r#"{"a":1} x"#), ("invalid_json".into(), None));
        assert_eq!(
            field(r#"{"a":"x"}"#),
            ("invalid_field".into(), Some("a".into()))
        );
        assert_eq!(field("{}"), ("invalid_field".into(), Some("a".into())));
        assert_eq!(
            field(r#"{"a":1,"z":2}"#),
            ("invalid_field".into(), Some("z".into()))
        );
        assert_eq!(
            field(r#"{"a":1,"b":[{"c":"x"},{"c":5}]}"#),
            ("invalid_field".into(), Some("b[1].c".into()))
        );
        assert_eq!(
            field(r#"{"a":1,"b":[{}]}"#),
            ("invalid_field".into(), Some("b[0].c".into()))
        );
    }
}
