//! The only module that speaks rtnetlink: links, addresses, routes and
//! kernel GRE tunnels in one network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that opened it, so
//! each namespace gets a worker thread that has entered it and runs a tokio
//! current-thread runtime (with IO enabled); [`Rtnl::new`] is called there.
//! Methods take `&self`, so many requests can be in flight at once.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, GreIOFlags, In6AddrGenMode, InfoData, InfoGre, InfoGre6, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType, RouteVia,
};
use rtnetlink::packet_core::DefaultNla;
use rtnetlink::{Handle, LinkGre, LinkGre6, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error;
use crate::plan::{TunnelEnd, TunnelKind};

/// IFLA_GRE_FLAGS: ip6_tnl flags (u32); the crate has no typed variant for it.
const IFLA_GRE_FLAGS: u16 = 13;
/// No Tunnel Encapsulation Limit option: the outer header is a bare 40-byte IPv6 header.
const IP6_TNL_F_IGN_ENCAP_LIMIT: u32 = 0x1;

/// A netlink connection to the kernel, bound to one network namespace.
#[derive(Clone)]
pub struct Rtnl {
    handle: Handle,
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (ifindex).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// IFLA_IFALIAS; grelab's ownership mark.
    pub alias: Option<String>,
    /// Link kind from IFLA_LINKINFO: "veth", "gre", "tun", ...
    pub kind: Option<String>,
    /// Device MTU.
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

/// A unicast route of the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix; `None` is the default route.
    pub dst: Option<(IpAddr, u8)>,
    /// Gateway, if any.
    pub via: Option<IpAddr>,
    /// Output device, if any.
    pub dev: Option<String>,
}

/// What a request acted on, so an errno can name it in advice.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Link(&'a str),
    Tunnel(&'a str, TunnelKind),
    Mtu(&'a str, u32),
    Address(&'a str, IpAddr),
    Route(Option<&'a str>, IpAddr),
}

impl Rtnl {
    /// Opens a netlink connection in the calling thread's namespace; call it
    /// inside a tokio runtime with IO enabled (the connection task is spawned).
    pub fn new() -> Result<Self> {
        tokio::runtime::Handle::try_current()
            .context("opening a netlink connection: not inside a tokio runtime")?;
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink (rtnetlink) socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// All links of this namespace.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| explain_nl(e, "listing interfaces", None))?;
        Ok(msgs.iter().map(to_link).collect())
    }

    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        let doing = format!("looking up interface `{name}`");
        check_name(name, &doing)?;
        let mut found = self.handle.link().get().match_name(name).execute();
        match found.try_next().await {
            Ok(Some(msg)) => Ok(msg.header.index),
            Ok(None) => Err(anyhow!("no interface `{name}`")),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(anyhow!("no interface `{name}`")),
            Err(e) => Err(explain_nl(e, &doing, Some(Target::Link(name)))),
        }
    }

    /// veth `name` here with its peer `peer` created directly in the namespace
    /// behind `peer_ns` (one message, nothing stranded in this namespace).
    pub async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        mtu: Option<u32>,
        macs: Option<([u8; 6], [u8; 6])>,
    ) -> Result<()> {
        let doing = format!("creating veth `{name}` with peer `{peer}`");
        check_name(name, &doing)?;
        check_name(peer, &doing)?;
        let mut peer_msg = LinkUnspec::new_with_name(peer).setns_by_fd(peer_ns.as_raw_fd());
        let mut builder = LinkVeth::new(name, peer);
        if let Some(mtu) = mtu {
            peer_msg = peer_msg.mtu(mtu);
            builder = builder.mtu(mtu);
        }
        // One queue each way (the default is one per CPU): a lab's veths
        // carry little, and each extra queue costs the kernel an RCU grace
        // period when the device is registered.
        for q in [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)] {
            peer_msg = peer_msg.append_extra_attribute(q.clone());
            builder = builder.append_extra_attribute(q);
        }
        if let Some((mine, theirs)) = macs {
            peer_msg = peer_msg.address(theirs.to_vec());
            builder = builder.address(mine.to_vec());
        }
        let msg = builder
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        let Err(e) = self.handle.link().add(msg).execute().await else {
            return Ok(());
        };
        // EEXIST: name whichever end exists.
        let blame = if errno(&e) == Some(libc::EEXIST) && self.link_index(name).await.is_err() {
            Target::Link(peer)
        } else {
            Target::Link(name)
        };
        Err(explain_nl(e, &doing, Some(blame)))
    }

    /// Brings `name` up, setting its alias (grelab's ownership mark) in the
    /// same message if given.
    pub async fn set_up(&self, name: &str, mark: Option<&str>) -> Result<()> {
        let mut msg = LinkUnspec::new_with_name(name).up();
        if let Some(a) = mark {
            msg = msg.alias(a);
        }
        self.set_link(
            msg.build(),
            &format!("bringing `{name}` up"),
            Target::Link(name),
        )
        .await
    }

    /// Brings `name` down.
    pub async fn set_down(&self, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name).down().build();
        self.set_link(msg, &format!("bringing `{name}` down"), Target::Link(name))
            .await
    }

    /// Sets the MTU of `name`.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name).mtu(mtu).build();
        self.set_link(
            msg,
            &format!("setting MTU {mtu} on `{name}`"),
            Target::Mtu(name, mtu),
        )
        .await
    }

    /// Adds `addr/prefix` to `name`; IPv6 addresses skip DAD (IFA_F_NODAD).
    pub async fn add_address(&self, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let doing = format!("adding address {addr}/{prefix} to `{name}`");
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(error::bad_input(format!(
                "{doing}: prefix length {prefix} is over {max}"
            )));
        }
        let index = self.link_index(name).await.with_context(|| doing.clone())?;
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            // Labs must not wait for duplicate address detection.
            req.message_mut().header.flags = AddressHeaderFlags::Nodad;
        }
        req.execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Address(name, addr))))
    }

    /// Adds a route to `dst` (`None`: default) via `via`, optionally through `dev`.
    pub async fn add_route(
        &self,
        dst: Option<(IpAddr, u8)>,
        via: IpAddr,
        dev: Option<&str>,
    ) -> Result<()> {
        let shown = dst.map_or_else(|| "default".to_owned(), |(a, p)| format!("{a}/{p}"));
        let on = dev.map(|d| format!(" dev `{d}`")).unwrap_or_default();
        let doing = format!("adding route {shown} via {via}{on}");
        let mut b = RouteMessageBuilder::<IpAddr>::new();
        b.get_mut().header.address_family = family(dst.map_or(via, |(a, _)| a));
        if let Some((addr, prefix)) = dst {
            b = b
                .destination_prefix(addr, prefix)
                .map_err(|e| error::bad_input(format!("{doing}: {e}")))?;
        }
        b = b.gateway(via).map_err(|_| {
            error::bad_input(format!(
                "{doing}: an IPv6 destination needs an IPv6 gateway"
            ))
        })?;
        if let Some(dev) = dev {
            let index = self.link_index(dev).await.with_context(|| doing.clone())?;
            b = b.output_interface(index);
        }
        self.handle
            .route()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Route(dev, via))))
    }

    /// A kernel GRE link from a resolved tunnel end, with IPv6 address
    /// generation off (no link-local autoconfiguration across tunnels) and
    /// the planned MTU. Nothing half-made is left behind on failure.
    pub async fn add_tunnel(&self, end: &TunnelEnd) -> Result<()> {
        let name = end.name.as_str();
        let doing = format!(
            "creating {} tunnel `{name}` ({} -> {})",
            end.kind.as_str(),
            end.local,
            end.remote
        );
        check_name(name, &doing)?;
        let msg = tunnel_message(end).map_err(|e| error::bad_input(format!("{doing}: {e}")))?;
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Tunnel(name, end.kind))))?;
        // MTU separately: at creation ip_gre clamps it and ip6_gre ignores a
        // bad one silently; RTM_SETLINK reports it.
        let configured = async {
            self.set_addrgenmode_none(name).await?;
            self.set_mtu(name, end.mtu).await
        };
        if let Err(e) = configured.await {
            let _ = self.del_link(name).await;
            return Err(e);
        }
        Ok(())
    }

    /// Deletes link `name`; a link that does not exist is fine.
    /// A permanent neighbour entry: `addr` is at `mac` on `name`.
    pub async fn add_neighbor(&self, name: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
        let doing = format!("adding neighbour {addr} at `{name}`");
        let index = self.link_index(name).await.with_context(|| doing.clone())?;
        self.handle
            .neighbours()
            .add(index, addr)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Link(name))))
    }

    pub async fn del_link(&self, name: &str) -> Result<()> {
        let doing = format!("deleting interface `{name}`");
        check_name(name, &doing)?;
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(|e| explain_nl(e, &doing, Some(Target::Link(name)))),
        }
    }

    /// All addresses of this namespace: (device, address, prefix length).
    pub async fn addresses(&self) -> Result<Vec<(String, IpAddr, u8)>> {
        let names = self.names().await?;
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| explain_nl(e, "listing addresses", None))?;
        let mut out = Vec::new();
        for m in msgs {
            let (mut address, mut local) = (None, None);
            for a in &m.attributes {
                match a {
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    _ => {}
                }
            }
            // IPv4: IFA_LOCAL is ours (IFA_ADDRESS is the peer on point-to-point).
            if let Some(ip) = local.or(address) {
                let dev = names.get(&m.header.index).cloned().unwrap_or_default();
                out.push((dev, ip, m.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Unicast routes of the main table, IPv4 then IPv6.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        let names = self.names().await?;
        let mut out = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|e| explain_nl(e, "listing routes", None))?;
            out.extend(msgs.iter().filter_map(|m| to_route(m, &names)));
        }
        Ok(out)
    }

    /// Whether the kernel can build links of `kind`: creates and deletes a
    /// throwaway one here (call it in a lab-owned namespace).
    pub async fn supports(&self, kind: TunnelKind) -> Result<bool> {
        let name = match kind {
            TunnelKind::Gre => "glprobe-gre",
            TunnelKind::Gretap => "glprobe-gtap",
            TunnelKind::Ip6gre => "glprobe-6gre",
            TunnelKind::Ip6gretap => "glprobe-6gtap",
        };
        // Documentation addresses, so no real tunnel shares its parameters.
        let (local, remote): (IpAddr, IpAddr) = if kind.is_ipv6() {
            (
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
            )
        } else {
            (
                Ipv4Addr::new(192, 0, 2, 1).into(),
                Ipv4Addr::new(192, 0, 2, 2).into(),
            )
        };
        let end = TunnelEnd {
            name: name.to_owned(),
            netns: String::new(),
            kind,
            local,
            remote,
            ttl: 0,
            tos: 0,
            ikey: None,
            okey: None,
            checksum: false,
            sequence: false,
            pmtudisc: true,
            mtu: 1280,
        };
        self.del_link(name).await?;
        let msg = tunnel_message(&end)?;
        match self.handle.link().add(msg).execute().await {
            Ok(()) => {
                self.del_link(name).await?;
                Ok(true)
            }
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(explain_nl(
                e,
                &format!("probing {} support", kind.as_str()),
                Some(Target::Tunnel(name, kind)),
            )),
        }
    }

    /// Turns off IPv6 address generation on `name` (addrgenmode none).
    pub async fn set_addrgenmode_none(&self, name: &str) -> Result<()> {
        let spec = AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)]);
        let msg = LinkUnspec::new_with_name(name)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![spec]))
            .build();
        match self.handle.link().set(msg).execute().await {
            // No IPv6 on the device (e.g. MTU < 1280): nothing to autoconfigure.
            Err(e) if errno(&e) == Some(libc::EAFNOSUPPORT) => Ok(()),
            r => r.map_err(|e| {
                explain_nl(
                    e,
                    &format!("setting addrgenmode none on `{name}`"),
                    Some(Target::Link(name)),
                )
            }),
        }
    }

    async fn set_link(&self, msg: LinkMessage, doing: &str, target: Target<'_>) -> Result<()> {
        if let Target::Link(name) | Target::Mtu(name, _) = target {
            check_name(name, doing)?;
        }
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| explain_nl(e, doing, Some(target)))
    }

    async fn names(&self) -> Result<HashMap<u32, String>> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
    }
}

