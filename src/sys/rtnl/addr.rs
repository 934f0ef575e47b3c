//! Addresses: adding one (IPv6 without DAD), listing them all.

use std::net::IpAddr;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};

use super::{Rtnl, Target, explain_nl};
use crate::error;

impl Rtnl {
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

    /// Removes `addr/prefix` from `name`; an address or device that is gone
    /// is fine.
    pub async fn del_address(&self, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let doing = format!("removing address {addr}/{prefix} from `{name}`");
        let index = match self.link_index(name).await {
            Ok(i) => i,
            // Its device is gone, and the address with it.
            Err(_) => return Ok(()),
        };
        // The message that added it names it for deletion too.
        let mut add = self.handle.address().add(index, addr, prefix);
        let msg = add.message_mut().clone();
        match self.handle.address().del(msg).execute().await {
            Err(e) if super::errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r.map_err(|e| explain_nl(e, &doing, Some(Target::Address(name, addr)))),
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
}

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use futures::future::join_all;

    use super::super::fixture::{TestNs, ip, ipa, run, veth_pair};
    use super::*;

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
}
