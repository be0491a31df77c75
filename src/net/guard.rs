//! SSRF guard: jobs fetch URLs that users send (`extract_content`, the `http` webhook),
//! so without a guard a job could be pointed at the cloud metadata service, the admin
//! port of a sidecar or a database on loopback. Every connection of a
//! [`guarded_client`] is checked three ways: names at DNS resolution ([`resolve`], which
//! also defeats DNS rebinding), each new connection's peer IP:port ([`connect`]), and
//! IP-literal URLs (which reqwest does not resolve) by [`check_url`] on every redirect.
//! The address table is in [`ranges`].
//!
//! Callers call [`check_url`] on the URL they start from (an IP literal to an allowed
//! port would otherwise only be caught at connect time, with a less clear message),
//! map send errors through [`refusal`] first (so a refusal is `non_retryable`, not a
//! transport error), and [`check_response`] on the answer (a redirect reqwest did not
//! follow, such as one to `file:`).

mod connect;
mod ranges;
mod resolve;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kyu_actors::JobError;
use reqwest::Url;
use reqwest::redirect;

pub use ranges::internal_class;

/// Whose settings allow internal addresses: each refusal names only the settings that
/// would let that job through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllowedBy {
    /// `extract_content`: `KYU_FETCH_ALLOW_PRIVATE`, `KYU_FETCH_ALLOW`.
    #[default]
    Fetch,
    /// The `http` job (webhooks): `KYU_WEBHOOK_ALLOW_PRIVATE`.
    Webhook,
}

impl AllowedBy {
    /// The end of a refusal message: how an operator allows an internal address.
    fn hint(self) -> &'static str {
        match self {
            AllowedBy::Fetch => {
                " (set KYU_FETCH_ALLOW_PRIVATE=true or list the IP:port in KYU_FETCH_ALLOW \
                 to allow)"
            }
            AllowedBy::Webhook => " (set KYU_WEBHOOK_ALLOW_PRIVATE=true to allow)",
        }
    }
}

/// Longest wait for a TCP/TLS connection, whatever the whole request's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which addresses an outbound job may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Loopback, private, link-local and other internal addresses are allowed.
    pub allow_private: bool,
    /// Internal addresses allowed even when `allow_private` is false (exact IP:port).
    pub allow: Vec<SocketAddr>,
    /// The settings a refusal names.
    pub allowed_by: AllowedBy,
}

impl NetPolicy {
    /// `Err(why)` if `addr` is internal and not allowed.
    fn judge(&self, addr: SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        match internal_class(ip) {
            None => Ok(()),
            Some(_) if self.allow_private => Ok(()),
            Some(_) if self.allow.iter().any(|a| same(*a, addr)) => Ok(()),
            Some(class) => Err(format!(
                "refused: {ip} is {class}{}",
                self.allowed_by.hint()
            )),
        }
    }
}

/// A connection the guard refused (the error inside reqwest's error chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Refuses a URL that is not http(s), or (by `policy`) whose host is an IP literal in
/// a loopback, private, link-local, unique-local, CGNAT, multicast, unspecified or
/// documentation range. `Err` is `non_retryable`.
pub fn check_url(url: &Url, policy: &NetPolicy) -> Result<(), JobError> {
    check(url, policy).map_err(|r| JobError::non_retryable(r.0))
}

fn check(url: &Url, policy: &NetPolicy) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused(format!(
            "refused: {}: URLs are not fetched (only http and https)",
            url.scheme()
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(Refused(format!("refused: {url} has no host")));
    };
    // The URL parser has already normalised IPv4 forms (`0x7f000001`, `127.1`) to
    // dotted decimal; IPv6 literals keep their brackets.
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(()); // a name: judged at resolution
    };
    let port = url.port_or_known_default().unwrap_or(80);
    policy.judge(SocketAddr::new(ip, port)).map_err(Refused)
}

/// Refuses a peer that a response came from, by the exact IP:port rule (a host name's
/// addresses are only checked by IP when resolved). `Err` is `non_retryable`.
pub fn check_peer(addr: SocketAddr, policy: &NetPolicy) -> Result<(), JobError> {
    policy.judge(addr).map_err(JobError::non_retryable)
}

