//! Kernel GRE links (gre, gretap, ip6gre, ip6gretap) from resolved tunnel
//! ends, and the probe for which of them this kernel can build.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use netlink_packet_route::link::{GreIOFlags, InfoData, InfoGre, InfoGre6, LinkMessage};
use rtnetlink::packet_core::DefaultNla;
use rtnetlink::{LinkGre, LinkGre6};

use super::{Rtnl, Target, check_name, errno, explain_nl};
use crate::error;
use crate::model::{TunnelEnd, TunnelKind};

/// IFLA_GRE_FLAGS: ip6_tnl flags (u32); the crate has no typed variant for it.
const IFLA_GRE_FLAGS: u16 = 13;
/// No Tunnel Encapsulation Limit option: the outer header is a bare 40-byte IPv6 header.
const IP6_TNL_F_IGN_ENCAP_LIMIT: u32 = 0x1;

impl Rtnl {
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

    /// Whether the kernel can build links of `kind`: creates and deletes a
    /// throwaway one here (call it in a lab-owned namespace).
    pub async fn supports(&self, kind: TunnelKind) -> Result<bool> {
        let name = match kind {
            TunnelKind::Gre => "glprobe-gre",
            TunnelKind::Gretap => "glprobe-gtap",
            TunnelKind::Ip6gre => "glprobe-6gre",
            TunnelKind::Ip6gretap => "glprobe-6gtap",
        };
        let end = probe_end(name, kind);
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
}

/// The throwaway tunnel end of [`Rtnl::supports`], between documentation
/// addresses so that no real tunnel shares its parameters.
fn probe_end(name: &str, kind: TunnelKind) -> TunnelEnd {
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
    TunnelEnd {
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

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::Emitable;

    use super::*;

    fn ipa(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A tunnel end with every option set (keys, checksum, sequence, TTL, TOS).
    pub(super) fn tunnel_end(kind: TunnelKind) -> TunnelEnd {
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
}

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use std::process::Command;

    use super::super::fixture::{TestNs, find, ip, run};
    use super::tests::tunnel_end;
    use super::*;

    const KINDS: [TunnelKind; 4] = [
        TunnelKind::Gre,
        TunnelKind::Gretap,
        TunnelKind::Ip6gre,
        TunnelKind::Ip6gretap,
    ];

    /// Whether this kernel builds `kind` links, by iproute2 (the independent
    /// witness of kernel support).
    fn kernel_has(ns: &TestNs, end: &TunnelEnd) -> bool {
        let (local, remote) = (end.local.to_string(), end.remote.to_string());
        let probe = Command::new("ip")
            .args(["-n", &ns.0, "link", "add", "glt-witness", "type"])
            .arg(end.kind.as_str())
            .args(["local", &local, "remote", &remote])
            .output()
            .unwrap();
        if probe.status.success() {
            ip(ns, &["link", "del", "glt-witness"]);
        }
        probe.status.success()
    }

    /// What `ip -d link show` must say of the tunnel link of `end`.
    fn shown_attributes(end: &TunnelEnd) -> Vec<String> {
        let kind = end.kind;
        let mut want = vec![
            format!(
                "{} remote {} local {} ",
                kind.as_str(),
                end.remote,
                end.local
            ),
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
        want
    }

    /// Holds on any kernel: with GRE, the link carries every attribute
    /// (checked through `ip -d`); without, the error is the advice.
    #[test]
    fn tunnels_follow_what_the_kernel_supports() {
        let ns = TestNs::new("gre");
        for kind in KINDS {
            let end = tunnel_end(kind);
            let (local, remote) = (end.local, end.remote);
            let kernel_has = kernel_has(&ns, &end);
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
            for w in shown_attributes(&end) {
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
}
