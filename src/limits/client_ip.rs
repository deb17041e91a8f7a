//! Who the client is: the peer address, or what trusted proxies say in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is believed only when the peer is in `DIALTONE_TRUSTED_PROXIES`, and then
//! only as far as the chain of trusted proxies goes: reading the header from the right, the first
//! address that is not a trusted proxy is the client (anything left of it could be forged by that
//! client). With no trusted proxies (the default) the peer address is the client.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The client address of a request from `peer` carrying these `X-Forwarded-For` values.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    // Several headers are one list in order (RFC 7239 §7.1 practice for XFF too).
    let hops: Vec<&str> = forwarded_for
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: trust nothing beyond the last proxy we know.
            return client;
        };
        client = canonical(ip);
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4-mapped IPv6 addresses are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The bucket an address counts against: an IPv6 client by its /64, since one subscriber usually
/// holds a whole /64 and could otherwise mint fresh buckets at will.
pub fn bucket_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let got = resolve(ip("203.0.113.9"), ["1.1.1.1"].into_iter(), &[]);
        assert_eq!(got, ip("203.0.113.9"));
        let got = resolve(
            ip("203.0.113.9"),
            ["1.1.1.1"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_chains_are_read_from_the_right() {
        let trusted = nets(&["10.0.0.0/8"]);
        // A client-forged leftmost entry is ignored: the first untrusted hop from the right wins.
        let got = resolve(
            ip("10.0.0.1"),
            ["6.6.6.6, 198.51.100.7", "10.0.0.2"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let got = resolve(ip("10.0.0.1"), ["[2001:db8::5]:443"].into_iter(), &trusted);
        assert_eq!(got, ip("2001:db8::5"));
        // No header, or garbage: the proxy itself.
        assert_eq!(
            resolve(ip("10.0.0.1"), std::iter::empty(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), ["unknown"].into_iter(), &trusted),
            ip("10.0.0.1")
        );
        // Mapped addresses match IPv4 ranges.
        let got = resolve(ip("::ffff:10.0.0.1"), ["192.0.2.1"].into_iter(), &trusted);
        assert_eq!(got, ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(bucket_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(bucket_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
