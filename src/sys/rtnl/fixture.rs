//! What rtnl's root tests share: a namespace per test (`sys::testns`),
//! deleted even when the test fails, an `Rtnl` inside it, and iproute2 as
//! the witness.

use std::net::IpAddr;
use std::os::fd::AsFd;

use anyhow::Result;

use super::{Link, Rtnl};
use crate::sys::netns;

pub(super) use crate::sys::testns::TestNs;

/// Runs `f` with an `Rtnl` of `ns`, on a thread inside it.
pub(super) fn run<T, F>(ns: &TestNs, f: impl FnOnce(Rtnl) -> F + Send + 'static) -> Result<T>
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
pub(super) fn ip(ns: &TestNs, args: &[&str]) -> String {
    crate::sys::testns::ip_args(&ns.0, args)
}

/// The flags between `<` and `>` of `ip link show` output.
pub(super) fn link_flags(shown: &str) -> Vec<String> {
    let inner = shown
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .unwrap()
        .0;
    inner.split(',').map(str::to_owned).collect()
}

pub(super) fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// va0 in `a`, vb0 in `b`, both without IPv6 address generation, both up.
pub(super) fn veth_pair(a: &TestNs, b: &TestNs) {
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

pub(super) fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.name == name)
}
