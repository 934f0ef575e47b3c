//! The topology file: its model, and reading it from YAML.
//!
//! Values that a later error may point at are `Spanned`, so validation can
//! say `file:line:col`. Unknown keys are errors everywhere.

pub mod generate;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
pub use serde_saphyr::Spanned;

use crate::plan::TunnelKind;

/// Topology files larger than this are refused (a lab of 1000 spokes is ~0.5 MiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Lab name: state lives in /run/grelab/<name>.
    pub name: Spanned<String>,
    /// Prepended to every namespace name, so one file can run as several labs.
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    pub nodes: Ordered<Node>,
    #[serde(default, deserialize_with = "nullable")]
    pub links: Vec<Link>,
    #[serde(default, deserialize_with = "nullable")]
    pub tunnels: Vec<Tunnel>,
    #[serde(default, deserialize_with = "nullable")]
    pub checks: Vec<Spanned<Check>>,
}

/// A node: one network namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// IP forwarding (IPv4, and IPv6 when the node has IPv6 addresses).
    #[serde(default)]
    pub forwarding: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Vec<Route>,
    /// Extra sysctls under /proc/sys, written inside the namespace.
    #[serde(default)]
    pub sysctls: Ordered<Scalar>,
}

/// A static route.
#[derive(Debug, Deserialize)]
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

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl Destination {
    pub fn family(&self) -> Family {
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// `["node:iface", "node:iface"]`.
    pub endpoints: Spanned<[Spanned<Endpoint>; 2]>,
    /// Per endpoint, in the same order: one address or a list.
    #[serde(default)]
    pub addresses: Option<Spanned<[OneOrMany<IpNet>; 2]>>,
    pub mtu: Option<Spanned<u32>>,
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

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

/// A GRE tunnel between two nodes.
#[derive(Debug, Deserialize)]
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
}

/// One end of a tunnel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Which dataplane builds a tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel GRE where the kernel has it, else userspace.
    #[default]
    Auto,
    /// The kernel's ip_gre / ip6_gre.
    Kernel,
    /// grelab's userspace dataplane (TUN/TAP + raw sockets).
    Userspace,
}