/// Checks an answer before its body is read: the peer it came from (exact IP:port,
/// see [`check_peer`]) and a redirect the client stopped at (reqwest hands back a 3xx
/// whose `Location` it cannot follow, such as `file:///etc/passwd`, instead of failing).
/// `Err` is `non_retryable`.
pub fn check_response(res: &reqwest::Response, policy: &NetPolicy) -> Result<(), JobError> {
    if let Some(peer) = res.remote_addr() {
        check_peer(peer, policy)?;
    }
    if !res.status().is_redirection() {
        return Ok(());
    }
    let Some(location) = res.headers().get(reqwest::header::LOCATION) else {
        return Ok(()); // a 304 or a 300 without a choice: the caller judges the status
    };
    let target = location
        .to_str()
        .ok()
        .and_then(|l| res.url().join(l).ok())
        .ok_or_else(|| JobError::non_retryable("refused: a redirect to an unreadable Location"))?;
    check_url(&target, policy)?;
    Err(JobError::non_retryable(format!(
        "refused: a redirect to {target} that could not be followed"
    )))
}

/// The guard's refusal inside a reqwest error (from the resolver or the redirect
/// policy), as a `non_retryable` error; `None` for any other error.
pub fn refusal(e: &reqwest::Error) -> Option<JobError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(JobError::non_retryable(r.0.clone()));
        }
        if let Some(t) = err.downcast_ref::<TooManyRedirects>() {
            return Some(JobError::non_retryable(t.to_string()));
        }
        cur = err.source();
    }
    None
}

/// The redirect limit was passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: more than {0} redirects")]
pub struct TooManyRedirects(pub usize);

