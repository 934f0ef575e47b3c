//! The parts of a topology: nodes, routes, links and tunnels.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::impair::Impair;
use super::yaml::{OneOrMany, Ordered, Scalar, Spanned, nullable};
use crate::model::{Backend, EndOptions, Family, IpNet, TunnelKind};

/// A node: one network namespace.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// IP forwarding (IPv4, and IPv6 when the node has IPv6 addresses).
    #[serde(default)]
    pub forwarding: bool,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Route>>")]
    pub routes: Vec<Route>,
    /// Extra sysctls under /proc/sys, written inside the namespace.
    #[serde(default)]
    pub sysctls: Ordered<Scalar>,
    /// Files seen inside this node only: absolute path -> content.
    #[serde(default)]
    pub files: Ordered<String>,
    /// Programs started in this node once the network is up, in order.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Workload>>")]
    pub run: Vec<Workload>,
    /// Kernel bridges inside the node, by name: L2 switches over its veth
    /// and gretap ends.
    #[serde(default)]
    pub bridges: Ordered<Bridge>,
}

/// A program a node runs, supervised by the lab's keeper.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Names its log (`<node>.<name>.log`) and its line in `status`.
    pub name: Spanned<String>,
    /// The program and its arguments (the program looked up on PATH).
    pub cmd: Spanned<Vec<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: Ordered<Scalar>,
    /// Its failure does not fail `up`.
    #[serde(default)]
    pub optional: bool,
}

/// A kernel bridge in a node.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::alias("addresses", "address"))]
pub struct Bridge {
    /// Its ports: the node's veth ends and gretap/ip6gretap tunnel ends.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Spanned<String>>>")]
    pub ports: Vec<Spanned<String>>,
    /// Addresses on the bridge itself (its ports carry none).
    #[serde(default, alias = "address")]
    pub addresses: Option<Spanned<OneOrMany<IpNet>>>,
    /// Device MTU; default: the smallest of its ports', as the kernel does.
    pub mtu: Option<Spanned<u32>>,
}

impl Bridge {
    /// The bridge's own addresses.
    pub(crate) fn addresses(&self) -> &[IpNet] {
        self.addresses.as_ref().map_or(&[], |a| a.value.as_slice())
    }
}

/// A static route.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `default` (IPv4), `default6`, or a prefix.
    pub to: Spanned<Destination>,
    pub via: Spanned<IpAddr>,
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    Default(Family),
    Net(IpNet),
}

impl Destination {
    pub(crate) fn family(&self) -> Family {
        match self {
            Destination::Default(f) => *f,
            Destination::Net(n) => Family::of(&n.addr),
        }
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "default" | "0.0.0.0/0" => Ok(Destination::Default(Family::V4)),
            "default6" | "::/0" => Ok(Destination::Default(Family::V6)),
            _ => s.parse().map(Destination::Net).map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for Destination {
    fn schema_name() -> Cow<'static, str> {
        "Destination".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let net = generator.subschema_for::<IpNet>();
        json_schema!({
            "description": "`default` (IPv4), `default6` (IPv6), or a prefix like `10.1.0.0/16`.",
            "anyOf": [{"enum": ["default", "default6"]}, net]
        })
    }
}

impl Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Destination::Default(Family::V6) => s.serialize_str("default6"),
            _ => s.collect_str(self),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Default(_) => f.write_str("default"),
            Destination::Net(n) => n.fmt(f),
        }
    }
}

/// A veth pair between two nodes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// `["node:iface", "node:iface"]`.
    pub endpoints: Spanned<[Spanned<Endpoint>; 2]>,
    /// Per endpoint, in the same order: one address or a list.
    #[serde(default)]
    pub addresses: Option<Spanned<[OneOrMany<IpNet>; 2]>>,
    pub mtu: Option<Spanned<u32>>,
    /// Impairments of the ends' egress (see `impair`).
    pub impair: Option<Impair>,
}

/// `node:iface`, the containerlab convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(':') {
            Some((node, iface)) if !node.is_empty() && !iface.is_empty() => Ok(Endpoint {
                node: node.to_owned(),
                iface: iface.to_owned(),
            }),
            _ => Err(de::Error::custom(format!(
                "endpoint `{s}` must be `node:interface`, like `host1:veth0`"
            ))),
        }
    }
}

