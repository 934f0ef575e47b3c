//! Validation: every error of a topology at once, each with its location and
//! a hint, before anything is created.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::topology::{Check, Destination, Family, Index, IpNet, Loc, Topology, Tunnel, overhead};

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: error: {}",
            self.loc.line, self.loc.col, self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Renders diagnostics for `file`, one per paragraph, in file order.
pub fn render(file: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&format!("{file}:{d}\n"));
    }
    out.push_str(&format!(
        "{} error{} in {file}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    ));
    out
}

/// Smallest MTU an interface may have: IPv4's 68, IPv6's 1280.
fn min_mtu(v6: bool) -> u32 {
    if v6 { 1280 } else { 68 }
}

/// An interface name the kernel accepts and a shell needs no quotes for:
/// 1-15 bytes of letters, digits, `.`, `_` and `-`; and one a topology may
/// declare: not `lo`, which every namespace has.
pub fn iface_name_problem(name: &str) -> Option<String> {
    if name == "lo" {
        Some("`lo` exists in every namespace already; pick another name".into())
    } else {
        device_name_problem(name)
    }
}

/// The rule of [`iface_name_problem`] for any interface grelab names to the
/// kernel (`sys::rtnl`), `lo` included.
pub(crate) fn device_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an interface name cannot be empty".into())
    } else if name.len() > 15 {
        Some(format!(
            "interface name `{name}` is {} bytes; Linux allows 15",
            name.len()
        ))
    } else if name == "."
        || name == ".."
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Some(format!(
            "`{name}` is not a valid interface name (letters, digits, `.`, `_` and `-` only; not `.` or `..`)"
        ))
    } else if name == "all" || name == "default" {
        Some(format!(
            "`{name}` cannot name an interface: it is reserved (net.ipv4.conf.{name})"
        ))
    } else {
        None
    }
}

/// A name usable for a lab, a prefix or a namespace: letters, digits, `._-`.
pub fn name_problem(what: &str, name: &str, max: usize) -> Option<String> {
    if name.is_empty() && what != "prefix" {
        Some(format!("the {what} cannot be empty"))
    } else if name.len() > max {
        Some(format!("{what} `{name}` is longer than {max} bytes"))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || name.starts_with(['.', '-'])
    {
        Some(format!(
            "{what} `{name}` may only hold letters, digits, `.`, `_` and `-`, and not start with `.` or `-`"
        ))
    } else {
        None
    }
}

/// An address on an interface of a node, for cross-checks.
struct Assigned<'a> {
    node: &'a str,
    iface: &'a str,
    net: IpNet,
    loc: Loc,
}

