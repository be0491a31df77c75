//! The receiver's answer as the job's result: `{status, body, truncated}`. The body
//! is read up to a cap (a receiver cannot make kyu buffer or store megabytes) and
//! kept as JSON when the answer says it is JSON, else as text.

use reqwest::Response;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// Most bytes of an answer's body kept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An answer's body, read up to the cap.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerBody {
    pub bytes: Vec<u8>,
    /// The body was longer than [`MAX_BODY_BYTES`]; the rest was not read.
    pub truncated: bool,
    pub is_json: bool,
}

impl AnswerBody {
    /// Reads `res`'s body, stopping after [`MAX_BODY_BYTES`].
    pub async fn read(res: &mut Response) -> Result<AnswerBody, reqwest::Error> {
        let is_json = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_type);
        let mut bytes = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = res.chunk().await? {
            let room = MAX_BODY_BYTES - bytes.len();
            if chunk.len() > room {
                bytes.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(AnswerBody {
            bytes,
            truncated,
            is_json,
        })
    }

    /// The body as text: invalid UTF-8 replaced, a character cut by the cap dropped.
    pub fn text(&self) -> String {
        let whole = match std::str::from_utf8(&self.bytes) {
            Ok(s) => return s.to_owned(),
            // Only the cap cut a character short: keep what precedes it.
            Err(e) if self.truncated && e.error_len().is_none() => &self.bytes[..e.valid_up_to()],
            Err(_) => &self.bytes[..],
        };
        String::from_utf8_lossy(whole).into_owned()
    }

    /// JSON when the answer is JSON and whole, else text (empty body: `null`).
    pub fn value(&self) -> Value {
        if self.bytes.is_empty() {
            return Value::Null;
        }
        if self.is_json
            && !self.truncated
            && let Ok(v) = serde_json::from_slice(&self.bytes)
        {
            return v;
        }
        Value::String(self.text())
    }

    /// The job's result.
    pub fn result(&self, status: u16) -> Value {
        json!({ "status": status, "body": self.value(), "truncated": self.truncated })
    }
}

/// `application/json`, `application/problem+json` and the like.
fn is_json_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &[u8], truncated: bool, is_json: bool) -> AnswerBody {
        AnswerBody {
            bytes: bytes.to_vec(),
            truncated,
            is_json,
        }
    }

    #[test]
    fn json_is_kept_as_json_only_when_whole() {
        assert_eq!(
            body(br#"{"ok":true}"#, false, true).value(),
            json!({"ok": true})
        );
        assert_eq!(
            body(br#"{"ok":tr"#, true, true).value(),
            json!(r#"{"ok":tr"#)
        );
        assert_eq!(
            body(br#"{"ok":true}"#, false, false).value(),
            json!(r#"{"ok":true}"#)
        );
        assert_eq!(body(b"not json", false, true).value(), json!("not json"));
        assert_eq!(body(b"", false, true).value(), Value::Null);
    }

    #[test]
    fn a_character_cut_by_the_cap_is_dropped() {
        let s = "日本語".as_bytes();
        assert_eq!(body(&s[..7], true, false).text(), "日本");
        assert_eq!(body(&s[..7], false, false).text(), "日本\u{FFFD}");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_type("application/json; charset=utf-8"));
        assert!(is_json_type("Application/Problem+JSON"));
        assert!(!is_json_type("text/plain"));
        assert!(!is_json_type("text/json+html"));
    }
}
