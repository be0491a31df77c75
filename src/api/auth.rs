//! Bearer tokens and roles. The config holds `name:role:sha256-hex` entries, never a
//! token; a presented token is hashed and compared with every entry in constant time.
//! A `user` sees only the jobs it owns; an `admin` sees all.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
    /// A remote worker process: fetches and reports jobs over the worker protocol;
    /// like a `user`, it sees no other owner's jobs.
    Worker,
}

/// One configured token: who it is, what it may do, and its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenEntry({}, {:?})", self.name, self.role)
    }
}

impl TokenEntry {
    /// The config line for this entry.
    pub fn to_config(&self) -> String {
        let role = match self.role {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Worker => "worker",
        };
        format!("{}:{role}:{}", self.name, hex(&self.hash))
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (244 random bits) for `kyu token`.
pub fn new_token() -> String {
    format!(
        "kyu_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Parses `KYU_API_TOKENS`: `name:role:sha256-hex` entries separated by commas.
pub fn parse_tokens(v: &str) -> Result<Vec<TokenEntry>, String> {
    let mut out: Vec<TokenEntry> = Vec::new();
    for (i, entry) in v.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let at = |m: &str| format!("entry {}: {m} (expected name:role:sha256-hex)", i + 1);
        let mut parts = entry.split(':');
        let (Some(name), Some(role), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(at("wrong number of parts"));
        };
        if name.is_empty() || name.len() > 255 {
            return Err(at("the name must be 1 to 255 bytes"));
        }
        let role = match role {
            "admin" => Role::Admin,
            "user" => Role::User,
            "worker" => Role::Worker,
            _ => return Err(at("the role must be admin, user or worker")),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(at("the hash must be 64 hex digits (sha256 of the token)"));
        }
        let mut bytes = [0u8; 32];
        for (j, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hash[2 * j..2 * j + 2], 16).map_err(|e| at(&e.to_string()))?;
        }
        if out.iter().any(|t| t.name == name) {
            return Err(at("the name is used twice"));
        }
        out.push(TokenEntry {
            name: name.to_owned(),
            role,
            hash: bytes,
        });
    }
    Ok(out)
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No tokens are configured (loopback only): full access, jobs have no owner.
    Open,
    Token {
        name: String,
        role: Role,
    },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::Open
                | Caller::Token {
                    role: Role::Admin,
                    ..
                }
        )
    }

    /// The owner new jobs get.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token { name, .. } => Some(name),
        }
    }

    /// The only owner whose jobs this caller may see; `None`: all jobs.
    pub fn scope(&self) -> Option<&str> {
        if self.is_admin() { None } else { self.owner() }
    }

    /// Whether this caller may see a job owned by `owner`.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match self.scope() {
            None => true,
            Some(me) => owner == Some(me),
        }
    }

    /// The worker protocol (fetch, heartbeat, reports): workers and admins.
    pub fn require_worker(&self) -> Result<(), ApiError> {
        match self {
            Caller::Token {
                role: Role::User, ..
            } => Err(ApiError::Forbidden),
            _ => Ok(()),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Finds the entry whose hash matches `token`, comparing with every entry.
pub fn authenticate<'a>(tokens: &'a [TokenEntry], token: &str) -> Option<&'a TokenEntry> {
    let h = hash_token(token);
    let mut found = None;
    for t in tokens {
        if bool::from(t.hash.ct_eq(&h)) {
            found = Some(t);
        }
    }
    found
}

/// The caller a presented token (if any) stands for: everyone is [`Caller::Open`] when
/// no tokens are configured; otherwise the token must match an entry. The API reads the
/// token from `Authorization: Bearer`, the web page from its sign-in cookie.
pub fn caller_for(tokens: &[TokenEntry], token: Option<&str>) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Ok(Caller::Open);
    }
    let t = token
        .and_then(|token| authenticate(tokens, token))
        .ok_or(ApiError::Unauthorized)?;
    Ok(Caller::Token {
        name: t.name.clone(),
        role: t.role,
    })
}

/// The bearer token of a request, read strictly: exactly one `Authorization` header,
/// the scheme `Bearer`, one space, then a token of RFC 6750 `b64token` characters and
/// nothing else. A second header, extra or trailing whitespace, or any other byte is
/// a 401 rather than a guess at what was meant: kyu compares tokens by their hash, and
/// a header that parsed two ways could reach a different entry than a proxy in front
/// of kyu checked. (HTTP/1.1 parsing already drops whitespace at the very end of a
/// header line, RFC 9110 §5.5, before kyu sees it.) `None` when there is no header.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::Unauthorized);
    }
    let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.bytes().all(b64token) {
        return Err(ApiError::Unauthorized);
    }
    Ok(Some(token))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.tokens.is_empty() {
            return Ok(Caller::Open);
        }
        caller_for(&state.tokens, bearer_token(&parts.headers)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_authenticates() {
        let token = new_token();
        let line = format!("ops:admin:{}", hex(&hash_token(&token)));
        let tokens =
            parse_tokens(&format!("{line}, alice:user:{}", hex(&hash_token("a")))).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].to_config(), line);
        assert_eq!(
            authenticate(&tokens, &token).map(|t| t.role),
            Some(Role::Admin)
        );
        assert_eq!(
            authenticate(&tokens, "a").map(|t| t.name.as_str()),
            Some("alice")
        );
        assert!(authenticate(&tokens, "b").is_none());
        assert!(parse_tokens("x:root:00").is_err());
        assert!(parse_tokens("x:user").is_err());
        assert!(parse_tokens(&format!("{line},{line}")).is_err());
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                AUTHORIZATION,
                axum::http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(bearer_token(&headers(&[])).ok(), Some(None));
        assert_eq!(
            bearer_token(&headers(&["Bearer kyu_abc"])).ok(),
            Some(Some("kyu_abc"))
        );
        assert_eq!(
            bearer_token(&headers(&["bearer kyu_abc"])).ok(),
            Some(Some("kyu_abc"))
        );
        for bad in [
            &["Bearer kyu_abc", "Bearer kyu_abc"][..],
            &["Bearer kyu_abc", "Bearer other"],
            &["Bearer kyu_abc "],
            &["Bearer kyu_abc\t"],
            &["Bearer  kyu_abc"],
            &["Bearer\tkyu_abc"],
            &["Bearer kyu abc"],
            &["Bearer "],
            &["Bearer"],
            &["Basic a3l1OmFiYw=="],
        ] {
            assert!(
                matches!(bearer_token(&headers(bad)), Err(ApiError::Unauthorized)),
                "{bad:?} was accepted"
            );
        }
    }
}