/// The RTM_NEWLINK message for a tunnel end, attributes as iproute2 sends them.
fn tunnel_message(end: &TunnelEnd) -> Result<LinkMessage> {
    let mut flags = GreIOFlags::empty();
    if end.checksum {
        flags |= GreIOFlags::Checksum;
    }
    if end.sequence {
        flags |= GreIOFlags::Seq;
    }
    // A key without the KEY flag is ignored by the kernel.
    let keyed = |key: Option<u32>| {
        if key.is_some() {
            flags | GreIOFlags::Key
        } else {
            flags
        }
    };
    let (iflags, oflags) = (keyed(end.ikey), keyed(end.okey));
    let (ikey, okey) = (end.ikey.unwrap_or(0), end.okey.unwrap_or(0));
    let name = end.name.as_str();
    let msg = match (end.kind, end.local, end.remote) {
        (TunnelKind::Gre | TunnelKind::Gretap, IpAddr::V4(local), IpAddr::V4(remote)) => {
            let data = vec![
                InfoGre::Local(local),
                InfoGre::Remote(remote),
                InfoGre::Ttl(end.ttl),
                InfoGre::Tos(end.tos),
                InfoGre::PathMTUDiscovery(end.pmtudisc),
                InfoGre::IFlags(iflags),
                InfoGre::OFlags(oflags),
                InfoGre::IKey(ikey),
                InfoGre::OKey(okey),
            ];
            if end.kind == TunnelKind::Gre {
                LinkGre::new(name)
                    .set_info_data(InfoData::GreTun(data))
                    .build()
            } else {
                LinkGre::new_gretap(name)
                    .set_info_data(InfoData::GreTap(data))
                    .build()
            }
        }
        (TunnelKind::Ip6gre | TunnelKind::Ip6gretap, IpAddr::V6(local), IpAddr::V6(remote)) => {
            let data = vec![
                InfoGre6::Local(local),
                InfoGre6::Remote(remote),
                InfoGre6::Ttl(end.ttl),
                // The traffic class sits in bits 20..28 of the flow info word.
                InfoGre6::FlowLabel(u32::from(end.tos) << 20),
                InfoGre6::Other(DefaultNla::new(
                    IFLA_GRE_FLAGS,
                    IP6_TNL_F_IGN_ENCAP_LIMIT.to_ne_bytes().to_vec(),
                )),
                InfoGre6::IFlags(iflags),
                InfoGre6::OFlags(oflags),
                InfoGre6::IKey(ikey),
                InfoGre6::OKey(okey),
            ];
            if end.kind == TunnelKind::Ip6gre {
                LinkGre6::new(name)
                    .set_info_data(InfoData::GreTun6(data))
                    .build()
            } else {
                LinkGre6::new_gretap6(name)
                    .set_info_data(InfoData::GreTap6(data))
                    .build()
            }
        }
        (kind, local, remote) => bail!(
            "a {} tunnel needs IPv{} local and remote addresses, got {local} and {remote}",
            kind.as_str(),
            if kind.is_ipv6() { 6 } else { 4 }
        ),
    };
    Ok(msg)
}

