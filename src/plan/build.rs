//! Deriving the plan from a validated topology.

use std::collections::HashSet;

use super::{Mac, NodeNs, Plan, Program, STATIC_NEIGHBORS_FROM, Software, Step};
use crate::model::TunnelEnd;
use crate::model::{IpNet, overhead};
use crate::topology::{Endpoint, Index, Topology, Tunnel, TunnelEndpoint};

/// Derives the plan from a validated topology. `prefix` overrides the file's.
pub fn build(topo: &Topology, prefix: Option<&str>) -> Plan {
    let prefix = prefix
        .or(topo.prefix.as_ref().map(|p| p.value.as_str()))
        .unwrap_or("");
    let mut b = Builder {
        topo,
        prefix,
        lab: format!("{prefix}{}", topo.name.value),
        steps: Vec::new(),
        addresses: Vec::new(),
        ups: Vec::new(),
        neighbors: Vec::new(),
    };
    let nodes: Vec<NodeNs> = topo
        .node_names()
        .map(|n| NodeNs {
            node: n.to_owned(),
            ns: b.ns(n),
        })
        .collect();
    b.steps = nodes
        .iter()
        .map(|n| Step::Namespace { ns: n.ns.clone() })
        .collect();
    b.links();
    // Per-namespace work: sysctls, tunnels, addresses, links up, routes.
    for n in &nodes {
        b.ups.push(Step::Up {
            ns: n.ns.clone(),
            dev: "lo".into(),
        });
    }
    b.link_ends();
    b.tunnels();
    b.bridges();
    // Sysctls after tunnels and bridges, so their per-device keys can be set.
    b.sysctls();
    b.finish(nodes)
}

/// The plan's steps as they are derived, in the groups `build` puts in order.
struct Builder<'a> {
    topo: &'a Topology,
    prefix: &'a str,
    lab: String,
    /// Namespaces, veths, tunnels, sysctls.
    steps: Vec<Step>,
    addresses: Vec<Step>,
    ups: Vec<Step>,
    neighbors: Vec<Step>,
}

