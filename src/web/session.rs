//! Who is looking at the page, and proof that a form came from it.
//!
//! - **Sign-in.** The form takes an API token (the same tokens, roles and owner scoping
//!   as the API: [`crate::api::auth::caller_for`]) and keeps it, hex-encoded, in the
//!   `kyu_token` cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
//!   request carries it), Path=/. kyu speaks plain HTTP, so the cookie has no `Secure`
//!   flag; behind a TLS proxy, the proxy should add it. The cookie holds the token itself,
//!   so sessions survive restarts and work on every node; revoking the token (removing it
//!   from `KYU_API_TOKENS`) ends them. Without configured tokens everyone is admin, as in
//!   the API, and no sign-in is needed.
//! - **CSRF.** Every page answer makes sure the browser has a random `kyu_csrf` cookie
//!   (HttpOnly, SameSite=Strict). Forms carry `csrf` = SHA-256 of that cookie and the
//!   session token; a POST whose field does not match the cookies it arrived with, or
//!   whose `Origin` is another site, is refused. A site that can neither read our cookies
//!   nor know the token cannot make the field.

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::api::auth::{Caller, Role, caller_for};

use super::error::PageError;
use super::form::WebForm;
use super::view::{Chrome, notice};

const TOKEN_COOKIE: &str = "kyu_token";
const SEED_COOKIE: &str = "kyu_csrf";
/// Longest token the form accepts (generated tokens are 68 characters).
const MAX_TOKEN: usize = 1024;

/// This browser's CSRF seed (from its cookie, or new in this answer).
#[derive(Clone)]
pub(crate) struct CsrfSeed(String);

