//! Phase 3 of `up`, per namespace: kernel tunnels, multicast flags,
//! bridges and their ports, checksum offload, sysctls, addresses, links up (and marked), neighbours, routes. Each
//! namespace's work is one [`Configure`] job, run inside it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use futures::future::try_join_all;

use crate::model::Backend;
use crate::model::TunnelEnd;
use crate::plan::{Plan, Step};
use crate::sys::rtnl::Rtnl;

/// Each namespace of a plan by its position in `plan.namespaces()`.
pub(super) struct Slots<'a>(HashMap<&'a str, usize>);

impl<'a> Slots<'a> {
    pub(super) fn new(plan: &'a Plan) -> Self {
        Slots(
            plan.namespaces()
                .enumerate()
                .map(|(i, ns)| (ns, i))
                .collect(),
        )
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, ns: &str) -> Result<usize> {
        self.0
            .get(ns)
            .copied()
            .ok_or_else(|| anyhow!("no namespace `{ns}` in the plan"))
    }
}

/// One namespace's phase-3 work.
#[derive(Debug, Clone, Default)]
pub(super) struct Configure {
    steps: Vec<Step>,
    /// Veths whose transmit checksum offload must be off.
    no_tx_csum: Vec<String>,
    /// Veths with IPv6 addresses: they get a link-local address, usable at
    /// once (no DAD) since a router solicits neighbours from it; addresses
    /// are added with `nodad` likewise.
    ipv6: Vec<String>,
}

impl Configure {
    /// Whether the job does nothing (a reconcile skips such namespaces).
    pub(super) fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.no_tx_csum.is_empty() && self.ipv6.is_empty()
    }
}

/// The phase-3 job of every namespace of `plan`, in its order, given the
/// backend chosen for each tunnel end.
pub(super) fn jobs(plan: &Plan, ends: &[(TunnelEnd, Backend)]) -> Result<Vec<(String, Configure)>> {
    let slots = Slots::new(plan);
    let mut jobs: Vec<Configure> = vec![Configure::default(); slots.len()];
    for (end, b) in ends {
        if *b == Backend::Kernel {
            jobs[slots.get(&end.netns)?].steps.push(Step::Tunnel {
                end: end.clone(),
                backend: Backend::Kernel,
            });
        }
    }
    let v6_ifaces: HashSet<(&str, &str)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Address { ns, dev, addr } if addr.addr.is_ipv6() => {
                Some((ns.as_str(), dev.as_str()))
            }
            _ => None,
        })
        .collect();
    // Where a userspace end checks GRE checksums, the veths leading to its
    // node must carry real checksums (see ethtool::disable_tx_checksum).
    let csum_ns: Vec<&str> = ends
        .iter()
        .filter(|(e, b)| *b == Backend::Userspace && e.checksum)
        .map(|(e, _)| e.netns.as_str())
        .collect();
    for step in &plan.steps {
        match step {
            Step::Namespace { .. } | Step::Tunnel { .. } => {}
            Step::Veth {
                ns,
                name,
                peer_ns,
                peer,
                ..
            } => {
                // Only veths with IPv6 addresses get a link-local one (see
                // init_namespace).
                for (n, dev) in [(ns, name), (peer_ns, peer)] {
                    if v6_ifaces.contains(&(n.as_str(), dev.as_str())) {
                        jobs[slots.get(n)?].ipv6.push(dev.clone());
                    }
                }
                if csum_ns.contains(&peer_ns.as_str()) {
                    jobs[slots.get(ns)?].no_tx_csum.push(name.clone());
                }
                if csum_ns.contains(&ns.as_str()) {
                    jobs[slots.get(peer_ns)?].no_tx_csum.push(peer.clone());
                }
            }
            s => jobs[slots.get(s.ns())?].steps.push(s.clone()),
        }
    }
    Ok(plan.namespaces().map(str::to_owned).zip(jobs).collect())
}

/// One namespace's configuration, independent requests in flight together.
pub(super) async fn configure(rtnl: &Rtnl, mark: &str, job: &Configure) -> Result<()> {
    let steps = &job.steps;
    // In plan order: a tunnel device (the dataplane's, made in phase 2, or
    // the kernel's, made here) exists before its flag is set or it joins a
    // bridge, and a bridge before its ports.
    for s in steps {
        match s {
            Step::Tunnel { end, .. } => rtnl.add_tunnel(end).await?,
            Step::Multicast { dev, on, .. } => rtnl.set_multicast(dev, *on).await?,
            Step::Bridge { name, mtu, mac, .. } => rtnl.add_bridge(name, *mtu, mac.0).await?,
            Step::Master { dev, master, .. } => rtnl.set_master(dev, master).await?,
            _ => {}
        }
    }
    for dev in &job.no_tx_csum {
        crate::sys::ethtool::disable_tx_checksum(dev)?;
    }
    for dev in &job.ipv6 {
        ipv6_conf(dev, "accept_dad", "0")?;
        ipv6_conf(dev, "addr_gen_mode", "0")?;
    }
    for s in steps {
        if let Step::Sysctl { key, value, .. } = s {
            sysctl(key, value)?;
        }
    }
    // Addresses, links up and neighbours do not depend on each other: one
    // round of requests. Routes need their gateway's subnet up: the next.
    try_join_all(steps.iter().map(|s| async move {
        match s {
            Step::Address { dev, addr, .. } => rtnl.add_address(dev, addr.addr, addr.prefix).await,
            // Every link the lab makes is brought up, and marked as it goes
            // (`lo`, marked when its namespace was made, again: no matter).
            Step::Up { dev, .. } => rtnl.set_up(dev, Some(mark)).await,
            Step::Neighbor { dev, addr, mac, .. } => rtnl.add_neighbor(dev, *addr, mac.0).await,
            _ => Ok(()),
        }
    }))
    .await?;
    try_join_all(steps.iter().filter_map(|s| match s {
        Step::Route { to, via, .. } => {
            let dst = match to {
                crate::topology::Destination::Default(_) => None,
                crate::topology::Destination::Net(n) => Some((n.addr, n.prefix)),
            };
            Some(rtnl.add_route(dst, *via, None))
        }
        _ => None,
    }))
    .await?;
    Ok(())
}

/// Reads a sysctl of the calling thread's namespace and writes it if different.
pub(super) fn sysctl(key: &str, value: &str) -> Result<()> {
    sysctl_at(
        &Path::new("/proc/sys").join(key.replace('.', "/")),
        key,
        value,
    )
}

/// Sets IPv6 setting `what` of interface `dev`, whose name may hold dots
/// (`eth0.10`): those are not path separators.
fn ipv6_conf(dev: &str, what: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys/net/ipv6/conf").join(dev).join(what);
    sysctl_at(&path, &format!("net.ipv6.conf.{dev}.{what}"), value)
}

fn sysctl_at(path: &Path, key: &str, value: &str) -> Result<()> {
    let now = std::fs::read_to_string(path)
        .with_context(|| format!("reading sysctl {key} ({})", path.display()))?;
    if now.trim() != value {
        std::fs::write(path, value).with_context(|| format!("setting sysctl {key}={value}"))?;
    }
    Ok(())
}
