//! Tunnels: two different nodes, options both ends agree on, an underlay
//! address of the right family on each, an MTU in range, one identity each,
//! and a way from each end to the other.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::addresses::{Assigned, Subnets};
use super::{Checker, min_mtu};
use crate::model::{EndOptions, Family, IpNet, overhead};
use crate::topology::{Destination, Loc, Tunnel, TunnelEndpoint};

impl<'a> Checker<'a> {
    /// Every tunnel, both ends.
    pub(super) fn tunnels(&mut self) {
        let topo = self.topo;
        for t in &topo.tunnels {
            self.tunnel(t);
        }
    }

    fn tunnel(&mut self, t: &'a Tunnel) {
        let [a, b] = &t.endpoints.value;
        self.tunnel_wide(t);
        let opts = [t.options(0), t.options(1)];
        for (i, (me, other)) in [(a, b), (b, a)].into_iter().enumerate() {
            let (mine, theirs) = (opts[i], opts[1 - i]);
            self.agreement(t, i, (me, other), (mine, theirs));
            // Both ends on one node is reported above; the second end adds only noise.
            if (i == 1 && a.node.value == b.node.value)
                || !self.node_exists(&me.node.value, Loc::of(&me.node))
            {
                continue;
            }
            self.tunnel_end(t, me, other, &mine);
        }
        if let (Some(m), true) = (&t.mtu, t.mtu.as_ref().is_some_and(|m| m.value > 65535)) {
            self.err(
                Loc::of(m),
                format!("tunnel MTU {} is above 65535", m.value),
                "",
            );
        }
    }

    /// What holds for the tunnel as a whole: two nodes, and a valid ttl.
    fn tunnel_wide(&mut self, t: &Tunnel) {
        let [a, b] = &t.endpoints.value;
        if a.node.value == b.node.value {
            self.err(
                Loc::of(&b.node),
                format!(
                    "both ends of tunnel `{}` are on node `{}`",
                    t.name.value, a.node.value
                ),
                "a tunnel joins two different nodes",
            );
        }
        if let Some(ttl) = &t.ttl {
            if ttl.value == 0 {
                self.err(
                    Loc::of(ttl),
                    "ttl 0 is not allowed",
                    "omit `ttl` to inherit the inner packet's TTL",
                );
            } else if !t.pmtudisc() && !t.kind.value.is_ipv6() {
                self.err(
                    Loc::of(ttl),
                    format!(
                        "a fixed ttl ({}) needs path MTU discovery, but pmtudisc is off",
                        ttl.value
                    ),
                    "the kernel refuses this pair: remove `ttl` or `pmtudisc: false`",
                );
            }
        }
    }

    /// End `i` (`me`, options `mine`) agrees with the other on keys,
    /// checksums and sequence numbers (the last two reported once, at end 0).
    fn agreement(
        &mut self,
        t: &Tunnel,
        i: usize,
        (me, other): (&TunnelEndpoint, &TunnelEndpoint),
        (mine, theirs): (EndOptions, EndOptions),
    ) {
        let loc = Loc::of(&me.node);
        if mine.okey != theirs.ikey {
            let show = |k: Option<u32>| k.map_or("no key".to_owned(), |k| format!("key {k}"));
            self.err(
                me.okey.as_ref().map_or(loc, Loc::of),
                format!(
                    "tunnel `{}`: {} sends {} but {} expects {}",
                    t.name.value,
                    me.node.value,
                    show(mine.okey),
                    other.node.value,
                    show(theirs.ikey)
                ),
                "the okey of one end must equal the ikey of the other (or set `key` on the tunnel)",
            );
        }
        if i != 0 {
            return;
        }
        let flags = [
            (
                "checksums",
                "checksum",
                mine.checksum != theirs.checksum,
                (&me.checksum, &other.checksum),
            ),
            (
                "sequence numbers",
                "sequence",
                mine.sequence != theirs.sequence,
                (&me.sequence, &other.sequence),
            ),
        ];
        for (what, key, differ, (at_me, at_other)) in flags {
            if differ {
                self.err(
                    at_me.as_ref().or(at_other.as_ref()).map_or(loc, Loc::of),
                    format!("tunnel `{}`: {what} are on at one end only", t.name.value),
                    format!("set `{key}` on the tunnel, or the same on both ends"),
                );
            }
        }
    }

