//! Helpers for the dataplane's tests, pure and root alike.

use std::net::{IpAddr, Ipv4Addr};

use crate::dataplane::fastpath::Encap;
use crate::model::{TunnelEnd, TunnelKind};

/// A tunnel end with ip_gre's defaults and MTU 1400.
pub(crate) fn end(name: &str, ns: &str, kind: TunnelKind, local: &str, remote: &str) -> TunnelEnd {
    TunnelEnd {
        name: name.into(),
        netns: ns.into(),
        kind,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        ttl: 0,
        tos: 0,
        ikey: None,
        okey: None,
        checksum: false,
        sequence: false,
        pmtudisc: true,
        mtu: 1400,
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// An IPv4 `gre` encapsulation as the fast-path tests use it.
pub(crate) fn encap() -> Encap {
    Encap {
        index: 3,
        local: v4([172, 16, 10, 2]),
        remote: v4([152, 16, 10, 2]),
        key: None,
        ttl: 255,
        tos: 0,
        df: true,
        l2: false,
        out_ifindex: 7,
        id_base: 0,
    }
}
