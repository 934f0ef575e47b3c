//! The Plan: pure data derived from a valid topology, the ordered steps that
//! `up` executes, `down` reverses and `grelab plan` prints as iproute2.
//! It owns the steps (here), deriving them (`build`) and the script; it
//! imports `model` and `topology`, is pure (no libc, nix, tokio), and never
//! checks a topology (`validate` has, before) nor touches the system.

mod build;
pub mod diff;
pub mod explain;
pub mod graph;
mod script;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use self::build::build;
// The vocabulary lives in `model`; this path keeps working for the layers
// that still import it from here.
use crate::model::{Backend, EndOptions, Impairment, IpNet, TunnelEnd};

use crate::topology::{Check, Destination};

/// One step of building a lab, in the order `up` performs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A named network namespace for a node.
    Namespace { ns: String },
    /// A veth pair: `name` in `ns`, its peer created directly in `peer_ns`,
    /// with fixed MAC addresses so that captures read the same every run.
    Veth {
        ns: String,
        name: String,
        peer_ns: String,
        peer: String,
        mtu: u32,
        mac: Mac,
        peer_mac: Mac,
    },
    /// A sysctl written inside the namespace.
    Sysctl {
        ns: String,
        key: String,
        value: String,
    },
    /// A tunnel device; the backend is chosen when applying.
    Tunnel { end: TunnelEnd, backend: Backend },
    /// The MULTICAST flag of a tunnel device (either backend's), on or off.
    Multicast { ns: String, dev: String, on: bool },
    /// A kernel bridge, an L2 switch inside the node, with a fixed MAC
    /// address (else it takes its ports', which change as they join).
    Bridge {
        ns: String,
        name: String,
        mtu: Option<u32>,
        mac: Mac,
    },
    /// An interface made a port of a bridge.
    Master {
        ns: String,
        dev: String,
        master: String,
    },
    /// An address on an interface.
    Address {
        ns: String,
        dev: String,
        addr: IpNet,
    },
    /// Bring an interface up.
    Up { ns: String, dev: String },
    /// A static route.
    Route {
        ns: String,
        to: Destination,
        via: IpAddr,
    },
    /// A permanent neighbour entry: large labs skip ARP/ND on their veths, so
    /// the kernel's neighbour table (shared by all namespaces, 1024 entries
    /// by default, settable only in the host's namespace) cannot overflow.
    Neighbor {
        ns: String,
        dev: String,
        addr: IpAddr,
        mac: Mac,
    },
    /// Impairments of an interface's egress (a veth end or a tunnel
    /// device); the mechanism (netem, tbf, tc-BPF, the dataplane) is
    /// chosen when applying, by what the kernel has.
    Impair {
        ns: String,
        dev: String,
        impairment: Impairment,
    },
}

/// Labs with this many links or more get permanent neighbour entries.
pub(crate) const STATIC_NEIGHBORS_FROM: usize = 128;

/// FNV-1a: a stable 64-bit hash with no dependency, for derived names.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `parts`.
    pub(crate) fn derive(parts: &[&str]) -> Mac {
        let bytes = parts.iter().flat_map(|p| p.bytes().chain([0]));
        let b = fnv1a(bytes).to_be_bytes();
        Mac([0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            *b = parts
                .next()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a MAC address")))?;
        }
        Ok(Mac(m))
    }
}

impl Step {
    /// The namespace the step works in.
    pub fn ns(&self) -> &str {
        match self {
            Step::Namespace { ns }
            | Step::Veth { ns, .. }
            | Step::Sysctl { ns, .. }
            | Step::Address { ns, .. }
            | Step::Up { ns, .. }
            | Step::Route { ns, .. }
            | Step::Neighbor { ns, .. }
            | Step::Multicast { ns, .. }
            | Step::Bridge { ns, .. }
            | Step::Master { ns, .. }
            | Step::Impair { ns, .. } => ns,
            Step::Tunnel { end, .. } => &end.netns,
        }
    }
}

/// A node and the namespace that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNs {
    pub node: String,
    pub ns: String,
}

/// Everything `up` will do, as data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The lab's name (prefix included): state lives in /run/grelab/<lab>.
    pub lab: String,
    pub nodes: Vec<NodeNs>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// The nodes that run programs or see files of their own (absent from
    /// the records of labs without any, so their digests stay as they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<Software>,
}

/// What one node runs and the files only it sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    pub node: String,
    pub ns: String,
    /// Absolute path and content, in file order.
    pub files: Vec<(String, String)>,
    pub run: Vec<Program>,
}

/// A program of a node, started in its view once the network is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub optional: bool,
}

impl Plan {
    /// The namespace of node `node`.
    pub fn ns_of(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.ns.as_str())
    }

    /// The nodes' names, for messages: `a, b, c`.
    pub fn node_names(&self) -> String {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.node.as_str()).collect();
        names.join(", ")
    }

    /// The namespaces, in creation order.
    pub fn namespaces(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.nodes.iter().map(|n| n.ns.as_str())
    }

    /// The other end of `end`'s tunnel: the same device name, each the
    /// other's remote.
    pub fn peer(&self, end: &TunnelEnd) -> Option<&TunnelEnd> {
        self.tunnels()
            .map(|(e, _)| e)
            .find(|e| e.name == end.name && e.local == end.remote && e.remote == end.local)
    }

    /// The lab's /etc/hosts: each node's addresses under its name.
    pub fn hosts(&self) -> String {
        // One pass over the steps: a large lab has thousands of each.
        let mut by_ns: std::collections::HashMap<&str, Vec<IpAddr>> = Default::default();
        for s in &self.steps {
            if let Step::Address { ns, addr, .. } = s {
                by_ns.entry(ns).or_default().push(addr.addr);
            }
        }
        let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n");
        for n in &self.nodes {
            for a in by_ns.get(n.ns.as_str()).into_iter().flatten() {
                out.push_str(&format!("{a}\t{}\n", n.node));
            }
        }
        out
    }

    /// The impaired interfaces: (namespace, device, impairment).
    pub fn impairments(&self) -> impl Iterator<Item = (&str, &str, &Impairment)> {
        self.steps.iter().filter_map(|s| match s {
            Step::Impair {
                ns,
                dev,
                impairment,
            } => Some((ns.as_str(), dev.as_str(), impairment)),
            _ => None,
        })
    }

    /// The resolved tunnel ends.
    pub fn tunnels(&self) -> impl Iterator<Item = (&TunnelEnd, Backend)> {
        self.steps.iter().filter_map(|s| match s {
            Step::Tunnel { end, backend } => Some((end, *backend)),
            _ => None,
        })
    }
}

impl TunnelEnd {
    /// Its GRE options.
    pub fn options(&self) -> EndOptions {
        EndOptions {
            ikey: self.ikey,
            okey: self.okey,
            checksum: self.checksum,
            sequence: self.sequence,
        }
    }
}