/// Subnets by owner (a node), so that "which of its subnets hold this
/// address" costs a lookup per prefix length in use, not a scan of the lab.
#[derive(Default)]
struct Subnets<'a> {
    /// (owner, network, prefix length) -> ids.
    nets: HashMap<(&'a str, IpAddr, u8), Vec<usize>>,
    /// The prefix lengths in use, per owner and family, shortest first.
    lens: HashMap<(&'a str, Family), BTreeSet<u8>>,
}

impl<'a> Subnets<'a> {
    fn insert(&mut self, owner: &'a str, net: IpNet, id: usize) {
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
    fn containing(&self, owner: &'a str, ip: IpAddr, max_len: u8) -> impl Iterator<Item = usize> {
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

struct Checker<'a> {
    topo: &'a Topology,
    idx: Index<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, loc: Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic {
            loc,
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn node_exists(&mut self, name: &str, loc: Loc) -> bool {
        if self.idx.node(name).is_some() {
            return true;
        }
        let known: Vec<&str> = self.topo.node_names().collect();
        self.err(
            loc,
            format!("unknown node `{name}`"),
            format!("nodes are: {}", known.join(", ")),
        );
        false
    }
}

/// Checks a parsed topology; returns every problem found, in file order.
pub fn validate(topo: &Topology) -> Result<(), Vec<Diagnostic>> {
    let mut c = Checker {
        topo,
        idx: topo.index(),
        diags: Vec::new(),
    };

    if let Some(p) = name_problem("lab name", &topo.name.value, 32) {
        c.err(
            Loc::of(&topo.name),
            p,
            "use something like `basic` or `ci-42`",
        );
    }
    // Capped: a too-long prefix is its own error, not one per node name.
    let prefix_len = topo.prefix.as_ref().map_or(0, |p| p.value.len().min(32));
    if let Some(prefix) = &topo.prefix
        && let Some(p) = name_problem("prefix", &prefix.value, 32)
    {
        c.err(
            Loc::of(prefix),
            p,
            "a prefix like `ci1-` names namespaces `ci1-host1`, ...",
        );
    }
    if topo.nodes.0.is_empty() {
        c.err(
            Loc::of(&topo.name),
            "the lab has no nodes",
            "add at least one node under `nodes:`",
        );
    }
    for (name, node) in &topo.nodes.0 {
        if let Some(p) = name_problem("node name", &name.value, 200 - prefix_len) {
            c.err(Loc::of(name), p, "node names become namespace names");
        }
        for (key, value) in &node.sysctls.0 {
            let k = &key.value;
            if value.0.is_empty() {
                c.err(
                    Loc::of(key),
                    format!("sysctl `{k}` has no value"),
                    "write it as `key: value`",
                );
            }
            if !k.starts_with("net.")
                || k.contains("..")
                || k.ends_with('.')
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                c.err(
                    Loc::of(key),
                    format!("sysctl `{k}` is not a per-namespace `net.*` key"),
                    "only net.* sysctls belong to a namespace; others would change the host",
                );
            }
        }
    }

    // Interfaces and addresses, from links and tunnels alike.
    let mut ifaces: HashMap<(String, String), Loc> = HashMap::new();
    let mut assigned: Vec<Assigned> = Vec::new();
    let mut add_iface = |c: &mut Checker, node: &str, iface: &str, loc: Loc| {
        if let Some(p) = iface_name_problem(iface) {
            c.err(
                loc,
                p,
                "interface names are at most 15 bytes, like `veth0` or `tun0`",
            );
        }
        if let Some(first) = ifaces.insert((node.to_owned(), iface.to_owned()), loc) {
            c.err(
                loc,
                format!("interface `{iface}` on node `{node}` is defined twice"),
                format!("first defined at line {}", first.line),
            );
        }
    };

    for link in &topo.links {
        let [a, b] = &link.endpoints.value;
        for (i, ep) in [a, b].into_iter().enumerate() {
            let loc = Loc::of(ep);
            if c.node_exists(&ep.value.node, loc) {
                add_iface(&mut c, &ep.value.node, &ep.value.iface, loc);
            }
            let at = link.addresses.as_ref().map_or(loc, Loc::of);
            for net in link.addresses(i) {
                assigned.push(Assigned {
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
            c.err(
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
        // The two ends must share a subnet in each family they both use.
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
                c.err(
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

    let mut tunnel_ids: HashMap<(String, IpAddr, IpAddr, Option<u32>), Loc> = HashMap::new();
    for t in &topo.tunnels {
        check_tunnel(&mut c, t, &mut add_iface, &mut assigned, &mut tunnel_ids);
    }

    // Addresses: unique across the lab; subnets not overlapping within a node.
    let mut subnets = Subnets::default();
    for (i, a) in assigned.iter().enumerate() {
        subnets.insert(a.node, a.net, i);
    }
    // Two subnets overlap when the shorter holds the longer's address: each
    // pair is found from its longer side, and listed under the later one.
    let mut earlier: Vec<Vec<usize>> = vec![Vec::new(); assigned.len()];
    for (i, a) in assigned.iter().enumerate() {
        for j in subnets.containing(a.node, a.net.addr, a.net.prefix) {
            match j.cmp(&i) {
                std::cmp::Ordering::Less => earlier[i].push(j),
                std::cmp::Ordering::Greater => earlier[j].push(i),
                std::cmp::Ordering::Equal => {}
            }
        }
    }
    let own: HashSet<(&str, IpAddr)> = assigned.iter().map(|a| (a.node, a.net.addr)).collect();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (i, a) in assigned.iter().enumerate() {
        if let Some(&j) = seen.get(&a.net.addr) {
            let first = &assigned[j];
            c.err(
                a.loc,
                format!("address {} is used twice", a.net.addr),
                format!(
                    "also on {}:{} (line {})",
                    first.node, first.iface, first.loc.line
                ),
            );
            continue;
        }
        seen.insert(a.net.addr, i);
        let mut before = std::mem::take(&mut earlier[i]);
        before.sort_unstable();
        before.dedup();
        for b in before.into_iter().map(|j| &assigned[j]) {
            if b.iface != a.iface {
                c.err(
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

    // Routes: the gateway must be on a connected subnet of the node.
    for (name, node) in &topo.nodes.0 {
        let mut dests = HashSet::new();
        for r in &node.routes {
            let via = r.via.value;
            if r.to.value.family() != Family::of(&via) {
                c.err(
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
                c.err(
                    Loc::of(&r.to),
                    format!("route destination {net} has host bits set"),
                    format!("write the network: {}/{}", net.network(), net.prefix),
                );
            }
            if !dests.insert(r.to.value) {
                c.err(
                    Loc::of(&r.to),
                    format!("route to {} is given twice", r.to.value),
                    "",
                );
            }
            let connected = subnets
                .containing(&name.value, via, u8::MAX)
                .next()
                .is_some();
            if !connected {
                c.err(
                    Loc::of(&r.via),
                    format!(
                        "gateway {via} of node `{}` is on none of its connected subnets",
                        name.value
                    ),
                    "the gateway must lie in a subnet of one of the node's own addresses",
                );
            } else if own.contains(&(name.value.as_str(), via)) {
                c.err(
                    Loc::of(&r.via),
                    format!("gateway {via} is the node's own address"),
                    "",
                );
            }
        }
    }

    // Tunnel underlays: each end must reach the other's `local`, through a
    // connected subnet or a route (a default route is a /0).
    let mut routes = Subnets::default();
    for (name, node) in &topo.nodes.0 {
        // A repeated name means its first node, the one a lookup finds.
        if !c
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
            if c.idx.node(node).is_none() {
                continue;
            }
            let dst = to.local.value;
            let reachable = subnets.containing(node, dst, u8::MAX).next().is_some()
                || routes.containing(node, dst, u8::MAX).next().is_some();
            if !reachable {
                c.err(
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

    let mut tunnels_by_name: HashMap<&str, &Tunnel> = HashMap::new();
    for t in &topo.tunnels {
        tunnels_by_name.entry(&t.name.value).or_insert(t);
    }
    for check in &topo.checks {
        let loc = Loc::of(check);
        let timeout = |c: &mut Checker, t: f64| {
            if !(t > 0.0 && t <= 600.0) {
                c.err(
                    loc,
                    format!("check timeout {t} is out of range"),
                    "use seconds, 0 < timeout <= 600",
                );
            }
        };
        match &check.value {
            Check::Ping(p) => {
                timeout(&mut c, p.timeout);
                if c.node_exists(&p.from, loc) && !seen.contains_key(&p.to) {
                    c.err(
                        loc,
                        format!("ping check target {} is no address in this lab", p.to),
                        "checks may only send traffic to the lab's own addresses",
                    );
                }
                if p.count == 0 {
                    c.err(loc, "ping check with count 0", "use count: 1 or more");
                } else if p.count > u32::from(u16::MAX) {
                    // Echo sequence numbers are 16 bits.
                    c.err(
                        loc,
                        format!("ping check count {} is above 65535", p.count),
                        "use count: 1 to 65535",
                    );
                }
            }
            Check::Mtu(t) | Check::Encap(t) => {
                timeout(&mut c, t.timeout);
                match tunnels_by_name.get(t.tunnel.as_str()) {
                    None => c.err(
                        loc,
                        format!("check names unknown tunnel `{}`", t.tunnel),
                        format!(
                            "tunnels are: {}",
                            topo.tunnels
                                .iter()
                                .map(|x| x.name.value.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                    Some(x) => {
                        if let Some(from) = &t.from
                            && !x.endpoints.value.iter().any(|e| &e.node.value == from)
                        {
                            c.err(
                                loc,
                                format!("`{from}` is not an end of tunnel `{}`", t.tunnel),
                                "",
                            );
                        }
                        if x.endpoints.value.iter().any(|e| e.addresses().is_empty()) {
                            c.err(
                                loc,
                                format!(
                                    "tunnel `{}` needs an address on both ends to be probed",
                                    t.tunnel
                                ),
                                "",
                            );
                        }
                    }
                }
            }
            Check::Route(r) => {
                timeout(&mut c, r.timeout);
                if c.node_exists(&r.from, loc)
                    && !ifaces.contains_key(&(r.from.clone(), r.dev.clone()))
                {
                    c.err(
                        loc,
                        format!("node `{}` has no interface `{}`", r.from, r.dev),
                        "",
                    );
                }
                if !seen.contains_key(&r.to) {
                    c.err(
                        loc,
                        format!("route check target {} is no address in this lab", r.to),
                        "checks may only send traffic to the lab's own addresses",
                    );
                }
            }
            Check::Exec(e) => {
                timeout(&mut c, e.timeout);
                c.node_exists(&e.node, loc);
                if !(0..=255).contains(&e.exit) {
                    c.err(
                        loc,
                        format!(
                            "exec check expects exit {}, which no program can return",
                            e.exit
                        ),
                        "exit codes are 0 to 255",
                    );
                }
                if e.cmd.is_empty() {
                    c.err(
                        loc,
                        "exec check with an empty `cmd`",
                        "give the program and its arguments",
                    );
                }
            }
        }
    }

    if c.diags.is_empty() {
        Ok(())
    } else {
        // One problem seen from both tunnel ends is reported once.
        c.diags
            .sort_by(|a, b| (a.loc, &a.message).cmp(&(b.loc, &b.message)));
        c.diags.dedup();
        Err(c.diags)
    }
}

fn check_tunnel<'a>(
    c: &mut Checker<'a>,
    t: &'a Tunnel,
    add_iface: &mut impl FnMut(&mut Checker<'a>, &str, &str, Loc),
    assigned: &mut Vec<Assigned<'a>>,
    ids: &mut HashMap<(String, IpAddr, IpAddr, Option<u32>), Loc>,
) {
    let kind = t.kind.value;
    let [a, b] = &t.endpoints.value;
    if a.node.value == b.node.value {
        c.err(
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
            c.err(
                Loc::of(ttl),
                "ttl 0 is not allowed",
                "omit `ttl` to inherit the inner packet's TTL",
            );
        } else if !t.pmtudisc() && !kind.is_ipv6() {
            c.err(
                Loc::of(ttl),
                format!(
                    "a fixed ttl ({}) needs path MTU discovery, but pmtudisc is off",
                    ttl.value
                ),
                "the kernel refuses this pair: remove `ttl` or `pmtudisc: false`",
            );
        }
    }
    let opts = [t.options(0), t.options(1)];
    for (i, (me, other)) in [(a, b), (b, a)].into_iter().enumerate() {
        let (mine, theirs) = (opts[i], opts[1 - i]);
        let loc = Loc::of(&me.node);
        if mine.okey != theirs.ikey {
            let show = |k: Option<u32>| k.map_or("no key".to_owned(), |k| format!("key {k}"));
            c.err(
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
        if i == 0 && mine.checksum != theirs.checksum {
            c.err(
                me.checksum
                    .as_ref()
                    .or(other.checksum.as_ref())
                    .map_or(loc, Loc::of),
                format!(
                    "tunnel `{}`: checksums are on at one end only",
                    t.name.value
                ),
                "set `checksum` on the tunnel, or the same on both ends",
            );
        }
        if i == 0 && mine.sequence != theirs.sequence {
            c.err(
                me.sequence
                    .as_ref()
                    .or(other.sequence.as_ref())
                    .map_or(loc, Loc::of),
                format!(
                    "tunnel `{}`: sequence numbers are on at one end only",
                    t.name.value
                ),
                "set `sequence` on the tunnel, or the same on both ends",
            );
        }

        // Both ends on one node is reported above; the second end adds only noise.
        if (i == 1 && a.node.value == b.node.value)
            || !c.node_exists(&me.node.value, Loc::of(&me.node))
        {
            continue;
        }
        add_iface(c, &me.node.value, &t.name.value, Loc::of(&t.name));
        let local = me.local.value;
        let want_v6 = kind.is_ipv6();
        if local.is_ipv6() != want_v6 {
            c.err(
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
        let underlay = c.idx.underlay_mtu(&me.node.value, &local);
        match underlay {
            None => c.err(
                Loc::of(&me.local),
                format!(
                    "local {local} is not an address of node `{}`",
                    me.node.value
                ),
                "`local` must be one of the node's link addresses (the tunnel's underlay)",
            ),
            Some(under) => {
                let has_v6 = me.addresses().iter().any(|n| n.addr.is_ipv6());
                let derived = under.saturating_sub(overhead(kind, &mine));
                let (mtu, loc) = match &t.mtu {
                    Some(m) => (m.value, Loc::of(m)),
                    None => (derived, Loc::of(&me.local)),
                };
                if mtu < min_mtu(has_v6) {
                    c.err(
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
        let at = me.address.as_ref().map_or(Loc::of(&me.node), Loc::of);
        for net in me.addresses() {
            assigned.push(Assigned {
                node: &me.node.value,
                iface: &t.name.value,
                net: *net,
                loc: at,
            });
        }
        let id = (me.node.value.clone(), local, other.local.value, mine.ikey);
        if let Some(first) = ids.insert(id, Loc::of(&t.name)) {
            c.err(
                Loc::of(&t.name),
                format!(
                    "tunnel `{}` has the same local, remote and key as the tunnel at line {}",
                    t.name.value, first.line
                ),
                "tunnels between the same pair of addresses need different keys",
            );
        }
    }
    if let (Some(m), true) = (&t.mtu, t.mtu.as_ref().is_some_and(|m| m.value > 65535)) {
        c.err(
            Loc::of(m),
            format!("tunnel MTU {} is above 65535", m.value),
            "",
        );
    }
}
