//! Routes: one family, a network destination, each once, through a gateway
//! on a connected subnet of the node.

use std::collections::HashSet;

use super::Checker;
use crate::model::Family;
use crate::topology::{Destination, Loc, Node, Spanned};

impl<'a> Checker<'a> {
    /// Routes: the gateway must be on a connected subnet of the node.
    pub(super) fn routes(&mut self) {
        let topo = self.topo;
        for (name, node) in &topo.nodes.0 {
            self.node_routes(name, node);
        }
    }

    fn node_routes(&mut self, name: &'a Spanned<String>, node: &Node) {
        let mut dests = HashSet::new();
        for r in &node.routes {
            let via = r.via.value;
            if r.to.value.family() != Family::of(&via) {
                self.err(
                    Loc::of(&r.via),
                    format!(
                        "route to {} goes via {via}, an address of the other family",
                        r.to.value
                    ),
                    "use `default` for IPv4 and `default6` for IPv6",
                );
                continue;
            }
            if let Destination::Net(net) = r.to.value
                && net.network() != net.addr
            {
                self.err(
                    Loc::of(&r.to),
                    format!("route destination {net} has host bits set"),
                    format!("write the network: {}/{}", net.network(), net.prefix),
                );
            }
            if !dests.insert(r.to.value) {
                self.err(
                    Loc::of(&r.to),
                    format!("route to {} is given twice", r.to.value),
                    "",
                );
            }
            let connected = self
                .subnets
                .containing(&name.value, via, u8::MAX)
                .next()
                .is_some();
            if !connected {
                self.err(
                    Loc::of(&r.via),
                    format!(
                        "gateway {via} of node `{}` is on none of its connected subnets",
                        name.value
                    ),
                    "the gateway must lie in a subnet of one of the node's own addresses",
                );
            } else if self.own.contains(&(name.value.as_str(), via)) {
                self.err(
                    Loc::of(&r.via),
                    format!("gateway {via} is the node's own address"),
                    "",
                );
            }
        }
    }
}