impl Builder<'_> {
    /// The namespace of node `node`.
    fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    fn mac(&self, ep: &Endpoint) -> Mac {
        Mac::derive(&[&self.lab, &ep.node, &ep.iface])
    }

    /// A veth per link, and permanent neighbours when the lab is large.
    fn links(&mut self) {
        let static_neighbors = self.topo.links.len() >= STATIC_NEIGHBORS_FROM;
        for link in &self.topo.links {
            let [a, b] = &link.endpoints.value;
            let (a, b) = (&a.value, &b.value);
            self.steps.push(Step::Veth {
                ns: self.ns(&a.node),
                name: a.iface.clone(),
                peer_ns: self.ns(&b.node),
                peer: b.iface.clone(),
                mtu: link.mtu(),
                mac: self.mac(a),
                peer_mac: self.mac(b),
            });
            if static_neighbors {
                for (me, j, other) in [(a, 1, b), (b, 0, a)] {
                    for addr in link.addresses(j) {
                        self.neighbors.push(Step::Neighbor {
                            ns: self.ns(&me.node),
                            dev: me.iface.clone(),
                            addr: addr.addr,
                            mac: self.mac(other),
                        });
                    }
                }
            }
        }
    }

    /// The addresses of the links' ends, and the ends up.
    fn link_ends(&mut self) {
        for (ep, addrs, _) in self.topo.link_ends() {
            for a in addrs {
                self.addresses.push(Step::Address {
                    ns: self.ns(&ep.node),
                    dev: ep.iface.clone(),
                    addr: *a,
                });
            }
            self.ups.push(Step::Up {
                ns: self.ns(&ep.node),
                dev: ep.iface.clone(),
            });
        }
    }

    /// Both ends of every tunnel, their addresses, and the devices up.
    fn tunnels(&mut self) {
        let idx = self.topo.index();
        for t in &self.topo.tunnels {
            let [a, b] = &t.endpoints.value;
            for (i, (me, other)) in [(a, b), (b, a)].into_iter().enumerate() {
                let end = self.tunnel_end(&idx, t, i, me, other);
                for addr in me.addresses() {
                    self.addresses.push(Step::Address {
                        ns: end.netns.clone(),
                        dev: end.name.clone(),
                        addr: *addr,
                    });
                }
                self.ups.push(Step::Up {
                    ns: end.netns.clone(),
                    dev: end.name.clone(),
                });
                let (ns, dev) = (end.netns.clone(), end.name.clone());
                self.steps.push(Step::Tunnel {
                    end,
                    backend: me.backend.unwrap_or(t.backend),
                });
                self.steps.push(Step::Multicast {
                    ns,
                    dev,
                    on: t.multicast(),
                });
            }
        }
    }

    /// Every node's bridges, their ports, their addresses, and each up.
    fn bridges(&mut self) {
        for (node, n) in &self.topo.nodes.0 {
            let ns = self.ns(&node.value);
            for (name, bridge) in &n.bridges.0 {
                self.steps.push(Step::Bridge {
                    ns: ns.clone(),
                    name: name.value.clone(),
                    mtu: bridge.mtu.as_ref().map(|m| m.value),
                    mac: Mac::derive(&[&self.lab, &node.value, &name.value]),
                });
                for port in &bridge.ports {
                    self.steps.push(Step::Master {
                        ns: ns.clone(),
                        dev: port.value.clone(),
                        master: name.value.clone(),
                    });
                }
                for a in bridge.addresses() {
                    self.addresses.push(Step::Address {
                        ns: ns.clone(),
                        dev: name.value.clone(),
                        addr: *a,
                    });
                }
                self.ups.push(Step::Up {
                    ns: ns.clone(),
                    dev: name.value.clone(),
                });
            }
        }
    }

    /// End `i` of tunnel `t`, resolved.
    fn tunnel_end(
        &self,
        idx: &Index,
        t: &Tunnel,
        i: usize,
        me: &TunnelEndpoint,
        other: &TunnelEndpoint,
    ) -> TunnelEnd {
        let opts = t.options(i);
        let under = idx
            .underlay_mtu(&me.node.value, &me.local.value)
            .unwrap_or(1500);
        TunnelEnd {
            name: t.name.value.clone(),
            netns: self.ns(&me.node.value),
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
        }
    }

    /// Forwarding (IPv6's too where the node has IPv6) and the file's sysctls.
    fn sysctls(&mut self) {
        let topo = self.topo;
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
            let ns = self.ns(&name.value);
            let mut sysctl = |key: &str, value: &str| {
                self.steps.push(Step::Sysctl {
                    ns: ns.clone(),
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
    }

    /// The nodes with files or programs.
    fn software(&self) -> Vec<Software> {
        let pairs = |o: &crate::topology::Ordered<crate::topology::Scalar>| {
            o.0.iter()
                .map(|(k, v)| (k.value.clone(), v.0.clone()))
                .collect()
        };
        self.topo
            .nodes
            .0
            .iter()
            .filter(|(_, n)| !n.files.0.is_empty() || !n.run.is_empty())
            .map(|(name, n)| Software {
                node: name.value.clone(),
                ns: self.ns(&name.value),
                files: n
                    .files
                    .0
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.clone()))
                    .collect(),
                run: n
                    .run
                    .iter()
                    .map(|w| Program {
                        name: w.name.value.clone(),
                        cmd: w.cmd.value.clone(),
                        env: pairs(&w.env),
                        optional: w.optional,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The steps in order: namespaces, veths, tunnels, bridges, sysctls; addresses,
    /// interfaces up, neighbours; routes last, once their gateways are up.
    fn finish(mut self, nodes: Vec<NodeNs>) -> Plan {
        let mut steps = std::mem::take(&mut self.steps);
        steps.append(&mut self.addresses);
        steps.append(&mut self.ups);
        steps.append(&mut self.neighbors);
        for (name, node) in &self.topo.nodes.0 {
            for r in &node.routes {
                steps.push(Step::Route {
                    ns: self.ns(&name.value),
                    to: r.to.value,
                    via: r.via.value,
                });
            }
        }
        // Last: a userspace tunnel's device exists once the dataplane runs.
        for (node, dev, impairment) in self.topo.impairments() {
            steps.push(Step::Impair {
                ns: self.ns(node),
                dev: dev.to_owned(),
                impairment,
            });
        }
        let software = self.software();
        Plan {
            lab: self.lab,
            nodes,
            steps,
            checks: self.topo.checks.iter().map(|c| c.value.clone()).collect(),
            software,
        }
    }
}
