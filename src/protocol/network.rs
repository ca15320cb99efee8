//! Remote-phishing signal (RFC 8628 §5.4): did the device ask from the network the person's
//! browser is on? Device-code phishing works by getting someone to approve a code an
//! attacker started elsewhere, so a mismatch is worth saying out loud on the consent page.

use std::net::IpAddr;

/// Same IPv4 /24, same IPv6 /48, or both private (loopback, RFC 1918, ULA, link-local).
/// One public and one private, or public addresses in different blocks, are different.
pub fn same_network(a: IpAddr, b: IpAddr) -> bool {
    let (a, b) = (canonical(a), canonical(b));
    match (is_private(a), is_private(b)) {
        (true, true) => true,
        (true, false) | (false, true) => false,
        (false, false) => match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
            (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..3] == b.segments()[..3],
            _ => false,
        },
    }
}

/// The key every per-address rule counts under: an IPv4 address as is, an IPv6 address by
/// its /64 (one subscriber's usual allocation, RFC 6177, so a client rotating through its
/// own /64 stays one client). `::ffff:192.0.2.1` counts as `192.0.2.1`.
/// Shapes: `203.0.113.7`, `2001:db8:1:2::/64`.
pub fn address_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// `::ffff:192.0.2.1` is an IPv4 address in disguise.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn same_block_is_same_network() {
        assert!(same_network(ip("203.0.113.7"), ip("203.0.113.200")));
        assert!(same_network(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:ffff::9")
        ));
        assert!(same_network(ip("127.0.0.1"), ip("192.168.1.20")));
        assert!(same_network(ip("::ffff:203.0.113.7"), ip("203.0.113.8")));
    }

    #[test]
    fn address_keys_group_ipv6_by_its_64() {
        assert_eq!(address_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(address_key(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(address_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:1:2:3")),
            address_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn different_blocks_or_public_private_mix_differ() {
        assert!(!same_network(ip("203.0.113.7"), ip("198.51.100.7")));
        assert!(!same_network(ip("2001:db8:1::1"), ip("2001:db8:2::1")));
        assert!(!same_network(ip("192.168.1.20"), ip("203.0.113.7")));
        assert!(!same_network(ip("203.0.113.7"), ip("2001:db8::1")));
        assert!(!same_network(ip("fd00::1"), ip("2001:db8::1")));
    }
}
