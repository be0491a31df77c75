//! Headers on every web answer: a Content-Security-Policy that lets the page run only
//! kyu's own script and stylesheet and talk only to kyu (so even a job value that slipped
//! past escaping could not run or phone out), no framing, no MIME sniffing, no caching of
//! pages that show jobs; and the CSRF seed cookie ([`super::session`]).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{self, HeaderName};
use axum::middleware::Next;
use axum::response::Response;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) async fn secure(mut req: Request, next: Next) -> Response {
    let set_seed = super::session::ensure_seed(&mut req);
    let asset = req.uri().path().starts_with("/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let mut put = |name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    put(header::CONTENT_SECURITY_POLICY, CSP);
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(header::X_FRAME_OPTIONS, "DENY");
    put(header::REFERRER_POLICY, "same-origin");
    if !asset {
        put(header::CACHE_CONTROL, "no-store");
    }
    if let Some(c) = set_seed {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}
