//! The counters a dataplane writes to its stats file, and reading them.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Counters of a running dataplane, as written to its stats file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// One entry per tunnel end, in the order of the spec.
    pub tunnels: Vec<TunnelStats>,
    /// GRE packets for no configured tunnel (wrong source or destination).
    pub unmatched: u64,
    /// Packets too short or not GRE version 0.
    pub malformed: u64,
}

/// Counters of one tunnel end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStats {
    pub name: String,
    pub netns: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Right source and destination, but a key no tunnel expects (counted
    /// on the first tunnel between those addresses).
    pub drop_key: u64,
    /// Bad GRE checksum, or checksum presence differing from the config.
    pub drop_checksum: u64,
    /// Sequence number missing or not newer than the last accepted.
    pub drop_sequence: u64,
    /// Payload type not for this device (IP on TAP, Ethernet on TUN).
    pub drop_protocol: u64,
    /// Outer header marked CE over an inner packet that is not
    /// ECN-capable (RFC 6040: dropped, as ip_gre does).
    #[serde(default)]
    pub drop_ecn: u64,
    /// Packets read from the device that could not be sent.
    pub tx_errors: u64,
    /// Decapsulated packets the device refused.
    #[serde(default)]
    pub rx_errors: u64,
    /// TCP super-packets read from the device and cut into segments (TSO).
    #[serde(default)]
    pub tx_gso: u64,
    /// Device writes that joined several received TCP segments (GRO).
    #[serde(default)]
    pub rx_gro: u64,
    /// Whether the in-kernel fast path (`fastpath`) carries the tunnel.
    #[serde(default)]
    pub fast_path: bool,
    /// Why it does not (yet), while it does not.
    #[serde(default)]
    pub fast_path_off: Option<String>,
    /// Packets and inner bytes the fast path carried, TCP super-packets
    /// counting once; not in the counters above.
    #[serde(default)]
    pub fast_tx_packets: u64,
    #[serde(default)]
    pub fast_tx_bytes: u64,
    #[serde(default)]
    pub fast_rx_packets: u64,
    #[serde(default)]
    pub fast_rx_bytes: u64,
}

/// Reads the counters a dataplane wrote to `path`.
pub fn read_stats(path: &Path) -> Result<Stats> {
    let text =
        fs::read(path).with_context(|| format!("reading dataplane stats {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("parsing dataplane stats {}", path.display()))
}

/// Writes `stats` to `path` atomically (temp file, then rename).
pub(super) fn write_stats(path: &Path, stats: &Stats) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let json = serde_json::to_vec_pretty(stats).context("encoding dataplane stats")?;
    fs::write(&tmp, json).with_context(|| format!("writing {}", Path::new(&tmp).display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming the stats file into {}", path.display()))
}
