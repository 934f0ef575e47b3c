//! Bridges: kernel L2 switches in a namespace, their ports, and the
//! MULTICAST flag of any link (tunnel devices need it for routing daemons).

use anyhow::Result;
use netlink_packet_route::link::InfoBridge;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};

use super::{Rtnl, Target, check_name, explain_nl};

impl Rtnl {
    /// Bridge `name`, down, with MAC address `mac` and, if given, MTU `mtu`
    /// (else the kernel keeps it at its smallest port's). Multicast snooping
    /// is off: the bridge floods multicast to every port, as a lab expects
    /// without an IGMP querier on the segment.
    pub async fn add_bridge(&self, name: &str, mtu: Option<u32>, mac: [u8; 6]) -> Result<()> {
        let doing = format!("creating bridge `{name}`");
        check_name(name, &doing)?;
        // While one namespace's request loads the bridge module, the same
        // request in another may find no bridge kind yet (EOPNOTSUPP): it is
        // asked again once the module has had a moment.
        let mut tries = 0;
        loop {
            let msg = LinkMessageBuilder::<LinkBridge>::new(name)
                .address(mac.to_vec())
                .append_info_data(InfoBridge::MulticastSnooping(false))
                .build();
            match self.handle.link().add(msg).execute().await {
                Ok(()) => break,
                Err(rtnetlink::Error::NetlinkError(m))
                    if m.raw_code() == -libc::EOPNOTSUPP && tries < 40 =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(explain_nl(e, &doing, Some(Target::Link(name)))),
            }
        }
        // Separately: an MTU given at creation gives way to the ports' as
        // they join; one set afterwards stays (the kernel marks it the user's).
        if let Some(mtu) = mtu
            && let Err(e) = self.set_mtu(name, mtu).await
        {
            let _ = self.del_link(name).await;
            return Err(e);
        }
        Ok(())
    }

    /// Makes `dev` a port of bridge `master`.
    pub async fn set_master(&self, dev: &str, master: &str) -> Result<()> {
        let doing = format!("making `{dev}` a port of bridge `{master}`");
        check_name(master, &doing)?;
        let index = self
            .link_index(master)
            .await
            .map_err(|e| e.context(doing.clone()))?;
        let msg = LinkUnspec::new_with_name(dev).controller(index).build();
        self.set_link(msg, &doing, Target::Link(dev)).await
    }

    /// Takes `dev` out of the bridge it is a port of.
    pub async fn set_nomaster(&self, dev: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(dev).nocontroller().build();
        let doing = format!("taking `{dev}` out of its bridge");
        self.set_link(msg, &doing, Target::Link(dev)).await
    }

    /// Turns the MULTICAST flag (IFF_MULTICAST) of `dev` on or off.
    pub async fn set_multicast(&self, dev: &str, on: bool) -> Result<()> {
        let msg = LinkUnspec::new_with_name(dev).multicast(on).build();
        let doing = format!(
            "turning multicast {} on `{dev}`",
            if on { "on" } else { "off" }
        );
        self.set_link(msg, &doing, Target::Link(dev)).await
    }
}

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use super::super::fixture::{TestNs, ip, link_flags, run, veth_pair};

    #[test]
    fn a_bridge_takes_its_ports_its_mac_and_its_mtu_and_snoops_no_multicast() {
        let (a, b) = (TestNs::new("br-a"), TestNs::new("br-b"));
        veth_pair(&a, &b);
        let mac = [0x02, 0, 0, 0, 0xbb, 0x01];
        run(&a, move |r| async move {
            r.add_bridge("br0", Some(1400), mac).await?;
            r.set_master("va0", "br0").await?;
            r.set_up("br0", None).await
        })
        .unwrap();
        let shown = ip(&a, &["-d", "link", "show", "dev", "br0"]);
        assert!(shown.contains("link/ether 02:00:00:00:bb:01"), "{shown}");
        assert!(shown.contains("mtu 1400"), "{shown}");
        assert!(shown.contains("mcast_snooping 0"), "{shown}");
        assert!(link_flags(&shown).contains(&"UP".to_owned()), "{shown}");
        let port = ip(&a, &["link", "show", "dev", "va0"]);
        assert!(port.contains("master br0"), "{port}");

        let err = run(&a, |r| async move { r.set_master("va0", "nobr").await }).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("making `va0` a port of bridge `nobr`"),
            "{err:#}"
        );
        assert!(
            format!("{err:#}").contains("no interface `nobr`"),
            "{err:#}"
        );
        let err = run(
            &a,
            move |r| async move { r.add_bridge("br0", None, mac).await },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "creating bridge `br0`: interface `br0` already exists"
        );
    }

    #[test]
    fn the_multicast_flag_goes_on_and_off() {
        let (a, b) = (TestNs::new("mc-a"), TestNs::new("mc-b"));
        veth_pair(&a, &b);
        let flags = || link_flags(&ip(&a, &["link", "show", "dev", "va0"]));
        assert!(
            flags().contains(&"MULTICAST".to_owned()),
            "veths start with it"
        );
        run(&a, |r| async move { r.set_multicast("va0", false).await }).unwrap();
        assert!(!flags().contains(&"MULTICAST".to_owned()), "{:?}", flags());
        run(&a, |r| async move { r.set_multicast("va0", true).await }).unwrap();
        assert!(flags().contains(&"MULTICAST".to_owned()), "{:?}", flags());
        let err = run(&a, |r| async move { r.set_multicast("nope0", true).await }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "turning multicast on on `nope0`: no interface `nope0`"
        );
    }
}
