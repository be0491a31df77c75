//! The guarded client's DNS: a name is resolved here (not by reqwest's default
//! resolver) so every address a connection may use is checked, whatever the name
//! was. Internal addresses are dropped; a name left with none is refused. This is what
//! stops DNS rebinding too: the check is made on the very addresses connected to.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{NetPolicy, Refused, ranges::internal_class};

/// Resolves with tokio's `lookup_host` and filters by the policy.
pub(super) struct GuardedResolver {
    pub(super) policy: NetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = filter(&host, found, &policy)?;
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses of `host` a connection may use: all public ones, and internal ones
/// the policy allows. The port is not known at resolution time, so an `allow` entry
/// admits its IP here; the caller checks the exact IP:port of the peer it reached.
fn filter(
    host: &str,
    found: Vec<SocketAddr>,
    policy: &NetPolicy,
) -> Result<Vec<SocketAddr>, Refused> {
    let mut refused: Option<(IpAddr, &'static str)> = None;
    let mut kept = Vec::with_capacity(found.len());
    for addr in found {
        match internal_class(addr.ip()) {
            Some(class) if !ip_allowed(addr.ip(), policy) => {
                refused.get_or_insert((addr.ip(), class));
            }
            _ => kept.push(addr),
        }
    }
    match (kept.is_empty(), refused) {
        (true, Some((ip, class))) => Err(Refused(format!(
            "refused: {host} resolves to {ip}, {class}{}",
            policy.allowed_by.hint()
        ))),
        _ => Ok(kept),
    }
}

fn ip_allowed(ip: IpAddr, policy: &NetPolicy) -> bool {
    policy.allow_private || policy.allow.iter().any(|a| a.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn internal_addresses_are_dropped_or_refused() {
        let deny = NetPolicy::default();
        let e = filter("localhost", addrs(&["127.0.0.1", "::1"]), &deny).unwrap_err();
        assert!(
            e.0.contains("localhost resolves to 127.0.0.1, a loopback"),
            "{e}"
        );
        let mixed = filter("mixed", addrs(&["10.0.0.1", "8.8.8.8"]), &deny).unwrap();
        assert_eq!(mixed, addrs(&["8.8.8.8"]));
    }

    #[test]
    fn policy_admits_internal_addresses() {
        let open = NetPolicy {
            allow_private: true,
            allow: vec![],
            ..Default::default()
        };
        assert_eq!(filter("h", addrs(&["127.0.0.1"]), &open).unwrap().len(), 1);
        let one = NetPolicy {
            allow_private: false,
            allow: vec!["127.0.0.1:8080".parse().unwrap()],
            ..Default::default()
        };
        let kept = filter("h", addrs(&["127.0.0.1", "::1"]), &one).unwrap();
        assert_eq!(kept, addrs(&["127.0.0.1"]));
    }

    #[tokio::test]
    async fn resolver_refuses_localhost() {
        let r = GuardedResolver {
            policy: NetPolicy::default(),
        };
        let e = r.resolve("localhost".parse().unwrap()).await.err().unwrap();
        assert!(e.to_string().contains("refused: localhost"), "{e}");
    }
}
