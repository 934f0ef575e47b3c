//! Checks: timeouts, `within` and intervals in range, nodes, tunnels and
//! interfaces that exist, ports and groups that can be used, and traffic
//! only to the lab's own addresses (or a multicast group inside the lab).

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use super::Checker;
use crate::model::Duration;
use crate::topology::{
    Check, ExecCheck, Loc, MulticastCheck, PingCheck, RouteCheck, TcpCheck, Tunnel, TunnelCheck,
};

/// The longest a check may wait, per attempt (`timeout`) or in all (`within`).
const MAX_WAIT: StdDuration = StdDuration::from_secs(600);

impl Checker<'_> {
    /// Every check of the file.
    pub(super) fn checks(&mut self) {
        let topo = self.topo;
        let mut tunnels_by_name: HashMap<&str, &Tunnel> = HashMap::new();
        for t in &topo.tunnels {
            tunnels_by_name.entry(&t.name.value).or_insert(t);
        }
        for check in &topo.checks {
            let loc = Loc::of(check);
            match &check.value {
                Check::Ping(p) => self.ping_check(p, loc),
                Check::Mtu(t) | Check::Encap(t) => {
                    self.tunnel_check(t, tunnels_by_name.get(t.tunnel.as_str()).copied(), loc)
                }
                Check::Route(r) => self.route_check(r, loc),
                Check::Exec(e) => self.exec_check(e, loc),
                Check::Tcp(t) => self.tcp_check(t, loc),
                Check::Multicast(m) => self.multicast_check(m, loc),
            }
            self.wait("timeout", Some(check.value.timeout()), loc);
            self.wait("within", check.value.within(), loc);
        }
    }

    /// A check's `timeout` or `within`: more than 0, at most 600 s.
    fn wait(&mut self, field: &str, d: Option<Duration>, loc: Loc) {
        let Some(d) = d else { return };
        if d.std().is_zero() || d.std() > MAX_WAIT {
            self.err(
                loc,
                format!("check `{field}: {d}` is out of range"),
                format!("use a duration above 0 and at most 600s, like `{field}: 30s`"),
            );
        }
    }

    fn ping_check(&mut self, p: &PingCheck, loc: Loc) {
        let i = p.interval.std();
        if i < StdDuration::from_micros(100) || i > StdDuration::from_secs(10) {
            self.err(
                loc,
                format!("ping check `interval: {}` is out of range", p.interval),
                "use 100us to 10s, like `interval: 5ms`",
            );
        }
        if self.node_exists(&p.from, loc) {
            self.lab_target("ping", p.to, loc);
        }
        if p.count == 0 {
            self.err(loc, "ping check with count 0", "use count: 1 or more");
        } else if p.count > u32::from(u16::MAX) {
            // Echo sequence numbers are 16 bits.
            self.err(
                loc,
                format!("ping check count {} is above 65535", p.count),
                "use count: 1 to 65535",
            );
        }
    }

    /// An mtu or encap check of `tunnel` (None: no tunnel has its name).
    fn tunnel_check(&mut self, t: &TunnelCheck, tunnel: Option<&Tunnel>, loc: Loc) {
        let Some(x) = tunnel else {
            let names: Vec<&str> = self
                .topo
                .tunnels
                .iter()
                .map(|x| x.name.value.as_str())
                .collect();
            self.err(
                loc,
                format!("check names unknown tunnel `{}`", t.tunnel),
                format!("tunnels are: {}", names.join(", ")),
            );
            return;
        };
        if let Some(from) = &t.from
            && !x.endpoints.value.iter().any(|e| &e.node.value == from)
        {
            self.err(
                loc,
                format!("`{from}` is not an end of tunnel `{}`", t.tunnel),
                "",
            );
        }
        if x.endpoints.value.iter().any(|e| e.addresses().is_empty()) {
            self.err(
                loc,
                format!(
                    "tunnel `{}` needs an address on both ends to be probed",
                    t.tunnel
                ),
                "",
            );
        }
    }

    /// An address the check sends to: one of the lab's.
    fn lab_target(&mut self, kind: &str, to: std::net::IpAddr, loc: Loc) {
        if !self.seen.contains_key(&to) {
            self.err(
                loc,
                format!("{kind} check target {to} is no address in this lab"),
                "checks may only send traffic to the lab's own addresses",
            );
        }
    }

    /// `dev` of `node`, when the node exists.
    fn iface_exists(&mut self, node: &str, dev: &str, loc: Loc) {
        if self.idx.node(node).is_some()
            && !self.ifaces.contains_key(&(node.to_owned(), dev.to_owned()))
        {
            self.err(loc, format!("node `{node}` has no interface `{dev}`"), "");
        }
    }

    fn tcp_check(&mut self, t: &TcpCheck, loc: Loc) {
        if self.node_exists(&t.from, loc) {
            self.lab_target("tcp", t.to, loc);
        }
        if t.port == 0 {
            self.err(loc, "tcp check to port 0", "use a port from 1 to 65535");
        }
    }

    fn multicast_check(&mut self, m: &MulticastCheck, loc: Loc) {
        let from = self.node_exists(&m.from, loc);
        let to = self.node_exists(&m.to, loc);
        if from && to && m.from == m.to {
            self.err(
                loc,
                format!("multicast check from `{}` to itself", m.from),
                "name two nodes: the group's datagrams must cross the lab",
            );
        }
        if !m.group.is_multicast() {
            self.err(
                loc,
                format!("multicast check group {} is not a multicast address", m.group),
                "use an IPv4 group in 224.0.0.0/4 (like 239.1.1.1) or an IPv6 one in ff00::/8 (like ff0e::1)",
            );
        }
        if m.port == 0 {
            self.err(
                loc,
                "multicast check to port 0",
                "use a port from 1 to 65535",
            );
        }
        if let Some(dev) = &m.dev {
            self.iface_exists(&m.from, dev, loc);
        }
        if let Some(dev) = &m.join {
            self.iface_exists(&m.to, dev, loc);
        }
    }

    fn route_check(&mut self, r: &RouteCheck, loc: Loc) {
        if self.node_exists(&r.from, loc) {
            self.iface_exists(&r.from, &r.dev, loc);
        }
        self.lab_target("route", r.to, loc);
    }

    fn exec_check(&mut self, e: &ExecCheck, loc: Loc) {
        self.node_exists(&e.node, loc);
        if !(0..=255).contains(&e.exit) {
            self.err(
                loc,
                format!(
                    "exec check expects exit {}, which no program can return",
                    e.exit
                ),
                "exit codes are 0 to 255",
            );
        }
        if e.cmd.is_empty() {
            self.err(
                loc,
                "exec check with an empty `cmd`",
                "give the program and its arguments",
            );
        }
    }
}