/// A check that `verify` runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// Ping from a node to an address (expect success, or failure for isolation).
    Ping(PingCheck),
    /// Path MTU across a tunnel: a DF probe filling the MTU passes, one byte more is refused.
    Mtu(TunnelCheck),
    /// The packet on the wire: outer header, GRE header and inner packet as configured.
    Encap(TunnelCheck),
    /// Traffic from a node to an address leaves through the expected interface.
    Route(RouteCheck),
    /// A command in a node exits with the expected code.
    Exec(ExecCheck),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PingCheck {
    pub from: String,
    pub to: IpAddr,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub expect: Expect,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelCheck {
    pub tunnel: String,
    /// The end to probe from (default: the tunnel's first endpoint).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    pub from: String,
    pub to: IpAddr,
    /// The interface traffic must leave through.
    pub dev: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCheck {
    pub node: String,
    /// The program and its arguments.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub exit: i32,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

fn default_count() -> u32 {
    3
}

fn default_timeout() -> f64 {
    5.0
}

/// What a ping check expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    #[default]
    Success,
    Failure,
}

/// An address with its prefix length, as `172.16.10.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    fn max_prefix(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// The network address (host bits cleared), as a number.
    fn bits(&self) -> u128 {
        let (v, width) = match self.addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let host = width - u32::from(self.prefix);
        if host >= 128 { 0 } else { (v >> host) << host }
    }

    /// The network address: host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((self.bits() as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(self.bits().into()),
        }
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == Family::of(&self.addr)
            && IpNet {
                addr: *ip,
                prefix: self.prefix,
            }
            .bits()
                == self.bits()
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if shorter == self { other } else { self };
        shorter.contains(&longer.addr)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` needs a prefix length, like `10.0.0.1/24`"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= Self::max_prefix(&addr))
            .ok_or_else(|| {
                format!(
                    "`{p}` is not a prefix length for {addr} (0..={})",
                    Self::max_prefix(&addr)
                )
            })?;
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One value or a list of them.
#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

// By hand rather than `untagged`, so an element's own error (a bad prefix
// length, say) reaches the user instead of "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address like `10.0.0.1/24`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A sysctl value: YAML scalars of any type, kept as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, string or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(u8::from(v).to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `key:` with nothing after it reads as the empty default, like an absent key.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A YAML mapping that keeps the file's order and each key's location.
#[derive(Debug)]
pub struct Ordered<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de> + Default> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de> + Default> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered<V>, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    // `host1:` with nothing under it is an empty node.
                    out.push((k, map.next_value::<Option<V>>()?.unwrap_or_default()));
                }
                Ok(Ordered(out))
            }
        }
        // `any`, not `map`: an empty `sysctls:` (null) is an empty mapping.
        d.deserialize_any(OrderedVisitor(std::marker::PhantomData))
    }
}

/// A place in the topology file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub line: u64,
    pub col: u64,
}

impl Loc {
    pub fn of<T>(s: &Spanned<T>) -> Loc {
        Loc {
            line: s.referenced.line(),
            col: s.referenced.column(),
        }
    }
}

/// Reads a topology file with a size cap, so `/dev/zero` cannot hang grelab.
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        crate::error::bad_input(format!(
            "cannot read topology file `{}`: {e}{}",
            path.display(),
            if e.kind() == std::io::ErrorKind::NotFound {
                " (give a FILE, or run `grelab init` to write ./grelab.yaml)"
            } else {
                ""
            }
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::error::bad_input(format!("reading `{}`: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(crate::error::bad_input(format!(
            "`{}` is larger than {} MiB: that is no topology file",
            path.display(),
            MAX_FILE_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        crate::error::bad_input(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses YAML text into a topology; the error carries `file:line:col`.
pub fn parse(text: &str, file: &str) -> anyhow::Result<Topology> {
    // Only comments and blank lines: say so, rather than "unexpected end of input".
    let is_content = |l: &str| !(l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if !text.lines().map(str::trim).any(is_content) {
        return Err(crate::error::bad_input(format!(
            "{file}:1:1: error: the file is empty; a topology needs at least `name:` and `nodes:` (see `grelab init`)"
        )));
    }
    // serde-saphyr's default budget (250k nodes, 1M events) refuses a lab of
    // ~6700 spokes, far below MAX_FILE_BYTES; this lets the file cap decide.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_nodes: 1_000_000, max_events: 2_000_000 },
    };
    serde_saphyr::from_str_with_options::<Topology>(text, options).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{file}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| file.to_owned());
        // render() starts "error: line L column C: MSG" and then a snippet.
        // The duplicate-key advice is for programmers using serde-saphyr, not users.
        let rendered = e
            .render()
            .replace("<input>", file)
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        let (first, snippet) = rendered.split_once('\n').unwrap_or((&rendered, ""));
        let message = first.split_once(": ").map(|x| x.1).unwrap_or(first);
        let message = message
            .split_once(": ")
            .filter(|(head, _)| head.starts_with("line "))
            .map_or(message, |(_, m)| m);
        crate::error::bad_input(format!("{at}: error: {message}\n{}", snippet.trim_end()))
    })
}

/// A tunnel end's GRE options after tunnel-wide defaults and per-end overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOptions {
    pub ikey: Option<u32>,
    pub okey: Option<u32>,
    pub checksum: bool,
    pub sequence: bool,
}

impl Tunnel {
    /// The options of end `i` (0 or 1).
    pub fn options(&self, i: usize) -> EndOptions {
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

    /// Path MTU discovery: on unless switched off.
    pub fn pmtudisc(&self) -> bool {
        self.pmtudisc.as_ref().is_none_or(|p| p.value)
    }
}

impl Link {
    /// Addresses of endpoint `i` (0 or 1).
    pub fn addresses(&self, i: usize) -> &[IpNet] {
        self.addresses
            .as_ref()
            .map_or(&[], |a| a.value[i].as_slice())
    }

    /// The link's MTU (default 1500, as for any veth).
    pub fn mtu(&self) -> u32 {
        self.mtu.as_ref().map_or(1500, |m| m.value)
    }
}

impl TunnelEndpoint {
    /// Overlay addresses of this end.
    pub fn addresses(&self) -> &[IpNet] {
        self.address.as_ref().map_or(&[], |a| a.value.as_slice())
    }
}

impl Topology {
    /// Names of the nodes, in file order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
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
    pub fn link_ends(&self) -> impl Iterator<Item = (&Endpoint, &[IpNet], u32)> {
        self.links.iter().flat_map(|l| {
            (0..2).map(move |i| (&l.endpoints.value[i].value, l.addresses(i), l.mtu()))
        })
    }

    /// Lookups by name and address, built once: a scan per question would
    /// make checking and planning quadratic in the lab's size.
    pub fn index(&self) -> Index<'_> {
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
pub struct Index<'a> {
    nodes: HashMap<&'a str, &'a Node>,
    underlay: HashMap<(&'a str, IpAddr), u32>,
}

impl<'a> Index<'a> {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&'a Node> {
        self.nodes.get(name).copied()
    }

    /// The MTU of the interface of `node` that holds underlay address `local`.
    pub fn underlay_mtu(&self, node: &str, local: &IpAddr) -> Option<u32> {
        self.underlay.get(&(node, *local)).copied()
    }
}

/// Bytes a tunnel adds in front of the inner packet (outer IP + GRE [+ Ethernet]).
pub fn overhead(kind: TunnelKind, opts: &EndOptions) -> u32 {
    let outer = if kind.is_ipv6() { 40 } else { 20 };
    // The sent header: the kernel sizes it by the output flags.
    let gre =
        crate::wire::gre::header_len(opts.checksum, opts.okey.is_some(), opts.sequence) as u32;
    let ethernet = if kind.is_l2() { 14 } else { 0 };
    outer + gre + ethernet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_lab_under_the_file_cap_parses() {
        // ~290k YAML nodes: over serde-saphyr's default budget of 250k.
        let text = crate::topology::generate::hub_spoke("big", 7_000, true, Backend::Auto);
        assert!((text.len() as u64) < MAX_FILE_BYTES);
        let topo = parse(&text, "big.yaml").unwrap();
        assert_eq!(topo.nodes.0.len(), 7_001);
        assert_eq!(topo.tunnels.len(), 7_000);
        assert_eq!(topo.checks.len(), 7_000);
    }
}
