//! Addresses: unique across the lab, and subnets not overlapping within a node.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::Checker;
use crate::model::{Family, IpNet};
use crate::topology::Loc;

/// An address on an interface of a node, for cross-checks.
pub(super) struct Assigned<'a> {
    pub(super) node: &'a str,
    pub(super) iface: &'a str,
    pub(super) net: IpNet,
    pub(super) loc: Loc,
}

/// Subnets by owner (a node), so that "which of its subnets hold this
/// address" costs a lookup per prefix length in use, not a scan of the lab.
#[derive(Default)]
pub(super) struct Subnets<'a> {
    /// (owner, network, prefix length) -> ids.
    nets: HashMap<(&'a str, IpAddr, u8), Vec<usize>>,
    /// The prefix lengths in use, per owner and family, shortest first.
    lens: HashMap<(&'a str, Family), BTreeSet<u8>>,
}

impl<'a> Subnets<'a> {
    pub(super) fn insert(&mut self, owner: &'a str, net: IpNet, id: usize) {
        self.nets
            .entry((owner, net.network(), net.prefix))
            .or_default()
            .push(id);
        self.lens
            .entry((owner, Family::of(&net.addr)))
            .or_default()
            .insert(net.prefix);
    }

    /// Ids of `owner`'s subnets that contain `ip`, of prefix length `max_len` or less.
    pub(super) fn containing(
        &self,
        owner: &'a str,
        ip: IpAddr,
        max_len: u8,
    ) -> impl Iterator<Item = usize> {
        self.lens
            .get(&(owner, Family::of(&ip)))
            .into_iter()
            .flatten()
            .take_while(move |&&len| len <= max_len)
            .flat_map(move |&len| {
                let net = IpNet {
                    addr: ip,
                    prefix: len,
                }
                .network();
                self.nets
                    .get(&(owner, net, len))
                    .into_iter()
                    .flatten()
                    .copied()
            })
    }
}

impl Checker<'_> {
    /// Addresses: unique across the lab; subnets not overlapping within a node.
    pub(super) fn addresses(&mut self) {
        let assigned = std::mem::take(&mut self.assigned);
        for (i, a) in assigned.iter().enumerate() {
            self.subnets.insert(a.node, a.net, i);
        }
        // Two subnets overlap when the shorter holds the longer's address: each
        // pair is found from its longer side, and listed under the later one.
        let mut earlier: Vec<Vec<usize>> = vec![Vec::new(); assigned.len()];
        for (i, a) in assigned.iter().enumerate() {
            for j in self.subnets.containing(a.node, a.net.addr, a.net.prefix) {
                match j.cmp(&i) {
                    std::cmp::Ordering::Less => earlier[i].push(j),
                    std::cmp::Ordering::Greater => earlier[j].push(i),
                    std::cmp::Ordering::Equal => {}
                }
            }
        }
        self.own = assigned.iter().map(|a| (a.node, a.net.addr)).collect();
        for (i, a) in assigned.iter().enumerate() {
            if let Some(&j) = self.seen.get(&a.net.addr) {
                let first = &assigned[j];
                self.err(
                    a.loc,
                    format!("address {} is used twice", a.net.addr),
                    format!(
                        "also on {}:{} (line {})",
                        first.node, first.iface, first.loc.line
                    ),
                );
                continue;
            }
            self.seen.insert(a.net.addr, i);
            let mut before = std::mem::take(&mut earlier[i]);
            before.sort_unstable();
            before.dedup();
            for b in before.into_iter().map(|j| &assigned[j]) {
                if b.iface != a.iface {
                    self.err(
                        a.loc,
                        format!(
                            "{} on {}:{} overlaps {} on {}:{}",
                            a.net, a.node, a.iface, b.net, b.node, b.iface
                        ),
                        "two interfaces of one node need separate subnets",
                    );
                }
            }
        }
        self.assigned = assigned;
    }
}
