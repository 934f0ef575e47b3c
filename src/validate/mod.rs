//! Validation: every error of a topology at once, each with its location and
//! a hint, before anything is created. One `Checker` walks the file with a
//! method per concern (names, links, tunnels, bridges, addresses, routes,
//! checks).
//! It imports `model` and `topology` only, is pure (no libc, nix, tokio),
//! and never changes the topology nor stops at the first error.

mod addresses;
mod bridges;
mod checks;
mod impair;
mod links;
mod names;
mod routes;
mod software;
mod tunnels;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use self::addresses::{Assigned, Subnets};
pub(crate) use self::names::{device_name_problem, name_problem};
use crate::topology::{Index, Loc, Topology};

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

/// Checks a parsed topology; returns every problem found, in file order.
pub fn validate(topo: &Topology) -> Result<(), Vec<Diagnostic>> {
    let mut c = Checker {
        topo,
        idx: topo.index(),
        diags: Vec::new(),
        ifaces: HashMap::new(),
        assigned: Vec::new(),
        tunnel_ids: HashMap::new(),
        subnets: Subnets::default(),
        seen: HashMap::new(),
        own: HashSet::new(),
    };
    // In this order: each concern reads what the ones before collected.
    c.names();
    c.links();
    c.tunnels();
    // After links and tunnels (its ports), before addresses (its own).
    c.bridges();
    c.addresses();
    c.routes();
    c.underlays();
    c.impairments();
    c.checks();
    c.software();
    c.finish()
}

/// Smallest MTU an interface may have: IPv4's 68, IPv6's 1280.
fn min_mtu(v6: bool) -> u32 {
    if v6 { 1280 } else { 68 }
}

/// A tunnel end as the kernel tells tunnels apart: (node, local, remote, ikey).
type TunnelId = (String, IpAddr, IpAddr, Option<u32>);

/// The walk over one topology: what it found, and what the concerns
/// checked so far collected for the later ones.
struct Checker<'a> {
    topo: &'a Topology,
    idx: Index<'a>,
    diags: Vec<Diagnostic>,
    /// Interfaces, from links and tunnels alike: (node, name) -> where defined.
    ifaces: HashMap<(String, String), Loc>,
    /// Addresses on interfaces, from links and tunnels alike, in file order.
    assigned: Vec<Assigned<'a>>,
    /// Tunnel ends seen, and where.
    tunnel_ids: HashMap<TunnelId, Loc>,
    /// The nodes' connected subnets (from `addresses`).
    subnets: Subnets<'a>,
    /// Each address of the lab and its first assignment (from `addresses`).
    seen: HashMap<IpAddr, usize>,
    /// Each node's own addresses (from `addresses`).
    own: HashSet<(&'a str, IpAddr)>,
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

    /// Every problem found, in file order.
    fn finish(mut self) -> Result<(), Vec<Diagnostic>> {
        if self.diags.is_empty() {
            Ok(())
        } else {
            // One problem seen from both tunnel ends is reported once.
            self.diags
                .sort_by(|a, b| (a.loc, &a.message).cmp(&(b.loc, &b.message)));
            self.diags.dedup();
            Err(self.diags)
        }
    }
}
