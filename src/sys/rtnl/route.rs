//! Routes: adding one, listing the main table, asking where a destination
//! goes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use super::{Rtnl, Target, explain_nl, request_blocking};
use crate::error;

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

impl Rtnl {
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
        let mut b = route_builder(dst, via, &doing)?;
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

    /// Adds or replaces the route to `dst` (`None`: default): now via `via`.
    /// Applying it twice is the same as once.
    pub async fn replace_route(&self, dst: Option<(IpAddr, u8)>, via: IpAddr) -> Result<()> {
        let shown = dst.map_or_else(|| "default".to_owned(), |(a, p)| format!("{a}/{p}"));
        let doing = format!("replacing route {shown} via {via}");
        let msg = route_message(dst, via, &doing)?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Route(None, via))))
    }

    /// Deletes the route to `dst` via `via`; one that is gone is fine.
    pub async fn del_route(&self, dst: Option<(IpAddr, u8)>, via: IpAddr) -> Result<()> {
        let shown = dst.map_or_else(|| "default".to_owned(), |(a, p)| format!("{a}/{p}"));
        let doing = format!("deleting route {shown} via {via}");
        let msg = route_message(dst, via, &doing)?;
        match self.handle.route().del(msg).execute().await {
            Err(e) if super::errno(&e) == Some(libc::ESRCH) => Ok(()),
            r => r.map_err(|e| explain_nl(e, &doing, Some(Target::Route(None, via)))),
        }
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

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use std::collections::HashSet;

    use super::super::fixture::{TestNs, ip, ipa, run, veth_pair};
    use super::*;

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
}

/// The message of a route to `dst` via `via`, for replacing or deleting it.
fn route_message(dst: Option<(IpAddr, u8)>, via: IpAddr, doing: &str) -> Result<RouteMessage> {
    Ok(route_builder(dst, via, doing)?.build())
}

/// A route to `dst` (None: the default) via `via`, to build on.
fn route_builder(
    dst: Option<(IpAddr, u8)>,
    via: IpAddr,
    doing: &str,
) -> Result<RouteMessageBuilder<IpAddr>> {
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
    Ok(b)
}
