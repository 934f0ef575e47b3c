//! What a tunnel is: its kind, the GRE options of one end, and one end fully resolved.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The four tunnel types grelab builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    Gre,
    Gretap,
    Ip6gre,
    Ip6gretap,
}

impl TunnelKind {
    /// Whether it carries Ethernet frames (a TAP-like device) rather than IP.
    pub fn is_l2(self) -> bool {
        matches!(self, Self::Gretap | Self::Ip6gretap)
    }

    /// Whether the outer (underlay) header is IPv6.
    pub fn is_ipv6(self) -> bool {
        matches!(self, Self::Ip6gre | Self::Ip6gretap)
    }

    /// The name iproute2 and the kernel use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gre => "gre",
            Self::Gretap => "gretap",
            Self::Ip6gre => "ip6gre",
            Self::Ip6gretap => "ip6gretap",
        }
    }
}

/// A tunnel end's GRE options after tunnel-wide defaults and per-end overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOptions {
    pub ikey: Option<u32>,
    pub okey: Option<u32>,
    pub checksum: bool,
    pub sequence: bool,
}

/// One end of a tunnel, fully resolved: what the kernel or the dataplane builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEnd {
    /// Device name inside `netns`.
    pub name: String,
    /// Namespace name (as under /run/netns).
    pub netns: String,
    pub kind: TunnelKind,
    /// Underlay address of this end.
    pub local: IpAddr,
    /// Underlay address of the other end.
    pub remote: IpAddr,
    /// Outer TTL / hop limit; 0 inherits the inner packet's.
    pub ttl: u8,
    /// Outer TOS / traffic class.
    pub tos: u8,
    /// Key expected on received packets.
    pub ikey: Option<u32>,
    /// Key put on sent packets.
    pub okey: Option<u32>,
    /// GRE checksums, both directions.
    pub checksum: bool,
    /// GRE sequence numbers, both directions.
    pub sequence: bool,
    /// Path MTU discovery: outer DF set.
    pub pmtudisc: bool,
    /// Device MTU.
    pub mtu: u32,
}