    /// One end on an existing node: its device, underlay, MTU, addresses
    /// and identity.
    fn tunnel_end(
        &mut self,
        t: &'a Tunnel,
        me: &'a TunnelEndpoint,
        other: &TunnelEndpoint,
        mine: &EndOptions,
    ) {
        let kind = t.kind.value;
        self.add_iface(&me.node.value, &t.name.value, Loc::of(&t.name));
        let local = me.local.value;
        let want_v6 = kind.is_ipv6();
        if local.is_ipv6() != want_v6 {
            self.err(
                Loc::of(&me.local),
                format!(
                    "tunnel type {} needs an IPv{} underlay, but local {local} is IPv{}",
                    kind.as_str(),
                    if want_v6 { 6 } else { 4 },
                    if local.is_ipv6() { 6 } else { 4 }
                ),
                if want_v6 {
                    "use an IPv6 local address, or type gre/gretap"
                } else {
                    "use an IPv4 local address, or type ip6gre/ip6gretap"
                },
            );
        }
        self.tunnel_mtu(t, me, mine);
        let at = me.address.as_ref().map_or(Loc::of(&me.node), Loc::of);
        for net in me.addresses() {
            self.assigned.push(Assigned {
                node: &me.node.value,
                iface: &t.name.value,
                net: *net,
                loc: at,
            });
        }
        let id = (me.node.value.clone(), local, other.local.value, mine.ikey);
        if let Some(first) = self.tunnel_ids.insert(id, Loc::of(&t.name)) {
            self.err(
                Loc::of(&t.name),
                format!(
                    "tunnel `{}` has the same local, remote and key as the tunnel at line {}",
                    t.name.value, first.line
                ),
                "tunnels between the same pair of addresses need different keys",
            );
        }
    }

    /// `local` is an address of the node, and the end's MTU (given, or the
    /// underlay's less the overhead) is at least the minimum.
    fn tunnel_mtu(&mut self, t: &Tunnel, me: &TunnelEndpoint, mine: &EndOptions) {
        let local = me.local.value;
        match self.idx.underlay_mtu(&me.node.value, &local) {
            None => self.err(
                Loc::of(&me.local),
                format!(
                    "local {local} is not an address of node `{}`",
                    me.node.value
                ),
                "`local` must be one of the node's link (veth) addresses, the tunnel's underlay; a bridge's or a tunnel's will not do",
            ),
            Some(under) => {
                let has_v6 = me.addresses().iter().any(|n| n.addr.is_ipv6());
                let derived = under.saturating_sub(overhead(t.kind.value, mine));
                let (mtu, loc) = match &t.mtu {
                    Some(m) => (m.value, Loc::of(m)),
                    None => (derived, Loc::of(&me.local)),
                };
                if mtu < min_mtu(has_v6) {
                    self.err(
                        loc,
                        format!(
                            "tunnel `{}` MTU {mtu} on `{}` is below the IPv{} minimum {}",
                            t.name.value,
                            me.node.value,
                            if has_v6 { 6 } else { 4 },
                            min_mtu(has_v6)
                        ),
                        "raise the underlay link's `mtu`, or the tunnel's",
                    );
                }
            }
        }
    }

    /// Tunnel underlays: each end must reach the other's `local`, through a
    /// connected subnet or a route (a default route is a /0).
    pub(super) fn underlays(&mut self) {
        let topo = self.topo;
        let mut routes = Subnets::default();
        for (name, node) in &topo.nodes.0 {
            // A repeated name means its first node, the one a lookup finds.
            if !self
                .idx
                .node(&name.value)
                .is_some_and(|n| std::ptr::eq(n, node))
            {
                continue;
            }
            for r in &node.routes {
                let net = match r.to.value {
                    Destination::Default(Family::V4) => IpNet {
                        addr: Ipv4Addr::UNSPECIFIED.into(),
                        prefix: 0,
                    },
                    Destination::Default(Family::V6) => IpNet {
                        addr: Ipv6Addr::UNSPECIFIED.into(),
                        prefix: 0,
                    },
                    Destination::Net(net) => net,
                };
                routes.insert(&name.value, net, 0);
            }
        }
        for t in &topo.tunnels {
            let [a, b] = &t.endpoints.value;
            for (from, to) in [(a, b), (b, a)] {
                let node = &from.node.value;
                if self.idx.node(node).is_none() {
                    continue;
                }
                let dst = to.local.value;
                let reachable = self.subnets.containing(node, dst, u8::MAX).next().is_some()
                    || routes.containing(node, dst, u8::MAX).next().is_some();
                if !reachable {
                    self.err(
                        Loc::of(&to.local),
                        format!(
                            "node `{node}` has no route to {dst}, the far end of tunnel `{}`",
                            t.name.value
                        ),
                        format!(
                            "add a route on `{node}` (for example `{{to: default, via: GATEWAY}}`)"
                        ),
                    );
                }
            }
        }
    }
}