fn to_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        alias: None,
        kind: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::IfAlias(s) => link.alias = Some(s.clone()),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn to_route(m: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    let mut table = u32::from(m.header.table);
    let (mut dst, mut via, mut dev) = (None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = ip_of(d),
            RouteAttribute::Gateway(g) => via = ip_of(g),
            RouteAttribute::Via(RouteVia::Inet(v)) => via = Some((*v).into()),
            RouteAttribute::Via(RouteVia::Inet6(v)) => via = Some((*v).into()),
            RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || m.header.kind != RouteType::Unicast {
        return None;
    }
    let prefix = m.header.destination_prefix_length;
    // A zero-length prefix is the default route, however it was spelt.
    Some(Route {
        dst: dst.filter(|_| prefix > 0).map(|d| (d, prefix)),
        via,
        dev,
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The kernel's rules for interface names (dev_valid_name), checked before
/// asking so the error can say what is wrong.
fn check_name(name: &str, doing: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(error::bad_input(format!(
            "{doing}: `{name}` is not a valid interface name \
             (1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace)"
        )));
    }
    Ok(())
}

/// `lo` is always interface 1 of a network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Sets the alias (grelab's ownership mark) of `lo` in the calling thread's
/// namespace. Blocking, with no runtime: it marks a namespace the moment it
/// is made.
pub fn mark_lo(alias: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(LOOPBACK_INDEX)
        .alias(alias)
        .build();
    request_blocking(RouteNetlinkMessage::SetLink(msg))
        .map(drop)
        .with_context(|| format!("setting alias `{alias}` on `lo`"))
}

/// Interface `index` of the calling thread's namespace (blocking).
fn link_blocking(index: u32) -> Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let replies = request_blocking(RouteNetlinkMessage::GetLink(msg))?;
    Ok(replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(m) => Some(to_link(m)),
        _ => None,
    }))
}

/// The alias of `lo` in the calling thread's namespace (blocking).
pub fn lo_alias() -> Result<Option<String>> {
    Ok(link_blocking(LOOPBACK_INDEX)
        .context("reading the alias of `lo`")?
        .and_then(|l| l.alias))
}

