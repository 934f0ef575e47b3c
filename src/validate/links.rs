//! Links: their ends, their MTU, and the subnet the two ends share.

use super::addresses::Assigned;
use super::{Checker, min_mtu};
use crate::model::Family;
use crate::topology::{Link, Loc};

impl<'a> Checker<'a> {
    /// Every link: its ends' nodes and interfaces, its addresses, its MTU.
    pub(super) fn links(&mut self) {
        let topo = self.topo;
        for link in &topo.links {
            self.link(link);
        }
    }

    fn link(&mut self, link: &'a Link) {
        let [a, b] = &link.endpoints.value;
        for (i, ep) in [a, b].into_iter().enumerate() {
            let loc = Loc::of(ep);
            if self.node_exists(&ep.value.node, loc) {
                self.add_iface(&ep.value.node, &ep.value.iface, loc);
            }
            let at = link.addresses.as_ref().map_or(loc, Loc::of);
            for net in link.addresses(i) {
                self.assigned.push(Assigned {
                    node: &ep.value.node,
                    iface: &ep.value.iface,
                    net: *net,
                    loc: at,
                });
            }
        }
        let has_v6 = (0..2).any(|i| link.addresses(i).iter().any(|n| n.addr.is_ipv6()));
        if let Some(mtu) = &link.mtu
            && (mtu.value < min_mtu(has_v6) || mtu.value > 65535)
        {
            self.err(
                Loc::of(mtu),
                format!("link MTU {} is out of range", mtu.value),
                format!(
                    "use {}..=65535{}",
                    min_mtu(has_v6),
                    if has_v6 {
                        " (the link carries IPv6, whose minimum is 1280)"
                    } else {
                        ""
                    }
                ),
            );
        }
        self.shared_subnets(link);
    }

    /// The two ends must share a subnet in each family they both use.
    fn shared_subnets(&mut self, link: &Link) {
        let [a, b] = &link.endpoints.value;
        for fam in [Family::V4, Family::V6] {
            let side = |i| {
                link.addresses(i)
                    .iter()
                    .filter(move |n| Family::of(&n.addr) == fam)
            };
            if side(0).next().is_some()
                && side(1).next().is_some()
                && !side(0).any(|x| side(1).any(|y| x.overlaps(y)))
            {
                let loc = link
                    .addresses
                    .as_ref()
                    .map_or(Loc::of(&link.endpoints), Loc::of);
                self.err(
                    loc,
                    format!(
                        "the two ends of link {} - {} are on different subnets",
                        a.value, b.value
                    ),
                    "give both ends addresses in one subnet, like 10.0.0.1/24 and 10.0.0.2/24",
                );
            }
        }
    }
}
