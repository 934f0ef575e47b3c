//! The Plan: pure data derived from a valid topology, the ordered steps that
//! `up` executes, `down` reverses and `grelab plan` prints as iproute2.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

// The vocabulary lives in `model`; this path keeps working for the layers
// that still import it from here.
pub use crate::model::TunnelKind;
use crate::topology::{Backend, Check, Destination, EndOptions, IpNet, Topology, overhead};

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
}

/// Labs with this many links or more get permanent neighbour entries.
pub const STATIC_NEIGHBORS_FROM: usize = 128;

/// FNV-1a: a stable 64-bit hash with no dependency, for derived names.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `parts`.
    pub fn derive(parts: &[&str]) -> Mac {
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
            | Step::Neighbor { ns, .. } => ns,
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
}

impl Plan {
    /// The namespace of node `node`.
    pub fn ns_of(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.ns.as_str())
    }

    /// The namespaces, in creation order.
    pub fn namespaces(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.nodes.iter().map(|n| n.ns.as_str())
    }

    /// The resolved tunnel ends.
    pub fn tunnels(&self) -> impl Iterator<Item = (&TunnelEnd, Backend)> {
        self.steps.iter().filter_map(|s| match s {
            Step::Tunnel { end, backend } => Some((end, *backend)),
            _ => None,
        })
    }
}