/// A client that refuses internal addresses at DNS resolution (by `policy`), follows
/// at most `max_redirects` redirects, each checked by [`check_url`], and gives up
/// after `timeout`.
pub fn guarded_client(
    policy: &NetPolicy,
    timeout: Duration,
    max_redirects: usize,
) -> anyhow::Result<reqwest::Client> {
    let on_redirect = policy.clone();
    let redirects = redirect::Policy::custom(move |attempt| {
        // `previous` holds every URL requested so far, the first one included.
        if attempt.previous().len() > max_redirects {
            return attempt.error(TooManyRedirects(max_redirects));
        }
        match check(attempt.url(), &on_redirect) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(resolve::GuardedResolver {
            policy: policy.clone(),
        }))
        .connector_layer(connect::PeerCheckLayer {
            policy: Arc::new(policy.clone()),
        })
        .redirect(redirects)
        .timeout(timeout)
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .user_agent(concat!("kyu/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(client)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    canonical(a.ip()) == canonical(b.ip()) && a.port() == b.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_err(u: &str, policy: &NetPolicy) -> Option<String> {
        check_url(&Url::parse(u).unwrap(), policy).err().map(|e| {
            assert_eq!(e.kind().as_str(), "non_retryable", "{u}");
            e.to_string()
        })
    }

    #[test]
    fn only_http_and_https() {
        let open = NetPolicy {
            allow_private: true,
            allow: vec![],
            ..Default::default()
        };
        for u in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://x/",
            "data:text/html,hi",
        ] {
            let e = url_err(u, &open).unwrap_or_else(|| panic!("{u} passed"));
            assert!(e.contains("only http and https"), "{e}");
        }
        assert_eq!(
            url_err("https://example.com/a", &NetPolicy::default()),
            None
        );
    }

    #[test]
    fn internal_ip_literals_are_refused() {
        let deny = NetPolicy::default();
        for (u, want) in [
            ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
            ("http://127.1:8080/", "127.0.0.1 is a loopback"),
            ("http://0x7f000001/", "127.0.0.1 is a loopback"),
            ("http://2130706433/", "127.0.0.1 is a loopback"),
            ("http://0177.0.0.1/", "127.0.0.1 is a loopback"),
            ("http://[::1]/", "::1 is a loopback"),
            ("http://[::ffff:127.0.0.1]/", "127.0.0.1 is a loopback"),
            (
                "http://[::ffff:a9fe:a9fe]/",
                "169.254.169.254 is a link-local",
            ),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.0.0.1/", "RFC 1918"),
            ("http://100.100.100.200/", "CGNAT"),
            ("http://0.0.0.0:7878/", "unspecified"),
            ("http://[fd00::1]/", "unique-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://255.255.255.255/", "broadcast"),
            ("http://224.0.0.1/", "multicast"),
        ] {
            let e = url_err(u, &deny).unwrap_or_else(|| panic!("{u} passed"));
            assert!(e.contains(want), "{u}: {e}");
            assert!(e.contains("KYU_FETCH_ALLOW_PRIVATE=true"), "{e}");
        }
        assert_eq!(url_err("http://93.184.216.34/", &deny), None);
        assert_eq!(url_err("http://[2606:4700::1111]/", &deny), None);
        // Names are judged at resolution, not here.
        assert_eq!(url_err("http://localhost/", &deny), None);
    }

    #[test]
    fn allow_list_is_exact_ip_and_port() {
        let one = NetPolicy {
            allow_private: false,
            allow: vec!["127.0.0.1:8080".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(url_err("http://127.0.0.1:8080/x", &one), None);
        assert_eq!(url_err("http://[::ffff:127.0.0.1]:8080/x", &one), None);
        assert!(url_err("http://127.0.0.1:8081/x", &one).is_some());
        assert!(url_err("http://127.0.0.1/x", &one).is_some());
        assert!(url_err("http://127.0.0.2:8080/x", &one).is_some());
        let open = NetPolicy {
            allow_private: true,
            allow: vec![],
            ..Default::default()
        };
        assert_eq!(url_err("http://127.0.0.1:1/", &open), None);
        assert!(check_peer("127.0.0.1:8080".parse().unwrap(), &one).is_ok());
        assert!(check_peer("127.0.0.1:9".parse().unwrap(), &one).is_err());
        assert!(check_peer("[::ffff:127.0.0.1]:8080".parse().unwrap(), &one).is_ok());
    }

    async fn loopback_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        use axum::response::Redirect;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route(
                "/file",
                get(|| async { Redirect::temporary("file:///etc/passwd") }),
            )
            .route(
                "/other",
                get(|| async { Redirect::temporary("http://127.0.0.1:9/") }),
            );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (addr, task)
    }

    async fn ok_again(c: &reqwest::Client, addr: SocketAddr) -> reqwest::Response {
        c.get(format!("http://{addr}/ok")).send().await.unwrap()
    }

    #[tokio::test]
    async fn client_checks_names_and_redirects() {
        let (addr, task) = loopback_server().await;
        let one = NetPolicy {
            allow_private: false,
            allow: vec![addr],
            ..Default::default()
        };
        let c = guarded_client(&one, Duration::from_secs(5), 3).unwrap();
        let ok = c.get(format!("http://{addr}/ok")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok");
        for (path, want) in [
            ("/other", "127.0.0.1 is a loopback"),
            ("/loop", "more than 3 redirects"),
        ] {
            let e = c
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap_err();
            let j = refusal(&e).unwrap_or_else(|| panic!("{path}: {e:?}"));
            assert!(j.to_string().contains(want), "{path}: {j}");
        }
        // reqwest stops at a redirect to another scheme and hands back the 3xx.
        let file = c.get(format!("http://{addr}/file")).send().await.unwrap();
        let e = check_response(&file, &one).unwrap_err().to_string();
        assert!(e.contains("file: URLs are not fetched"), "{e}");
        let other = NetPolicy {
            allow_private: false,
            allow: vec!["127.0.0.1:9".parse().unwrap()],
            ..Default::default()
        };
        let e = check_response(&ok_again(&c, addr).await, &other).unwrap_err();
        assert!(e.to_string().contains("is a loopback"), "{e}");
        // A name whose IP is allowed, but on another port: refused at connect time.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_port = format!("http://localhost:{}/ok", other.local_addr().unwrap().port());
        let e = c.get(other_port).send().await.unwrap_err();
        let j = refusal(&e).unwrap_or_else(|| panic!("{e:?}"));
        assert!(j.to_string().contains("is a loopback"), "{j}");
        let by_name = c.get(format!("http://localhost:{}/ok", addr.port()));
        assert_eq!(by_name.send().await.unwrap().text().await.unwrap(), "ok");
        let deny = guarded_client(&NetPolicy::default(), Duration::from_secs(5), 3).unwrap();
        let by_name = format!("http://localhost:{}/ok", addr.port());
        let e = deny.get(by_name).send().await.unwrap_err();
        let j = refusal(&e).unwrap_or_else(|| panic!("{e:?}"));
        assert!(
            j.to_string().contains("refused: localhost resolves to"),
            "{j}"
        );
        task.abort();
    }
}
