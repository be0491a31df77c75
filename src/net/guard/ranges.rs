//! Which IP addresses are "internal": the address classes an outbound job must not
//! reach unless allowed (loopback, RFC 1918, link-local, unique-local, CGNAT, multicast,
//! unspecified, broadcast, documentation, benchmarking, reserved), including IPv4
//! addresses hidden inside IPv6 ones (mapped, compatible, NAT64, 6to4). Kept apart from
//! the client so the table can be read and tested on its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is internal ("a loopback address"), or `None` for a public address.
pub fn internal_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

/// IPv4 special-purpose ranges (IANA registry, RFC 6890 and successors).
fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        _ if ip.is_broadcast() => "the broadcast address",
        (0, _, _) => "an unspecified (\"this network\") address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private (RFC 1918) address",
        (172, 16..=31, _) => "a private (RFC 1918) address",
        (100, 64..=127, _) => "a shared (CGNAT, RFC 6598) address",
        (169, 254, _) => "a link-local address",
        (192, 0, 0) => "an IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a deprecated 6to4 relay address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    };
    Some(class)
}

/// IPv6 special-purpose ranges; an embedded IPv4 address is judged as IPv4.
fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_class(v4);
    }
    let s = ip.segments();
    let class = match s {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        [0, 0, 0, 0, 0, 0, _, _] => "an IPv4-compatible address",
        [0x100, 0, 0, 0, ..] => "a discard-only address",
        [0x64, 0xff9b, 1, ..] => "a local-use NAT64 address",
        [0x2001, 0xdb8, ..] => "a documentation address",
        [0x3fff, b, ..] if b < 0x1000 => "a documentation address",
        [0x2001, 2, 0, ..] => "a benchmarking address",
        [0x2001, b, ..] if b < 0x200 => "an IETF protocol assignment (2001::/23)",
        [a, ..] if a & 0xfe00 == 0xfc00 => "a unique-local address",
        [a, ..] if a & 0xffc0 == 0xfe80 => "a link-local address",
        [a, ..] if a & 0xffc0 == 0xfec0 => "a site-local address",
        [a, ..] if a & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, not `::` or `::1`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        internal_class(s.parse().unwrap())
    }

    #[test]
    fn ipv4_internal_classes() {
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "RFC 1918"),
            ("172.16.0.1", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.8", "IETF"),
        ] {
            let got = class(ip).unwrap_or_else(|| panic!("{ip} should be internal"));
            assert!(got.contains(want), "{ip}: {got}");
        }
    }

    #[test]
    fn ipv4_public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_internal_classes() {
        for (ip, want) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("2001::1", "IETF"),
            ("100::1", "discard"),
            ("64:ff9b:1::1", "NAT64"),
        ] {
            let got = class(ip).unwrap_or_else(|| panic!("{ip} should be internal"));
            assert!(got.contains(want), "{ip}: {got}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        for (ip, want) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::ffff:10.0.0.1", "RFC 1918"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "RFC 1918"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "RFC 1918"),
        ] {
            let got = class(ip).unwrap_or_else(|| panic!("{ip} should be internal"));
            assert!(got.contains(want), "{ip}: {got}");
        }
        assert_eq!(class("::ffff:8.8.8.8"), None);
        assert_eq!(class("64:ff9b::808:808"), None);
        assert_eq!(class("2002:808:808::1"), None);
    }

    #[test]
    fn ipv6_public_addresses_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2001:200::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }
}