/// The MTU of interface `index` in the calling thread's namespace (blocking).
pub fn link_mtu(index: u32) -> Result<u32> {
    link_blocking(index)
        .and_then(|l| l.context("no such interface"))
        .map(|l| l.mtu)
        .with_context(|| format!("reading the MTU of interface {index}"))
}

/// The interface index the calling thread's namespace routes `dst` out
/// of (blocking), or None when it has no route there yet.
pub fn route_oif(dst: IpAddr) -> Result<Option<u32>> {
    let mut msg = RouteMessage::default();
    let (family, len, addr) = match dst {
        IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.attributes.push(RouteAttribute::Destination(addr));
    match request_blocking(RouteNetlinkMessage::GetRoute(msg)) {
        Ok(replies) => Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewRoute(m) => m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            }),
            _ => None,
        })),
        Err(e) => match e
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.raw_os_error())
        {
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => Ok(None),
            _ => Err(e.context(format!("looking up the route to {dst}"))),
        },
    }
}

/// One request, acknowledged, on a blocking socket of the calling thread's
/// namespace: the replies before the acknowledgement.
fn request_blocking(msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    socket
        .send_to(&buf, &SocketAddr::new(0, 0), 0)
        .context("sending a netlink request")?;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().context("reading a netlink reply")?;
        let mut rest = &data[..];
        while !rest.is_empty() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| anyhow!("malformed netlink reply: {e}"))?;
            let len = (reply.header.length as usize).next_multiple_of(4);
            match reply.payload {
                NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                    return Err(std::io::Error::from_raw_os_error(-e.raw_code()).into());
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::InnerMessage(m) => replies.push(m),
                _ => {}
            }
            // deserialize checked the length against `rest`; only the last
            // message's alignment padding may be missing.
            rest = rest.get(len..).unwrap_or_default();
        }
    }
}

/// The errno of a kernel refusal, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(-m.raw_code()),
        _ => None,
    }
}

fn explain_nl(e: rtnetlink::Error, doing: &str, target: Option<Target<'_>>) -> anyhow::Error {
    match (errno(&e), target) {
        (Some(n), Some(t)) => explain(n, doing, t),
        (Some(n), None) => anyhow!("{doing}: {}", std::io::Error::from_raw_os_error(n)),
        _ => anyhow!("{doing}: {e}"),
    }
}

/// The one place where errno values become advice.
fn explain(errno: i32, doing: &str, target: Target<'_>) -> anyhow::Error {
    use Target::*;
    let raw = std::io::Error::from_raw_os_error(errno);
    let msg = |advice: &dyn Display| format!("{doing}: {advice}");
    match (errno, target) {
        (libc::EEXIST, Link(n)) => anyhow!(msg(&format_args!("interface `{n}` already exists"))),
        (libc::EEXIST, Tunnel(n, k)) => anyhow!(msg(&format_args!(
            "interface `{n}`, or another {} tunnel with the same local, remote and key, already exists",
            k.as_str()
        ))),
        (libc::EEXIST, Address(d, a)) => {
            anyhow!(msg(&format_args!("`{d}` already has address {a}")))
        }
        (libc::EEXIST, Route(..)) => anyhow!(msg(&"this route already exists")),
        (libc::EOPNOTSUPP, Tunnel(_, k)) => {
            let module = if k.is_ipv6() { "ip6_gre" } else { "ip_gre" };
            error::environment(msg(&format_args!(
                "this kernel has no {} support (module {module}): load it with \
                 `modprobe {module}`, or use `--backend userspace`",
                k.as_str()
            )))
        }
        (libc::EACCES, Address(d, IpAddr::V6(_))) => error::environment(msg(&format_args!(
            "permission denied: is IPv6 disabled on `{d}` (net.ipv6.conf.{d}.disable_ipv6)? \
             Otherwise grelab needs root (CAP_NET_ADMIN)"
        ))),
        (libc::EPERM | libc::EACCES, _) => {
            error::environment(msg(&"permission denied: grelab needs root (CAP_NET_ADMIN)"))
        }
        (libc::ENODEV, Link(n) | Tunnel(n, _) | Mtu(n, _) | Address(n, _) | Route(Some(n), _)) => {
            anyhow!(msg(&format_args!("no interface `{n}`")))
        }
        (libc::EINVAL, Mtu(n, mtu)) => {
            anyhow!(msg(&format_args!("MTU {mtu} is out of range for `{n}`")))
        }
        (libc::EINVAL, Link(n) | Tunnel(n, _)) => anyhow!(msg(&format_args!(
            "the kernel rejected it as invalid: check the interface name `{n}` \
             (1 to 15 bytes, no `/`, `:` or whitespace) and the settings"
        ))),
        (libc::ENETUNREACH, Route(_, via)) => anyhow!(msg(&format_args!(
            "gateway {via} is on no connected subnet: give an interface here an address \
             in the gateway's subnet first"
        ))),
        _ => anyhow!(msg(&raw)),
    }
}

