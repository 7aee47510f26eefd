//! The SSRF guard: which addresses a delivery may connect to.
//!
//! Name resolution goes through [`GuardedResolver`], so the addresses checked
//! are exactly the ones the connector dials (no rebinding window between a
//! check and the connect). IP-literal URLs skip the resolver and are checked by
//! [`check_literal_host`].

use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The error a refused target produces; found in the error chain to classify
/// the attempt as `blocked_address`.
#[derive(Debug, thiserror::Error)]
#[error("target address {0} is not allowed (private, loopback or otherwise internal)")]
pub struct BlockedAddress(pub IpAddr);

// The address classes are written out here rather than taken from a crate:
// std's stable `Ipv4Addr`/`Ipv6Addr` predicates miss shared (100.64/10),
// benchmarking, reserved and the IPv6 transition forms (6to4, Teredo, NAT64
// local-use, mapped and compatible addresses), and the crates that list
// special-purpose ranges (`ipnet`, `ip_network`) give ranges, not a policy of
// which ones a webhook may reach; this table is that policy, with its tests.
fn v4_blocked(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 88 && ip.octets()[2] == 99) // 6to4 relay anycast (deprecated)
        || a >= 240 // reserved
}

/// Whether `ip` is an internal address a delivery must not reach:
/// loopback, private, link-local, unique-local, multicast, unspecified and
/// the IPv4-mapped/-compatible/NAT64 forms of those.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_blocked(v4);
            }
            let seg = v6.segments();
            // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4 address.
            let embedded = Ipv4Addr::new(
                (seg[6] >> 8) as u8,
                seg[6] as u8,
                (seg[7] >> 8) as u8,
                seg[7] as u8,
            );
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return v4_blocked(embedded);
            }
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4] {
                return v4_blocked(embedded);
            }
            // Tunnels and translators that reach IPv4 (or anything) through
            // a relay the guard cannot see: 6to4 2002::/16, Teredo
            // 2001::/32, NAT64 local-use 64:ff9b:1::/48.
            if seg[0] == 0x2002
                || (seg[0] == 0x2001 && seg[1] == 0)
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
                // IPv4-translated ::ffff:0:0/96 (SIIT), whatever it embeds.
                || (seg[..4] == [0; 4] && seg[4] == 0xffff && seg[5] == 0)
            {
                return true;
            }
            // The rest of IANA's IPv6 special-purpose registry that is not
            // globally reachable: discard-only 100::/64 and the dummy
            // prefix 100:0:0:1::/64, the IETF protocol assignments
            // 2001::/23 (anycast, benchmarking, AMT, AS112, ORCHIDv2,
            // drones: none a webhook endpoint), documentation 3fff::/20,
            // SRv6 SIDs 5f00::/16.
            if (seg[0] == 0x0100 && seg[1] == 0 && seg[2] == 0 && seg[3] <= 1)
                || (seg[0] == 0x2001 && seg[1] < 0x0200)
                || (seg[0] == 0x3fff && seg[1] < 0x1000)
                || seg[0] == 0x5f00
            {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::from(1u128) // ::1
        }
    }
}

/// Checks a URL host that is an IP literal (`127.0.0.1`, `[::ffff:7f00:1]`).
pub fn check_literal_host(host: &str, allow_private: bool) -> Result<(), BlockedAddress> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) if !allow_private && is_blocked(ip) => Err(BlockedAddress(ip)),
        _ => Ok(()),
    }
}

/// A resolver that drops nothing silently: if any resolved address is
/// internal, the whole name is refused (a name that mixes public and internal
/// addresses is a rebinding attempt).
///
/// Names are looked up by hickory's asynchronous resolver, configured from
/// the system (`/etc/resolv.conf`, `/etc/hosts`) and caching answers for
/// their TTL: no blocking thread per lookup, and a busy host is not asked
/// again for every connection.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    /// Skip the guard (`delivery.allow_private_targets`).
    allow_private: bool,
    resolver: TokioResolver,
}

/// The system's DNS configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the system DNS configuration: {0}")]
pub struct ResolverConfigError(String);

impl GuardedResolver {
    /// A resolver from the system configuration.
    pub fn from_system(allow_private: bool) -> Result<Self, ResolverConfigError> {
        let resolver = TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| ResolverConfigError(e.to_string()))?;
        Ok(Self {
            allow_private,
            resolver,
        })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let found = resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| is_blocked(a.ip())) {
                    return Err(Box::new(BlockedAddress(bad.ip())) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolve(allow_private: bool, name: &str) -> Result<Vec<IpAddr>, String> {
        let r = GuardedResolver::from_system(allow_private).map_err(|e| e.to_string())?;
        let name: Name = name.parse().map_err(|e| format!("{e:?}"))?;
        r.resolve(name)
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn names_resolve_through_the_async_resolver_and_internal_ones_are_refused() {
        let found = resolve(true, "localhost")
            .await
            .expect("localhost resolves");
        assert!(
            !found.is_empty() && found.iter().all(IpAddr::is_loopback),
            "{found:?}"
        );
        let refused = resolve(false, "localhost").await.expect_err("refused");
        assert!(refused.contains("is not allowed"), "{refused}");
    }

    #[test]
    fn internal_addresses_are_blocked() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            // 6to4 of 127.0.0.1 and of a public address, Teredo, NAT64 local-use.
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert!(is_blocked(ip), "{s} should be blocked");
        }
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert!(!is_blocked(ip), "{s} should be allowed");
        }
    }

    /// Every range of IANA's IPv6 special-purpose registry that is not
    /// globally reachable (or reaches through a translator or relay the
    /// guard cannot see), and IPv4's missing one.
    #[test]
    fn the_special_purpose_ranges_are_blocked() {
        for s in [
            // IPv4-translated ::ffff:0:0/96 (of loopback and of a public one).
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            // Discard-only 100::/64 and the dummy prefix 100:0:0:1::/64.
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::1",
            // IETF protocol assignments 2001::/23: PCP/TURN anycast,
            // benchmarking, AMT, AS112, ORCHIDv2, drone identifiers.
            "2001:1::1",
            "2001:1::2",
            "2001:2::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
            "2001:1ff:ffff::1",
            // Documentation 3fff::/20, SRv6 SIDs 5f00::/16.
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            // IPv4: the deprecated 6to4 relay anycast 192.88.99.0/24.
            "192.88.99.1",
            "::ffff:192.88.99.1",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert!(is_blocked(ip), "{s} should be blocked");
        }
        for s in [
            "2001:200::1",
            "3fff:1000::1",
            "5f01::1",
            "101::1",
            "192.88.100.1",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert!(!is_blocked(ip), "{s} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked() {
        assert!(check_literal_host("[::ffff:127.0.0.1]", false).is_err());
        assert!(check_literal_host("127.0.0.1", false).is_err());
        assert!(check_literal_host("127.0.0.1", true).is_ok());
        assert!(check_literal_host("example.com", false).is_ok());
    }
}
