//! Bridges in nodes: a valid name, ports that are this node's L2 ends (veth,
//! gretap, ip6gretap), each in one bridge and with no address of its own, an
//! MTU in range; the bridge's addresses join the lab's address checks.

use std::collections::HashMap;

use super::Checker;
use super::addresses::Assigned;
use crate::model::TunnelKind;
use crate::topology::{Bridge, Loc, Spanned};

/// What can be a bridge port: an interface the file makes on a node.
#[derive(Clone, Copy)]
enum End {
    Veth { addressed: bool },
    Tunnel { kind: TunnelKind, addressed: bool },
}

impl<'a> Checker<'a> {
    /// Every node's bridges.
    pub(super) fn bridges(&mut self) {
        let topo = self.topo;
        if topo.nodes.0.iter().all(|(_, n)| n.bridges.0.is_empty()) {
            return;
        }
        let mut ends: HashMap<(&str, &str), End> = HashMap::new();
        for (ep, addrs, _) in topo.link_ends() {
            let end = End::Veth {
                addressed: !addrs.is_empty(),
            };
            ends.entry((&ep.node, &ep.iface)).or_insert(end);
        }
        for t in &topo.tunnels {
            for e in &t.endpoints.value {
                let end = End::Tunnel {
                    kind: t.kind.value,
                    addressed: !e.addresses().is_empty(),
                };
                ends.entry((&e.node.value, &t.name.value)).or_insert(end);
            }
        }
        // (node, port) -> the bridge that took it first.
        let mut taken: HashMap<(&str, &str), &str> = HashMap::new();
        for (node, n) in &topo.nodes.0 {
            for (name, bridge) in &n.bridges.0 {
                self.add_iface(&node.value, &name.value, Loc::of(name));
                for port in &bridge.ports {
                    let at = (node.value.as_str(), port.value.as_str());
                    if self.port(&ends, at, &name.value, port)
                        && let Some(first) = taken.insert(at, &name.value)
                    {
                        let message = if first == name.value {
                            format!("`{}` is listed twice in bridge `{first}`", port.value)
                        } else {
                            format!(
                                "`{}` on node `{}` is a port of bridges `{first}` and `{}`",
                                port.value, node.value, name.value
                            )
                        };
                        self.err(
                            Loc::of(port),
                            message,
                            "an interface can be a port of one bridge only",
                        );
                    }
                }
                self.bridge_own(&node.value, &name.value, bridge);
            }
        }
    }

    /// Port `port` of bridge `bridge` on `node`: true when it is one of the
    /// node's L2 ends without an address.
    fn port(
        &mut self,
        ends: &HashMap<(&str, &str), End>,
        (node, iface): (&str, &str),
        bridge: &str,
        port: &Spanned<String>,
    ) -> bool {
        let loc = Loc::of(port);
        let what = format!("port `{iface}` of bridge `{bridge}` on node `{node}`");
        let (addressed, drop_it) = match ends.get(&(node, iface)) {
            Some(End::Tunnel { kind, .. }) if !kind.is_l2() => {
                self.err(
                    loc,
                    format!(
                        "{what} is a {} tunnel end, which carries IP packets, not Ethernet frames",
                        kind.as_str()
                    ),
                    "bridge an L2 tunnel: make it `type: gretap` (or `ip6gretap`)",
                );
                return false;
            }
            Some(End::Veth { addressed }) => (*addressed, "`[]` in the link's `addresses`"),
            Some(End::Tunnel { addressed, .. }) => (*addressed, "no `address` on the tunnel end"),
            None => {
                self.no_such_port(ends, (node, iface), &what, loc);
                return false;
            }
        };
        if addressed {
            self.err(
                loc,
                format!("{what} has an address of its own"),
                format!(
                    "a bridged port carries no address: put it on `{bridge}` (its `addresses`) \
                     and give `{iface}` none ({drop_it})"
                ),
            );
        }
        true
    }

    /// The error for a port that is no veth or tunnel end of its node.
    fn no_such_port(
        &mut self,
        ends: &HashMap<(&str, &str), End>,
        (node, iface): (&str, &str),
        what: &str,
        loc: Loc,
    ) {
        let (other, name) = match iface.split_once(':') {
            Some((n, i)) if n != node => (Some(n), i),
            Some((_, i)) => {
                self.err(
                    loc,
                    format!("{what} names its node"),
                    format!("ports are interfaces of the bridge's own node: write `{i}`"),
                );
                return;
            }
            None => (None, iface),
        };
        let elsewhere = other.map(str::to_owned).or_else(|| {
            let mut on: Vec<&str> = ends
                .keys()
                .filter(|&&(n, i)| i == name && n != node)
                .map(|&(n, _)| n)
                .collect();
            on.sort_unstable();
            on.first().map(|n| (*n).to_owned())
        });
        match elsewhere {
            Some(other) => self.err(
                loc,
                format!("{what} is an interface of node `{other}`"),
                format!("a bridge joins interfaces of its own node: bridge on `{other}` instead"),
            ),
            None => self.err(
                loc,
                format!("{what} is no veth or tunnel end of `{node}`"),
                "ports are the node's ends of `links` and `tunnels`, by interface name",
            ),
        }
    }

    /// The bridge's MTU, and its addresses for the lab's address checks.
    fn bridge_own(&mut self, node: &'a str, name: &'a str, bridge: &'a Bridge) {
        if let Some(mtu) = &bridge.mtu {
            let min = super::min_mtu(bridge.addresses().iter().any(|a| a.addr.is_ipv6()));
            if mtu.value < min || mtu.value > 65535 {
                self.err(
                    Loc::of(mtu),
                    format!("bridge `{name}` MTU {} is out of range", mtu.value),
                    format!("use {min}..=65535"),
                );
            }
        }
        if let Some(at) = &bridge.addresses {
            for net in at.value.as_slice() {
                self.assigned.push(Assigned {
                    node,
                    iface: name,
                    net: *net,
                    loc: Loc::of(at),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::parse;
    use crate::validate::validate;

    /// The messages of validating `bridges` (a node `a` bridge) against a lab
    /// where `a:e1` and `b:e1` are linked and `b:e2` - `c:e2` too.
    fn errors(ports: &str) -> Vec<String> {
        let text = format!(
            "name: t\nnodes:\n  a:\n    bridges:\n      br0: {{ports: {ports}}}\n  b: {{}}\n  c: {{}}\n\
             links:\n  - endpoints: [\"a:e1\", \"b:e1\"]\n  - endpoints: [\"b:e2\", \"c:e2\"]\n"
        );
        let topo = parse(&text, "t.yaml").unwrap();
        match validate(&topo) {
            Ok(()) => Vec::new(),
            Err(d) => d.into_iter().map(|d| d.message).collect(),
        }
    }

    #[test]
    fn ports_are_named_as_interfaces_of_the_bridges_own_node() {
        assert_eq!(errors("[e1]"), Vec::<String>::new());
        assert_eq!(errors("[]"), Vec::<String>::new());
        assert_eq!(
            errors("[\"a:e1\"]"),
            ["port `a:e1` of bridge `br0` on node `a` names its node"]
        );
        assert_eq!(
            errors("[\"c:e2\"]"),
            ["port `c:e2` of bridge `br0` on node `a` is an interface of node `c`"]
        );
        assert_eq!(
            errors("[e2]"),
            ["port `e2` of bridge `br0` on node `a` is an interface of node `b`"]
        );
        assert_eq!(errors("[e1, e1]"), ["`e1` is listed twice in bridge `br0`"]);
    }
}
