//! The topology file: its model, reading it from YAML, and the index of
//! names and addresses that checking and planning look things up in.
//! It imports `model` and `error` only; it is pure (no libc, nix, tokio)
//! and never checks meaning beyond the YAML's shape: `validate` does.
//!
//! Values that a later error may point at are `Spanned`, so validation can
//! say `file:line:col`. Unknown keys are errors everywhere.

mod checks;
pub(crate) mod generate;
mod impair;
mod schema;
mod types;
mod yaml;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::model::IpNet;

pub use self::checks::{
    Bound, Check, DEFAULT_PING_INTERVAL, ExecCheck, Expect, MulticastCheck, PathExpect, PingCheck,
    RouteCheck, TcpCheck, TunnelCheck,
};
pub use self::impair::{Impair, ImpairParams};
pub use self::schema::schema;
pub use self::types::{
    Bridge, Destination, Endpoint, Link, Node, Route, Tunnel, TunnelEndpoint, Workload,
};
use self::yaml::nullable;
pub use self::yaml::{Loc, MAX_FILE_BYTES, OneOrMany, Ordered, Scalar, Spanned, parse, read_file};
// The vocabulary lives in `model`; these paths keep working for the layers
// that still import it from here.

/// A whole topology file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Lab name: state lives in /run/grelab/<name>.
    pub name: Spanned<String>,
    /// Prepended to every namespace name, so one file can run as several labs.
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    pub nodes: Ordered<Node>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Link>>")]
    pub links: Vec<Link>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Tunnel>>")]
    pub tunnels: Vec<Tunnel>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Spanned<Check>>>")]
    pub checks: Vec<Spanned<Check>>,
}

impl Topology {
    /// Names of the nodes, in file order.
    pub(crate) fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.0.iter().map(|(k, _)| k.value.as_str())
    }

    /// The node named `name` (a scan: for many lookups, use [`Topology::index`]).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .0
            .iter()
            .find(|(k, _)| k.value == name)
            .map(|(_, n)| n)
    }

    /// Every link endpoint, as (node, iface, addresses, mtu).
    pub(crate) fn link_ends(&self) -> impl Iterator<Item = (&Endpoint, &[IpNet], u32)> {
        self.links.iter().flat_map(|l| {
            (0..2).map(move |i| (&l.endpoints.value[i].value, l.addresses(i), l.mtu()))
        })
    }

    /// Lookups by name and address, built once: a scan per question would
    /// make checking and planning quadratic in the lab's size.
    pub(crate) fn index(&self) -> Index<'_> {
        let mut nodes = HashMap::new();
        for (k, n) in &self.nodes.0 {
            nodes.entry(k.value.as_str()).or_insert(n);
        }
        let mut underlay = HashMap::new();
        for (ep, addrs, mtu) in self.link_ends() {
            for a in addrs {
                underlay.entry((ep.node.as_str(), a.addr)).or_insert(mtu);
            }
        }
        Index { nodes, underlay }
    }
}

/// See [`Topology::index`]. Where a name or address repeats, the first in
/// file order wins, as a scan would find it.
pub(crate) struct Index<'a> {
    nodes: HashMap<&'a str, &'a Node>,
    underlay: HashMap<(&'a str, IpAddr), u32>,
}

impl<'a> Index<'a> {
    /// The node named `name`.
    pub(crate) fn node(&self, name: &str) -> Option<&'a Node> {
        self.nodes.get(name).copied()
    }

    /// The MTU of the interface of `node` that holds underlay address `local`.
    pub(crate) fn underlay_mtu(&self, node: &str, local: &IpAddr) -> Option<u32> {
        self.underlay.get(&(node, *local)).copied()
    }
}
