//! Links: listing, veth pairs, up and down, MTU, the ownership mark on
//! `lo`, IPv6 address generation, deletion.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use rtnetlink::{LinkUnspec, LinkVeth};

use super::{Rtnl, Target, check_name, errno, explain_nl, request_blocking};

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

impl Rtnl {
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

    /// Deletes link `name`; a link that does not exist is fine.
    pub async fn del_link(&self, name: &str) -> Result<()> {
        let doing = format!("deleting interface `{name}`");
        check_name(name, &doing)?;
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(|e| explain_nl(e, &doing, Some(Target::Link(name)))),
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

    pub(super) async fn set_link(
        &self,
        msg: LinkMessage,
        doing: &str,
        target: Target<'_>,
    ) -> Result<()> {
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

    /// Interface names by index, to name the devices of addresses and routes.
    pub(super) async fn names(&self) -> Result<HashMap<u32, String>> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
    }
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

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use std::os::fd::AsFd;

    use super::super::fixture::{TestNs, find, ip, link_flags, run, veth_pair};
    use super::*;
    use crate::error;
    use crate::sys::netns;

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
        // The topology's rule and words (validate::iface_name_problem).
        assert_eq!(
            err.to_string(),
            "creating veth `abcdefghijklmnop` with peer `ok0`: interface name \
             `abcdefghijklmnop` is 16 bytes; Linux allows 15"
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
}