// Stricter than the parser (`node:rest`), as strict as validation: node and
// interface names hold letters, digits, `.`, `_` and `-`; an interface 15 at most.
impl JsonSchema for Endpoint {
    fn schema_name() -> Cow<'static, str> {
        "Endpoint".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`node:interface`, like `host1:veth0`.",
            "pattern": "^[A-Za-z0-9._-]+:[A-Za-z0-9._-]{1,15}$"
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

/// A GRE tunnel between two nodes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// The tunnel device's name on both ends.
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<TunnelKind>,
    pub endpoints: Spanned<[TunnelEndpoint; 2]>,
    /// Outer TTL; absent inherits the inner packet's TTL, as the kernel does.
    pub ttl: Option<Spanned<u8>>,
    #[serde(default)]
    pub tos: u8,
    /// Key for both directions of both ends.
    pub key: Option<Spanned<u32>>,
    /// GRE checksums on both ends.
    pub checksum: Option<bool>,
    /// GRE sequence numbers on both ends.
    pub sequence: Option<bool>,
    /// Path MTU discovery (outer DF); on by default, as in the kernel.
    pub pmtudisc: Option<Spanned<bool>>,
    /// Device MTU; default: underlay MTU minus the encapsulation overhead.
    pub mtu: Option<Spanned<u32>>,
    /// Which dataplane builds it.
    #[serde(default)]
    pub backend: Backend,
    /// The MULTICAST flag on both ends' devices (kernel GRE lacks it by
    /// default; routing daemons need it); on unless switched off.
    pub multicast: Option<bool>,
    /// Impairments of the tunnel devices' egress: the overlay only.
    pub impair: Option<Impair>,
}

/// One end of a tunnel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::alias("address", "addresses"))]
pub struct TunnelEndpoint {
    pub node: Spanned<String>,
    /// Underlay address of this end: one of the node's link addresses.
    pub local: Spanned<IpAddr>,
    /// Overlay address(es) on the tunnel device.
    #[serde(default, alias = "addresses")]
    pub address: Option<Spanned<OneOrMany<IpNet>>>,
    /// Per-end overrides; the two ends must agree (okey of one = ikey of the other).
    pub ikey: Option<Spanned<u32>>,
    pub okey: Option<Spanned<u32>>,
    pub checksum: Option<Spanned<bool>>,
    pub sequence: Option<Spanned<bool>>,
    /// Per-end backend (default: the tunnel's), e.g. kernel here and
    /// userspace there, to test wire compatibility.
    pub backend: Option<Backend>,
}

impl Tunnel {
    /// The options of end `i` (0 or 1).
    pub(crate) fn options(&self, i: usize) -> EndOptions {
        let e = &self.endpoints.value[i];
        let key = self.key.as_ref().map(|k| k.value);
        EndOptions {
            ikey: e.ikey.as_ref().map(|k| k.value).or(key),
            okey: e.okey.as_ref().map(|k| k.value).or(key),
            checksum: e
                .checksum
                .as_ref()
                .map(|c| c.value)
                .or(self.checksum)
                .unwrap_or(false),
            sequence: e
                .sequence
                .as_ref()
                .map(|c| c.value)
                .or(self.sequence)
                .unwrap_or(false),
        }
    }

    /// Multicast on the tunnel's devices: on unless switched off.
    pub(crate) fn multicast(&self) -> bool {
        self.multicast.unwrap_or(true)
    }

    /// Path MTU discovery: on unless switched off.
    pub(crate) fn pmtudisc(&self) -> bool {
        self.pmtudisc.as_ref().is_none_or(|p| p.value)
    }
}

impl Link {
    /// Addresses of endpoint `i` (0 or 1).
    pub(crate) fn addresses(&self, i: usize) -> &[IpNet] {
        self.addresses
            .as_ref()
            .map_or(&[], |a| a.value[i].as_slice())
    }

    /// The link's MTU (default 1500, as for any veth).
    pub(crate) fn mtu(&self) -> u32 {
        self.mtu.as_ref().map_or(1500, |m| m.value)
    }
}

impl TunnelEndpoint {
    /// Overlay addresses of this end.
    pub(crate) fn addresses(&self) -> &[IpNet] {
        self.address.as_ref().map_or(&[], |a| a.value.as_slice())
    }
}