/// Turns off transmit checksum offload on interface `name` of the calling
/// thread's namespace (SIOCETHTOOL; not netlink, but about links). A veth
/// then fills in checksums in software, as a real wire would carry them:
/// needed where grelab's userspace GRE checks the checksums a kernel GRE end
/// sent, which a veth otherwise leaves blank (checksum offload).
pub fn disable_tx_checksum(name: &str) -> Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    if name.len() >= libc::IFNAMSIZ {
        return Err(anyhow!("interface name `{name}` is too long"));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let doing = || format!("turning off transmit checksum offload on `{name}`");
    let sock = crate::sys::netns::ioctl_socket().with_context(doing)?;
    // SAFETY: `req` and `value` outlive the ioctl.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(doing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::fd::AsFd;
    use std::process::Command;
    use std::time::Instant;

    use futures::future::join_all;
    use rtnetlink::packet_core::Emitable;

    use super::*;
    use crate::sys::netns;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "rtnl tests create network namespaces and need root: run them as root (CI does)"
        );
    }

    /// A namespace of one test, deleted on drop even when the test fails.
    struct TestNs(String);

    impl TestNs {
        fn new(tag: &str) -> Self {
            require_root();
            let name = format!("gl-rtnl-{}-{tag}", std::process::id());
            netns::create(&name).unwrap_or_else(|e| panic!("creating namespace {name}: {e:#}"));
            Self(name)
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = netns::delete(&self.0);
        }
    }

    /// Runs `f` with an `Rtnl` of `ns`, on a thread inside it.
    fn run<T, F>(ns: &TestNs, f: impl FnOnce(Rtnl) -> F + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>>,
    {
        netns::run_in(&ns.0, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move { f(Rtnl::new()?).await })
        })
    }

    /// `ip -n NS ARGS...`, which must succeed.
    fn ip(ns: &TestNs, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&ns.0)
            .args(args)
            .output()
            .expect("running `ip` (iproute2 must be installed)");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The flags between `<` and `>` of `ip link show` output.
    fn link_flags(shown: &str) -> Vec<String> {
        let inner = shown
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .unwrap()
            .0;
        inner.split(',').map(str::to_owned).collect()
    }

    fn ipa(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// va0 in `a`, vb0 in `b`, both without IPv6 address generation, both up.
    fn veth_pair(a: &TestNs, b: &TestNs) {
        let peer_ns = netns::open(&b.0).unwrap();
        run(a, move |r| async move {
            r.add_veth("va0", "vb0", peer_ns.as_fd(), None, None)
                .await?;
            r.set_addrgenmode_none("va0").await?;
            r.set_up("va0", None).await
        })
        .unwrap();
        run(b, |r| async move {
            r.set_addrgenmode_none("vb0").await?;
            r.set_up("vb0", None).await
        })
        .unwrap();
    }

    fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
        links.iter().find(|l| l.name == name)
    }

    #[test]
    fn lo_is_marked_and_its_mark_read_back_without_a_runtime() {
        let a = TestNs::new("mark");
        let (before, after) = netns::run_in(&a.0, || {
            let before = lo_alias()?;
            mark_lo("grelab:marked")?;
            Ok((before, lo_alias()?))
        })
        .unwrap();
        assert_eq!(before, None);
        assert_eq!(after.as_deref(), Some("grelab:marked"));
        assert!(ip(&a, &["link", "show", "lo"]).contains("alias grelab:marked"));
        // A refusal comes back as an error, not as an empty answer.
        let err = netns::run_in(&a.0, || mark_lo(&"x".repeat(300))).unwrap_err();
        assert!(format!("{err:#}").contains("setting alias"), "{err:#}");
    }

    #[test]
    fn veth_peer_is_created_in_the_other_namespace_and_configured() {
        let (a, b) = (TestNs::new("veth-a"), TestNs::new("veth-b"));
        let peer_ns = netns::open(&b.0).unwrap();
        let (links_a, index) = run(&a, move |r| async move {
            r.add_veth("va0", "vb0", peer_ns.as_fd(), Some(1400), None)
                .await?;
            r.set_up("va0", Some("grelab:test")).await?;
            Ok((r.links().await?, r.link_index("va0").await?))
        })
        .unwrap();
        let links_b = run(&b, |r| async move { r.links().await }).unwrap();

        let va = find(&links_a, "va0").expect("va0 in its namespace");
        assert_eq!(va.index, index);
        assert_eq!(va.kind.as_deref(), Some("veth"));
        assert_eq!((va.mtu, va.up), (1400, true));
        assert_eq!(va.alias.as_deref(), Some("grelab:test"));
        assert!(
            find(&links_a, "vb0").is_none(),
            "the peer must not be left in the first namespace"
        );
        let vb = find(&links_b, "vb0").expect("vb0 in the peer namespace");
        assert_eq!(
            (vb.kind.as_deref(), vb.mtu, vb.up, vb.alias.as_deref()),
            (Some("veth"), 1400, false, None)
        );

        let shown = ip(&a, &["-d", "link", "show", "dev", "va0"]);
        assert!(shown.starts_with(&format!("{index}: va0@")), "{shown}");
        assert!(
            shown.contains("mtu 1400") && shown.contains("alias grelab:test"),
            "{shown}"
        );
        assert!(shown.contains("\n    veth "), "{shown}");
        assert!(link_flags(&shown).contains(&"UP".to_owned()), "{shown}");
        let shown_b = ip(&b, &["-d", "link", "show", "dev", "vb0"]);
        assert!(
            shown_b.contains("mtu 1400") && shown_b.contains("\n    veth "),
            "{shown_b}"
        );
        assert!(
            !link_flags(&shown_b).contains(&"UP".to_owned()),
            "{shown_b}"
        );

        run(&a, |r| async move {
            r.set_mtu("va0", 1300).await?;
            r.set_down("va0").await
        })
        .unwrap();
        let shown = ip(&a, &["link", "show", "dev", "va0"]);
        assert!(shown.contains("mtu 1300"), "{shown}");
        assert!(!link_flags(&shown).contains(&"UP".to_owned()), "{shown}");

        // Deleting one end removes both; deleting again is fine.
        let links_a = run(&a, |r| async move {
            r.del_link("va0").await?;
            r.del_link("va0").await?;
            r.links().await
        })
        .unwrap();
        assert!(find(&links_a, "va0").is_none());
        let links_b = run(&b, |r| async move { r.links().await }).unwrap();
        assert!(find(&links_b, "vb0").is_none());
        let err = run(&a, |r| async move { r.link_index("va0").await }).unwrap_err();
        assert_eq!(err.to_string(), "no interface `va0`");
    }

    #[test]
    fn existing_names_are_named_in_the_error() {
        let (a, b) = (TestNs::new("eexist-a"), TestNs::new("eexist-b"));
        veth_pair(&a, &b);
        let peer_ns = netns::open(&b.0).unwrap();
        let (here, there, links) = run(&a, move |r| async move {
            let here = r
                .add_veth("va0", "vz0", peer_ns.as_fd(), None, None)
                .await
                .unwrap_err();
            let there = r
                .add_veth("vq0", "vb0", peer_ns.as_fd(), None, None)
                .await
                .unwrap_err();
            Ok((here, there, r.links().await?))
        })
        .unwrap();
        assert_eq!(
            here.to_string(),
            "creating veth `va0` with peer `vz0`: interface `va0` already exists"
        );
        assert_eq!(
            there.to_string(),
            "creating veth `vq0` with peer `vb0`: interface `vb0` already exists"
        );
        assert!(
            find(&links, "vq0").is_none(),
            "a failed veth must leave nothing behind"
        );
    }

    #[test]
    fn a_16_byte_name_is_rejected_clearly() {
        let (a, b) = (TestNs::new("name-a"), TestNs::new("name-b"));
        let peer_ns = netns::open(&b.0).unwrap();
        let (err, links) = run(&a, move |r| async move {
            let err = r
                .add_veth("abcdefghijklmnop", "ok0", peer_ns.as_fd(), None, None)
                .await
                .unwrap_err();
            Ok((err, r.links().await?))
        })
        .unwrap();
        assert_eq!(
            err.to_string(),
            "creating veth `abcdefghijklmnop` with peer `ok0`: `abcdefghijklmnop` is not a valid \
             interface name (1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace)"
        );
        assert_eq!(error::exit_code(&err), 2);
        assert_eq!(links.len(), 1, "only lo: {links:?}");
        let err = run(&a, |r| async move { r.set_up("a/b", None).await }).unwrap_err();
        assert!(
            err.to_string()
                .contains("`a/b` is not a valid interface name"),
            "{err}"
        );
    }

    /// (dev, address, prefix) of `ip -o addr` output.
    fn parse_ip_addr(out: &str) -> HashSet<(String, IpAddr, u8)> {
        out.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let dev = f[1].split('@').next().unwrap().to_owned();
                let (addr, prefix) = f[3].split_once('/').unwrap();
                (dev, ipa(addr), prefix.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn addresses_v4_and_v6_without_dad_match_iproute2() {
        let (a, b) = (TestNs::new("addr-a"), TestNs::new("addr-b"));
        veth_pair(&a, &b);
        let got = run(&a, |r| async move {
            r.add_address("va0", ipa("172.16.10.2"), 24).await?;
            r.add_address("va0", ipa("fd00:10::2"), 64).await?;
            r.addresses().await
        })
        .unwrap();
        let got: HashSet<_> = got.into_iter().collect();
        assert!(
            got.contains(&("va0".to_owned(), ipa("172.16.10.2"), 24)),
            "{got:?}"
        );
        assert!(
            got.contains(&("va0".to_owned(), ipa("fd00:10::2"), 64)),
            "{got:?}"
        );
        // addrgenmode none: no link-local address although the link is up.
        assert!(
            !got.iter()
                .any(|(_, ip, _)| ip.to_string().starts_with("fe80")),
            "{got:?}"
        );
        assert_eq!(got, parse_ip_addr(&ip(&a, &["-o", "addr", "show"])));

        let v6 = ip(&a, &["-o", "-6", "addr", "show", "dev", "va0"]);
        assert!(v6.contains("fd00:10::2/64") && v6.contains("nodad"), "{v6}");
        assert!(!v6.contains("tentative"), "{v6}");
        let shown = ip(&a, &["-d", "link", "show", "dev", "va0"]);
        assert!(shown.contains("addrgenmode none"), "{shown}");

        let err = run(&a, |r| async move {
            r.add_address("va0", ipa("172.16.10.2"), 24).await
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "adding address 172.16.10.2/24 to `va0`: `va0` already has address 172.16.10.2"
        );
        let err = run(&a, |r| async move {
            r.add_address("nope0", ipa("10.0.0.1"), 8).await
        })
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "adding address 10.0.0.1/8 to `nope0`: no interface `nope0`"
        );
    }

    #[test]
    fn fifty_addresses_added_concurrently() {
        let (a, b) = (TestNs::new("many-a"), TestNs::new("many-b"));
        veth_pair(&a, &b);
        let (results, got, took) = run(&a, |r| async move {
            let start = Instant::now();
            let adds = (1..=50u8).map(|i| r.add_address("va0", IpAddr::from([172, 16, 50, i]), 24));
            let results = join_all(adds).await;
            let took = start.elapsed();
            Ok((results, r.addresses().await?, took))
        })
        .unwrap();
        eprintln!("50 concurrent add_address took {took:?}");
        for r in &results {
            assert!(r.is_ok(), "{r:?}");
        }
        let mine: HashSet<IpAddr> = got
            .iter()
            .filter(|(d, _, _)| d == "va0")
            .map(|(_, ip, _)| *ip)
            .collect();
        let want: HashSet<IpAddr> = (1..=50u8).map(|i| IpAddr::from([172, 16, 50, i])).collect();
        assert_eq!(mine, want);
        assert_eq!(
            ip(&a, &["-o", "-4", "addr", "show", "dev", "va0"])
                .lines()
                .count(),
            50
        );
    }

    /// The routes of `ip -o [-6] route show` output.
    fn parse_ip_route(out: &str, host_prefix: u8) -> HashSet<Route> {
        out.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let after = |key: &str| f.iter().position(|w| *w == key).map(|i| f[i + 1]);
                let dst = match f[0] {
                    "default" => None,
                    d => Some(match d.split_once('/') {
                        Some((a, p)) => (ipa(a), p.parse().unwrap()),
                        None => (ipa(d), host_prefix),
                    }),
                };
                Route {
                    dst,
                    via: after("via").map(ipa),
                    dev: after("dev").map(str::to_owned),
                }
            })
            .collect()
    }

    #[test]
    fn default_and_prefix_routes_v4_v6_match_iproute2() {
        let (a, b) = (TestNs::new("route-a"), TestNs::new("route-b"));
        veth_pair(&a, &b);
        let (got, unreachable) = run(&a, |r| async move {
            r.add_address("va0", ipa("172.16.10.2"), 24).await?;
            r.add_address("va0", ipa("fd00:10::2"), 64).await?;
            r.add_route(Some((ipa("10.99.0.0"), 16)), ipa("172.16.10.1"), None)
                .await?;
            r.add_route(None, ipa("172.16.10.1"), Some("va0")).await?;
            r.add_route(Some((ipa("fd00:99::"), 48)), ipa("fd00:10::1"), None)
                .await?;
            r.add_route(None, ipa("fd00:10::1"), Some("va0")).await?;
            let unreachable = r
                .add_route(None, ipa("192.168.77.1"), None)
                .await
                .unwrap_err();
            Ok((r.routes().await?, unreachable))
        })
        .unwrap();
        let got: HashSet<Route> = got.into_iter().collect();
        let route = |dst: Option<(&str, u8)>, via: &str| Route {
            dst: dst.map(|(a, p)| (ipa(a), p)),
            via: Some(ipa(via)),
            dev: Some("va0".to_owned()),
        };
        for want in [
            route(Some(("10.99.0.0", 16)), "172.16.10.1"),
            route(None, "172.16.10.1"),
            route(Some(("fd00:99::", 48)), "fd00:10::1"),
            route(None, "fd00:10::1"),
            Route {
                dst: Some((ipa("172.16.10.0"), 24)),
                via: None,
                dev: Some("va0".to_owned()),
            },
        ] {
            assert!(got.contains(&want), "{want:?} missing from {got:?}");
        }
        let mut shown = parse_ip_route(&ip(&a, &["-o", "route", "show"]), 32);
        shown.extend(parse_ip_route(&ip(&a, &["-o", "-6", "route", "show"]), 128));
        assert_eq!(got, shown);

        assert_eq!(
            unreachable.to_string(),
            "adding route default via 192.168.77.1: gateway 192.168.77.1 is on no connected \
             subnet: give an interface here an address in the gateway's subnet first"
        );
    }

    fn tunnel_end(kind: TunnelKind) -> TunnelEnd {
        let (local, remote) = if kind.is_ipv6() {
            (ipa("fd00:77::1"), ipa("fd00:77::2"))
        } else {
            (ipa("10.77.0.1"), ipa("10.77.0.2"))
        };
        TunnelEnd {
            name: format!("t-{}", kind.as_str()),
            netns: String::new(),
            kind,
            local,
            remote,
            ttl: 64,
            tos: 0x20,
            ikey: Some(42),
            okey: Some(43),
            checksum: true,
            sequence: true,
            pmtudisc: kind != TunnelKind::Gretap,
            mtu: 1400,
        }
    }

    const KINDS: [TunnelKind; 4] = [
        TunnelKind::Gre,
        TunnelKind::Gretap,
        TunnelKind::Ip6gre,
        TunnelKind::Ip6gretap,
    ];

    /// Holds on any kernel: with GRE, the link carries every attribute
    /// (checked through `ip -d`); without, the error is the advice.
    #[test]
    fn tunnels_follow_what_the_kernel_supports() {
        let ns = TestNs::new("gre");
        for kind in KINDS {
            let end = tunnel_end(kind);
            let (local, remote) = (end.local.to_string(), end.remote.to_string());
            // iproute2 is the independent witness of kernel support.
            let probe = Command::new("ip")
                .args([
                    "-n",
                    &ns.0,
                    "link",
                    "add",
                    "glt-witness",
                    "type",
                    kind.as_str(),
                ])
                .args(["local", &local, "remote", &remote])
                .output()
                .unwrap();
            let kernel_has = probe.status.success();
            if kernel_has {
                ip(&ns, &["link", "del", "glt-witness"]);
            }
            let e = end.clone();
            let (supported, added, links) = run(&ns, move |r| async move {
                Ok((
                    r.supports(kind).await?,
                    r.add_tunnel(&e).await,
                    r.links().await?,
                ))
            })
            .unwrap();
            assert_eq!(supported, kernel_has, "supports({kind:?})");
            assert!(
                !links.iter().any(|l| l.name.starts_with("glprobe")),
                "probe left: {links:?}"
            );
            if !kernel_has {
                let err = added.unwrap_err();
                let module = if kind.is_ipv6() { "ip6_gre" } else { "ip_gre" };
                assert_eq!(
                    err.to_string(),
                    format!(
                        "creating {} tunnel `{}` ({local} -> {remote}): this kernel has no {} \
                         support (module {module}): load it with `modprobe {module}`, or use \
                         `--backend userspace`",
                        kind.as_str(),
                        end.name,
                        kind.as_str()
                    )
                );
                assert_eq!(error::exit_code(&err), 3);
                assert!(find(&links, &end.name).is_none());
                continue;
            }
            added.unwrap();
            let link = find(&links, &end.name).expect("the tunnel link");
            assert_eq!(
                (link.kind.as_deref(), link.mtu),
                (Some(kind.as_str()), 1400)
            );
            let shown = ip(&ns, &["-d", "link", "show", "dev", &end.name]);
            let mut want = vec![
                format!("{} remote {remote} local {local} ", kind.as_str()),
                "iseq oseq icsum ocsum".to_owned(),
                "addrgenmode none".to_owned(),
                "mtu 1400".to_owned(),
            ];
            if kind.is_ipv6() {
                want.extend([
                    "hoplimit 64".into(),
                    "encaplimit none".into(),
                    "tclass 0x20".into(),
                ]);
            } else {
                want.extend(["ttl 64".into(), "tos 0x20".into()]);
            }
            for w in want {
                assert!(shown.contains(&w), "`{w}` missing from:\n{shown}");
            }
            // iproute2 prints a key dotted (`ip link`) or as a number (newer).
            for (dir, key) in [("ikey", 42), ("okey", 43)] {
                let dotted = format!("{dir} 0.0.0.{key} ");
                assert!(
                    shown.contains(&dotted) || shown.contains(&format!("{dir} {key} ")),
                    "{shown}"
                );
            }
            assert_eq!(
                shown.contains("nopmtudisc"),
                kind == TunnelKind::Gretap,
                "{shown}"
            );
            // Up, it still gets no IPv6 link-local address (addrgenmode none).
            let name = end.name.clone();
            let addrs = run(&ns, move |r| async move {
                r.set_up(&name, None).await?;
                let addrs = r.addresses().await?;
                r.del_link(&name).await?;
                Ok(addrs)
            })
            .unwrap();
            assert!(!addrs.iter().any(|(d, _, _)| *d == end.name), "{addrs:?}");
        }
    }

    /// The raw attribute bytes of `msg` contain `nla` (len, type, value).
    fn has_nla(msg: &LinkMessage, kind: u16, value: &[u8]) -> bool {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        let mut nla = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        nla.extend(kind.to_ne_bytes());
        nla.extend(value);
        buf.windows(nla.len()).any(|w| w == nla)
    }

    #[test]
    fn gre_attributes_are_encoded_as_the_kernel_reads_them() {
        let m = tunnel_message(&tunnel_end(TunnelKind::Gre)).unwrap();
        // IFLAGS/OFLAGS are __be16 GRE header bits: CSUM|KEY|SEQ = 0xb000.
        assert!(has_nla(&m, 2, &[0xb0, 0x00]) && has_nla(&m, 3, &[0xb0, 0x00]));
        assert!(has_nla(&m, 4, &[0, 0, 0, 42]) && has_nla(&m, 5, &[0, 0, 0, 43]));
        assert!(has_nla(&m, 6, &[10, 77, 0, 1]) && has_nla(&m, 7, &[10, 77, 0, 2]));
        assert!(has_nla(&m, 8, &[64]) && has_nla(&m, 9, &[0x20]) && has_nla(&m, 10, &[1]));
        assert!(has_nla(&m, 1, b"gre\0") || has_nla(&m, 1, b"gre"));

        // No key: no KEY flag either; no checksum/sequence: no flags at all.
        let mut plain = tunnel_end(TunnelKind::Gretap);
        (plain.ikey, plain.okey, plain.checksum, plain.sequence) = (None, Some(7), false, false);
        let m = tunnel_message(&plain).unwrap();
        assert!(has_nla(&m, 2, &[0, 0]) && has_nla(&m, 3, &[0x20, 0x00]));
        assert!(has_nla(&m, 10, &[0]));

        let m = tunnel_message(&tunnel_end(TunnelKind::Ip6gre)).unwrap();
        assert!(has_nla(&m, 2, &[0xb0, 0x00]) && has_nla(&m, 4, &[0, 0, 0, 42]));
        assert!(has_nla(&m, 13, &IP6_TNL_F_IGN_ENCAP_LIMIT.to_ne_bytes()));
        assert!(
            has_nla(&m, 12, &[0x02, 0, 0, 0]),
            "tclass 0x20 in the flow info word"
        );
        assert!(has_nla(&m, 8, &[64]));
        let local: Ipv6Addr = "fd00:77::1".parse().unwrap();
        assert!(has_nla(&m, 6, &local.octets()));

        let mut wrong = tunnel_end(TunnelKind::Ip6gretap);
        wrong.local = ipa("10.0.0.1");
        let err = tunnel_message(&wrong).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a ip6gretap tunnel needs IPv6 local and remote addresses, got 10.0.0.1 and fd00:77::2"
        );
    }

    #[test]
    fn errno_values_become_advice() {
        let e = |n, t| explain(n, "doing it", t).to_string();
        assert_eq!(
            e(libc::EEXIST, Target::Link("v0")),
            "doing it: interface `v0` already exists"
        );
        assert_eq!(
            e(libc::ENODEV, Target::Mtu("v0", 9000)),
            "doing it: no interface `v0`"
        );
        assert_eq!(
            e(libc::EINVAL, Target::Mtu("v0", 9)),
            "doing it: MTU 9 is out of range for `v0`"
        );
        assert!(e(libc::EINVAL, Target::Link("v0")).contains("check the interface name `v0`"));
        let root = explain(libc::EPERM, "doing it", Target::Link("v0"));
        assert_eq!(
            root.to_string(),
            "doing it: permission denied: grelab needs root (CAP_NET_ADMIN)"
        );
        assert_eq!(error::exit_code(&root), 3);
        assert!(e(libc::EACCES, Target::Address("v0", ipa("::1"))).contains("disable_ipv6"));
        assert!(
            e(libc::EOPNOTSUPP, Target::Tunnel("t", TunnelKind::Ip6gre))
                .contains("modprobe ip6_gre")
        );
        assert!(
            e(libc::ENETUNREACH, Target::Route(None, ipa("10.0.0.1")))
                .contains("no connected subnet")
        );
        assert_eq!(
            e(libc::ENOBUFS, Target::Link("v0")),
            format!(
                "doing it: {}",
                std::io::Error::from_raw_os_error(libc::ENOBUFS)
            )
        );
    }

    #[test]
    fn new_outside_a_runtime_is_an_error() {
        let err = Rtnl::new().err().expect("an error, not a connection");
        assert!(
            err.to_string().contains("not inside a tokio runtime"),
            "{err}"
        );
    }
}
