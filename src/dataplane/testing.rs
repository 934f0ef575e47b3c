//! Helpers for the dataplane's tests, pure and root alike.

use crate::plan::{TunnelEnd, TunnelKind};

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