/// The value of cookie `name`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Gives the request its CSRF seed; returns the `Set-Cookie` to send when it is new.
pub(crate) fn ensure_seed(req: &mut Request) -> Option<HeaderValue> {
    let sent = cookie(req.headers(), SEED_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let (seed, fresh) = match sent {
        Some(s) => (s, false),
        None => (uuid::Uuid::new_v4().simple().to_string(), true),
    };
    let set = fresh.then(|| {
        HeaderValue::from_str(&format!(
            "{SEED_COOKIE}={seed}; Path=/; HttpOnly; SameSite=Strict"
        ))
        .ok()
    });
    req.extensions_mut().insert(CsrfSeed(seed));
    set.flatten()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * MAX_TOKEN {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The CSRF field for a browser with `seed` signed in with `token`.
fn csrf_for(seed: &str, token: Option<&str>) -> String {
    let d = Sha256::new()
        .chain_update(b"kyu web csrf v1\0")
        .chain_update(seed.as_bytes())
        .chain_update(b"\0")
        .chain_update(token.unwrap_or("").as_bytes())
        .finalize();
    hex(&d[..16])
}

/// A POST from a page of another site says so in `Origin`; none (older browsers,
/// privacy settings) is left to the CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The signed-in viewer of a page (or everyone, in open mode).
pub(crate) struct Viewer {
    pub caller: Caller,
    csrf: String,
    same_origin: bool,
}

impl Viewer {
    pub fn chrome(&self) -> Chrome {
        let (user, role) = match &self.caller {
            Caller::Open => (None, "admin"),
            Caller::Token { name, role } => (
                Some(name.clone()),
                match role {
                    Role::Admin => "admin",
                    Role::User => "user",
                    Role::Worker => "worker",
                },
            ),
        };
        Chrome {
            user,
            role,
            admin: self.caller.is_admin(),
            open: matches!(self.caller, Caller::Open),
            csrf: self.csrf.clone(),
            nav: true,
        }
    }

    /// Refuses a state-changing request whose CSRF field or origin is wrong.
    pub fn check(&self, given: &str) -> Result<(), PageError> {
        if self.same_origin && bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

fn seed_of(parts: &Parts) -> Result<String, PageError> {
    parts
        .extensions
        .get::<CsrfSeed>()
        .map(|s| s.0.clone())
        .ok_or_else(|| {
            PageError::Api(crate::api::error::ApiError::Internal(
                "web route without the session layer".into(),
            ))
        })
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, PageError> {
        let sent = cookie(&parts.headers, TOKEN_COOKIE);
        let token = sent.and_then(unhex);
        let caller = caller_for(&st.tokens, token.as_deref()).map_err(|_| PageError::SignIn {
            next: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into()),
            // A cookie that no longer signs in (revoked token) is dropped.
            clear: sent.is_some(),
        })?;
        let token = match caller {
            Caller::Open => None,
            Caller::Token { .. } => token,
        };
        Ok(Viewer {
            caller,
            csrf: csrf_for(&seed_of(parts)?, token.as_deref()),
            same_origin: same_origin(&parts.headers),
        })
    }
}

/// A browser that is not signed in: its CSRF field for the sign-in form.
pub(crate) struct Anonymous {
    csrf: String,
    same_origin: bool,
}

impl FromRequestParts<AppState> for Anonymous {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _st: &AppState) -> Result<Self, PageError> {
        Ok(Anonymous {
            csrf: csrf_for(&seed_of(parts)?, None),
            same_origin: same_origin(&parts.headers),
        })
    }
}

/// Only local paths, so the form cannot send anyone elsewhere.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    title: &'static str,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    next: String,
    open: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
    notice: Option<String>,
}

fn sign_in_page(
    anon: &Anonymous,
    open: bool,
    next: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
) -> Result<String, PageError> {
    let mut chrome = Chrome::bare();
    chrome.csrf = anon.csrf.clone();
    Ok(SignInPage {
        chrome,
        title: "Sign in",
        notice,
        error,
        next,
        open,
    }
    .render()?)
}

/// `GET /signin`
pub(crate) async fn form(
    State(st): State<AppState>,
    anon: Anonymous,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Html<String>, PageError> {
    let q: SignInQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let next = local_path(q.next.as_deref());
    let open = st.tokens.is_empty();
    Ok(Html(sign_in_page(
        &anon,
        open,
        next,
        notice(q.notice.as_deref()),
        None,
    )?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /signin`: a valid token becomes the session cookie.
pub(crate) async fn sign_in(
    State(st): State<AppState>,
    anon: Anonymous,
    WebForm(f): WebForm<SignInForm>,
) -> Result<Response, PageError> {
    if !anon.same_origin || !bool::from(f.csrf.as_bytes().ct_eq(anon.csrf.as_bytes())) {
        return Err(PageError::Csrf);
    }
    let next = local_path(f.next.as_deref());
    let token = f.token.trim();
    let open = st.tokens.is_empty();
    if open {
        return Ok(Redirect::to(&next).into_response());
    }
    let valid = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && matches!(
            caller_for(&st.tokens, Some(token)),
            Ok(Caller::Token { .. })
        );
    if !valid {
        let html = sign_in_page(
            &anon,
            open,
            next,
            None,
            Some("That token is not valid. Paste a token made by `kyu token`."),
        )?;
        return Ok((axum::http::StatusCode::UNAUTHORIZED, Html(html)).into_response());
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex(token.as_bytes())
    );
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /signout`: forgets the token cookie.
pub(crate) async fn sign_out(
    viewer: Viewer,
    WebForm(f): WebForm<CsrfOnly>,
) -> Result<Response, PageError> {
    viewer.check(&f.csrf)?;
    if matches!(viewer.caller, Caller::Open) {
        return Ok(Redirect::to("/").into_response());
    }
    let mut res = Redirect::to("/signin?notice=signed_out").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, clear_token_cookie());
    Ok(res)
}

/// A `Set-Cookie` that removes the token cookie.
pub(crate) fn clear_token_cookie() -> HeaderValue {
    HeaderValue::from_static("kyu_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_depends_on_seed_and_token() {
        let a = csrf_for("s1", Some("t"));
        assert_eq!(a, csrf_for("s1", Some("t")));
        assert_ne!(a, csrf_for("s2", Some("t")));
        assert_ne!(a, csrf_for("s1", Some("u")));
        assert_ne!(a, csrf_for("s1", None));
    }

    #[test]
    fn tokens_round_trip_through_the_cookie() {
        assert_eq!(
            unhex(&hex(b"kyu_abc;=, x")).as_deref(),
            Some("kyu_abc;=, x")
        );
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn only_local_redirects() {
        assert_eq!(local_path(Some("/jobs?x=1")), "/jobs?x=1");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7878"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7878"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}