/// Derives the plan from a validated topology. `prefix` overrides the file's.
pub fn build(topo: &Topology, prefix: Option<&str>) -> Plan {
    let prefix = prefix
        .or(topo.prefix.as_ref().map(|p| p.value.as_str()))
        .unwrap_or("");
    let ns = |node: &str| format!("{prefix}{node}");
    let nodes: Vec<NodeNs> = topo
        .node_names()
        .map(|n| NodeNs {
            node: n.to_owned(),
            ns: ns(n),
        })
        .collect();
    let mut steps: Vec<Step> = nodes
        .iter()
        .map(|n| Step::Namespace { ns: n.ns.clone() })
        .collect();

    let lab = format!("{prefix}{}", topo.name.value);
    let mac = |ep: &crate::topology::Endpoint| Mac::derive(&[&lab, &ep.node, &ep.iface]);
    let mut neighbors = Vec::new();
    let static_neighbors = topo.links.len() >= STATIC_NEIGHBORS_FROM;
    for link in &topo.links {
        let [a, b] = &link.endpoints.value;
        let (a, b) = (&a.value, &b.value);
        steps.push(Step::Veth {
            ns: ns(&a.node),
            name: a.iface.clone(),
            peer_ns: ns(&b.node),
            peer: b.iface.clone(),
            mtu: link.mtu(),
            mac: mac(a),
            peer_mac: mac(b),
        });
        if static_neighbors {
            for (me, j, other) in [(a, 1, b), (b, 0, a)] {
                for addr in link.addresses(j) {
                    neighbors.push(Step::Neighbor {
                        ns: ns(&me.node),
                        dev: me.iface.clone(),
                        addr: addr.addr,
                        mac: mac(other),
                    });
                }
            }
        }
    }

    // Per-namespace work: sysctls, tunnels, addresses, links up, routes.
    let mut addresses = Vec::new();
    let mut ups = Vec::new();
    for n in &nodes {
        ups.push(Step::Up {
            ns: n.ns.clone(),
            dev: "lo".into(),
        });
    }
    for (ep, addrs, _) in topo.link_ends() {
        for a in addrs {
            addresses.push(Step::Address {
                ns: ns(&ep.node),
                dev: ep.iface.clone(),
                addr: *a,
            });
        }
        ups.push(Step::Up {
            ns: ns(&ep.node),
            dev: ep.iface.clone(),
        });
    }
    let idx = topo.index();
    for t in &topo.tunnels {
        let [a, b] = &t.endpoints.value;
        for (i, (me, other)) in [(a, b), (b, a)].into_iter().enumerate() {
            let opts = t.options(i);
            let under = idx
                .underlay_mtu(&me.node.value, &me.local.value)
                .unwrap_or(1500);
            let end = TunnelEnd {
                name: t.name.value.clone(),
                netns: ns(&me.node.value),
                kind: t.kind.value,
                local: me.local.value,
                remote: other.local.value,
                ttl: t.ttl.as_ref().map_or(0, |v| v.value),
                tos: t.tos,
                ikey: opts.ikey,
                okey: opts.okey,
                checksum: opts.checksum,
                sequence: opts.sequence,
                pmtudisc: t.pmtudisc(),
                mtu: t
                    .mtu
                    .as_ref()
                    .map_or(under.saturating_sub(overhead(t.kind.value, &opts)), |m| {
                        m.value
                    }),
            };
            for addr in me.addresses() {
                addresses.push(Step::Address {
                    ns: end.netns.clone(),
                    dev: end.name.clone(),
                    addr: *addr,
                });
            }
            ups.push(Step::Up {
                ns: end.netns.clone(),
                dev: end.name.clone(),
            });
            steps.push(Step::Tunnel {
                end,
                backend: me.backend.unwrap_or(t.backend),
            });
        }
    }
    // Sysctls after the tunnels, so per-device keys of tunnels can be set.
    let has_v6 = |addrs: &[IpNet]| addrs.iter().any(|a| a.addr.is_ipv6());
    let v6_nodes: HashSet<&str> = topo
        .link_ends()
        .filter(|(_, addrs, _)| has_v6(addrs))
        .map(|(ep, _, _)| ep.node.as_str())
        .chain(
            topo.tunnels
                .iter()
                .flat_map(|t| &t.endpoints.value)
                .filter(|e| has_v6(e.addresses()))
                .map(|e| e.node.value.as_str()),
        )
        .collect();
    for (name, node) in &topo.nodes.0 {
        let has_v6 = v6_nodes.contains(name.value.as_str());
        let mut sysctl = |key: &str, value: &str| {
            steps.push(Step::Sysctl {
                ns: ns(&name.value),
                key: key.into(),
                value: value.into(),
            })
        };
        if node.forwarding {
            sysctl("net.ipv4.ip_forward", "1");
            if has_v6 {
                sysctl("net.ipv6.conf.all.forwarding", "1");
            }
        }
        for (k, v) in &node.sysctls.0 {
            sysctl(&k.value, &v.0);
        }
    }
    steps.append(&mut addresses);
    steps.append(&mut ups);
    steps.append(&mut neighbors);
    for (name, node) in &topo.nodes.0 {
        for r in &node.routes {
            steps.push(Step::Route {
                ns: ns(&name.value),
                to: r.to.value,
                via: r.via.value,
            });
        }
    }
    Plan {
        lab,
        nodes,
        steps,
        checks: topo.checks.iter().map(|c| c.value.clone()).collect(),
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

    /// How its MTU came about, for people learning the arithmetic.
    pub fn overhead_note(&self) -> String {
        let mut parts = vec![
            if self.kind.is_ipv6() {
                "IPv6 40"
            } else {
                "IPv4 20"
            }
            .to_owned(),
        ];
        let (outer, ethernet) = (
            if self.kind.is_ipv6() { 40 } else { 20 },
            if self.kind.is_l2() { 14 } else { 0 },
        );
        let gre = overhead(self.kind, &self.options()) - outer - ethernet;
        let mut opts = Vec::new();
        if self.checksum {
            opts.push("checksum");
        }
        if self.okey.is_some() {
            opts.push("key");
        }
        if self.sequence {
            opts.push("sequence");
        }
        parts.push(if opts.is_empty() {
            format!("GRE {gre}")
        } else {
            format!("GRE {gre} with {}", opts.join(", "))
        });
        if self.kind.is_l2() {
            parts.push("inner Ethernet 14".into());
        }
        parts.join(" + ")
    }
}

impl Plan {
    /// The plan as a runnable shell script of iproute2 commands, commented
    /// step by step: what `grelab up` does, for people who want to see it.
    pub fn script(&self) -> String {
        let mut out = format!(
            "#!/bin/sh\n# Lab `{}`: the iproute2 commands equivalent to `grelab up`.\n\
             # Run as root on a kernel with GRE (ip_gre). Remove the lab with:\n#   {}\nset -e\n",
            self.lab,
            self.namespaces()
                .map(|n| format!("ip netns del {n}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let mut section = "";
        let mut head = |out: &mut String, title: &'static str| {
            if section != title {
                out.push_str(&format!("\n# {title}\n"));
                section = title;
            }
        };
        for step in &self.steps {
            match step {
                Step::Namespace { ns } => {
                    head(
                        &mut out,
                        "Namespaces: one per node (bind-mounted at /run/netns/NAME).",
                    );
                    out.push_str(&format!("ip netns add {ns}\n"));
                }
                Step::Veth {
                    ns,
                    name,
                    peer_ns,
                    peer,
                    mtu,
                    mac,
                    peer_mac,
                } => {
                    head(
                        &mut out,
                        "Links: veth pairs, the peer created directly in its namespace.",
                    );
                    let mtu = if *mtu == 1500 {
                        String::new()
                    } else {
                        format!(" mtu {mtu}")
                    };
                    out.push_str(&format!(
                        "ip -n {ns} link add {name}{mtu} address {mac} type veth peer name {peer}{mtu} address {peer_mac} netns {peer_ns}\n"
                    ));
                }
                Step::Sysctl { ns, key, value } => {
                    head(
                        &mut out,
                        "Sysctls, inside the namespace (forwarding makes a router).",
                    );
                    out.push_str(&format!(
                        "ip netns exec {ns} sysctl -qw {}\n",
                        sh_word(&format!("{key}={value}"))
                    ));
                }
                Step::Tunnel { end, .. } => {
                    head(
                        &mut out,
                        "Tunnels: each end points at the other end's underlay address.",
                    );
                    out.push_str(&format!(
                        "# {} on {}: MTU {} = underlay - ({})\n{}\nip -n {} link set {} addrgenmode none\n",
                        end.name,
                        end.netns,
                        end.mtu,
                        end.overhead_note(),
                        tunnel_command(end),
                        end.netns,
                        end.name
                    ));
                }
                Step::Address { ns, dev, addr } => {
                    head(&mut out, "Addresses.");
                    let nodad = if addr.addr.is_ipv6() { " nodad" } else { "" };
                    out.push_str(&format!("ip -n {ns} addr add {addr} dev {dev}{nodad}\n"));
                }
                Step::Up { ns, dev } => {
                    head(&mut out, "Interfaces up.");
                    out.push_str(&format!("ip -n {ns} link set {dev} up\n"));
                }
                Step::Neighbor { ns, dev, addr, mac } => {
                    head(
                        &mut out,
                        "Permanent neighbours: a lab this large would overflow the host-wide neighbour table.",
                    );
                    out.push_str(&format!(
                        "ip -n {ns} neigh replace {addr} lladdr {mac} dev {dev} nud permanent\n"
                    ));
                }
                Step::Route { ns, to, via } => {
                    head(&mut out, "Routes.");
                    let six = if to.family() == crate::topology::Family::V6 {
                        " -6"
                    } else {
                        ""
                    };
                    out.push_str(&format!("ip{six} -n {ns} route add {to} via {via}\n"));
                }
            }
        }
        out
    }
}

/// `s` as one shell word: as is when plain, else single-quoted (a sysctl
/// value may hold spaces, like `ping_group_range: "0 1000"`).
fn sh_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:,+=@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `ip link add` command for a kernel tunnel end.
fn tunnel_command(end: &TunnelEnd) -> String {
    let mut cmd = format!(
        "ip -n {} link add {} mtu {} type {} local {} remote {}",
        end.netns,
        end.name,
        end.mtu,
        end.kind.as_str(),
        end.local,
        end.remote
    );
    let v6 = end.kind.is_ipv6();
    if end.ttl != 0 {
        cmd.push_str(&format!(
            " {} {}",
            if v6 { "hoplimit" } else { "ttl" },
            end.ttl
        ));
    }
    if end.tos != 0 {
        cmd.push_str(&format!(
            " {} 0x{:02x}",
            if v6 { "tclass" } else { "tos" },
            end.tos
        ));
    }
    if let Some(k) = end.ikey {
        cmd.push_str(&format!(" ikey {k}"));
    }
    if let Some(k) = end.okey {
        cmd.push_str(&format!(" okey {k}"));
    }
    if end.checksum {
        cmd.push_str(" csum");
    }
    if end.sequence {
        cmd.push_str(" seq");
    }
    if v6 {
        // No encapsulation-limit option: the overhead stays 40 + GRE, as in
        // grelab's userspace dataplane.
        cmd.push_str(" encaplimit none");
    } else if !end.pmtudisc {
        cmd.push_str(" nopmtudisc");
    }
    cmd
}
