//! Who is calling: the client address behind an optional trusted proxy, and
//! the optional allow-list of the processor's networks (docs/protocol.md §8).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// How the intake finds the caller's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// A header set by a proxy we trust (for example `x-forwarded-for`).
    /// Without it, the TCP peer address is the caller.
    pub forwarded_header: Option<String>,
    /// The proxies whose forwarded header is believed (`trusted-proxies`):
    /// from any other peer the header is ignored and the peer is the
    /// caller, so a client cannot name an address of the allow-list by
    /// sending the header itself.
    pub trusted_proxies: Vec<IpNet>,
    /// Networks allowed to post; empty allows everyone.
    pub allow: Vec<IpNet>,
}

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network (use CIDR notation such as 91.220.121.0/25) or an address")]
pub struct BadNetwork(pub String);

/// Parses a comma-separated allow-list: CIDR networks or single addresses.
pub fn parse_allow_list(text: &str) -> Result<Vec<IpNet>, BadNetwork> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| BadNetwork(item.to_owned()))
        })
        .collect()
}

impl SourcePolicy {
    /// The caller's address. With a trusted forwarding header, the nearest
    /// hop is the caller: the right-most entry of the header's *last* line,
    /// the one our own proxy appended. Everything before it (entries to its
    /// left, earlier lines of the same header) is whatever the client
    /// claimed, so it is not trusted; a client that sends the header twice
    /// cannot get its own line read instead of the proxy's. The header is
    /// read only when the TCP peer is one of the trusted proxies; a header
    /// from anyone else, missing, or whose nearest entry is not an address
    /// leaves the TCP peer as the caller.
    pub fn client_addr(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let from_header = self
            .forwarded_header
            .as_deref()
            .filter(|_| in_networks(&self.trusted_proxies, peer.ip()))
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|line| line.to_str().ok())
            .and_then(|line| {
                line.rsplit(',')
                    .map(str::trim)
                    .find(|entry| !entry.is_empty())
                    .and_then(|entry| {
                        entry
                            .parse::<IpAddr>()
                            .ok()
                            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
                    })
            });
        from_header.unwrap_or_else(|| peer.ip())
    }

    /// Whether `addr` may post notifications.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.allow.is_empty() || in_networks(&self.allow, addr)
    }
}

/// Whether `addr` (an IPv4-mapped IPv6 address read as IPv4) is in one of
/// `networks`.
fn in_networks(networks: &[IpNet], addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    networks.iter().any(|net| net.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Headers with one line per `(name, value)`, in order.
    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_a_trusted_header_the_peer_is_the_caller() {
        let policy = SourcePolicy::default();
        let sent = headers(&[("x-forwarded-for", "91.220.121.5")]);
        assert_eq!(
            policy.client_addr(peer("10.1.2.3:5555"), &sent),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn with_a_trusted_header_the_nearest_hop_is_the_caller() {
        let policy = SourcePolicy {
            forwarded_header: Some("x-forwarded-for".into()),
            trusted_proxies: parse_allow_list("10.0.0.0/8").unwrap(),
            allow: Vec::new(),
        };
        let proxy = peer("10.0.0.1:1");
        for (lines, caller) in [
            (
                &[("x-forwarded-for", "1.1.1.1, 91.220.121.5")][..],
                "91.220.121.5",
            ),
            // The client sends its own lines first; the proxy's comes last.
            (
                &[
                    ("x-forwarded-for", "91.220.121.5"),
                    ("x-forwarded-for", "8.8.8.8, 8.8.4.4"),
                ],
                "8.8.4.4",
            ),
            (
                &[
                    ("x-forwarded-for", "91.220.121.5, 91.220.121.6"),
                    ("x-real-ip", "91.220.121.7"),
                    ("x-forwarded-for", "203.0.113.9:4711"),
                ],
                "203.0.113.9",
            ),
            (&[("x-forwarded-for", "[2001:db8::1]:443")], "2001:db8::1"),
            // Nothing usable: the TCP peer.
            (&[("x-forwarded-for", "garbage")], "10.0.0.1"),
            (
                &[
                    ("x-forwarded-for", "91.220.121.5"),
                    ("x-forwarded-for", "unknown"),
                ],
                "10.0.0.1",
            ),
            (&[("x-real-ip", "91.220.121.5")], "10.0.0.1"),
            (&[], "10.0.0.1"),
        ] {
            assert_eq!(
                policy.client_addr(proxy, &headers(lines)),
                ip(caller),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn the_allow_list_takes_networks_and_addresses() {
        let allow = parse_allow_list("91.220.121.0/25, 5.35.210.128/25,127.0.0.1").unwrap();
        let policy = SourcePolicy {
            forwarded_header: None,
            trusted_proxies: Vec::new(),
            allow,
        };
        assert!(policy.allows("91.220.121.100".parse().unwrap()));
        assert!(!policy.allows("91.220.121.200".parse().unwrap()));
        assert!(policy.allows("127.0.0.1".parse().unwrap()));
        assert!(policy.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!policy.allows("8.8.8.8".parse().unwrap()));
        assert_eq!(
            parse_allow_list("10.0.0.0/33"),
            Err(BadNetwork("10.0.0.0/33".into()))
        );
        assert!(SourcePolicy::default().allows("8.8.8.8".parse().unwrap()));
    }

    /// Issue 23, item 3: with `--allow-networks 91.220.121.0/25
    /// --trusted-forwarded-header x-forwarded-for`, a POST from 127.0.0.1
    /// claiming `X-Forwarded-For: 91.220.121.5` is the peer's, and refused.
    #[test]
    fn a_forwarded_header_from_outside_the_trusted_proxies_changes_nothing() {
        let policy = SourcePolicy {
            forwarded_header: Some("x-forwarded-for".into()),
            trusted_proxies: parse_allow_list("10.0.0.5").unwrap(),
            allow: parse_allow_list("91.220.121.0/25").unwrap(),
        };
        let claimed = headers(&[("x-forwarded-for", "91.220.121.5")]);
        let caller = policy.client_addr(peer("127.0.0.1:4000"), &claimed);
        assert_eq!(caller, ip("127.0.0.1"));
        assert!(!policy.allows(caller));
        // Through the proxy, the same header is believed.
        let caller = policy.client_addr(peer("10.0.0.5:4000"), &claimed);
        assert_eq!(caller, ip("91.220.121.5"));
        assert!(policy.allows(caller));
        // An IPv4-mapped peer is the same proxy.
        let caller = policy.client_addr(peer("[::ffff:10.0.0.5]:4000"), &claimed);
        assert_eq!(caller, ip("91.220.121.5"));
    }
}
