//! Checks: timeouts in range, nodes, tunnels and interfaces that exist, and
//! traffic only to the lab's own addresses.

use std::collections::HashMap;

use super::Checker;
use crate::topology::{Check, ExecCheck, Loc, PingCheck, RouteCheck, Tunnel, TunnelCheck};

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
            }
        }
    }

    fn timeout(&mut self, t: f64, loc: Loc) {
        if !(t > 0.0 && t <= 600.0) {
            self.err(
                loc,
                format!("check timeout {t} is out of range"),
                "use seconds, 0 < timeout <= 600",
            );
        }
    }

    fn ping_check(&mut self, p: &PingCheck, loc: Loc) {
        self.timeout(p.timeout, loc);
        if let Some(i) = p.interval
            && !(0.001..=60.0).contains(&i)
        {
            self.err(
                loc,
                format!("ping check interval {i} is out of range"),
                "use seconds between requests, 0.001 to 60",
            );
        }
        if self.node_exists(&p.from, loc) && !self.seen.contains_key(&p.to) {
            self.err(
                loc,
                format!("ping check target {} is no address in this lab", p.to),
                "checks may only send traffic to the lab's own addresses",
            );
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
        self.timeout(t.timeout, loc);
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

    fn route_check(&mut self, r: &RouteCheck, loc: Loc) {
        self.timeout(r.timeout, loc);
        if self.node_exists(&r.from, loc)
            && !self.ifaces.contains_key(&(r.from.clone(), r.dev.clone()))
        {
            self.err(
                loc,
                format!("node `{}` has no interface `{}`", r.from, r.dev),
                "",
            );
        }
        if !self.seen.contains_key(&r.to) {
            self.err(
                loc,
                format!("route check target {} is no address in this lab", r.to),
                "checks may only send traffic to the lab's own addresses",
            );
        }
    }

    fn exec_check(&mut self, e: &ExecCheck, loc: Loc) {
        self.timeout(e.timeout, loc);
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
