//! What a tunnel is: its kind and the GRE options of one end.

use serde::{Deserialize, Serialize};

/// The four tunnel types grelab builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
