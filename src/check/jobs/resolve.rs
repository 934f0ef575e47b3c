//! From the plan's checks (and, when asked, the derived ones) to named
//! jobs: namespaces, addresses and interfaces looked up in the plan.

use std::net::IpAddr;
use std::time::Duration;

use super::Job;
use super::encap::Probe;
use super::multicast;
use crate::check::Options;
use crate::model::TunnelEnd;
use crate::plan::{Plan, Step};
use crate::topology::{
    Check, DEFAULT_PING_INTERVAL, ExecCheck, Expect, MulticastCheck, PingCheck, RouteCheck,
    TcpCheck, TunnelCheck,
};

/// A check's name for people, its kind, and its job (or why it has none).
type Named = (String, &'static str, Result<Job, String>);

/// A check to run: its name, kind and job, and how long it may be retried.
pub(in crate::check) struct Planned {
    pub(in crate::check) name: String,
    pub(in crate::check) kind: &'static str,
    pub(in crate::check) job: Result<Job, String>,
    pub(in crate::check) within: Option<Duration>,
}

/// A file's duration as a wait: within 1 ms to 600 s whatever a record
/// edited by hand says (validation holds a file to this range already).
fn secs(t: crate::model::Duration) -> Duration {
    t.std()
        .clamp(Duration::from_millis(1), Duration::from_secs(600))
}

/// Addresses of `dev` in `ns`, from the plan.
fn addresses<'a>(plan: &'a Plan, ns: &'a str, dev: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
    plan.steps.iter().filter_map(move |s| match s {
        Step::Address {
            ns: n,
            dev: d,
            addr,
        } if n == ns && d == dev => Some(addr.addr),
        _ => None,
    })
}

/// The two ends of tunnel `name`, the one in `from_ns` (or the first) first.
fn tunnel_pair<'a>(
    plan: &'a Plan,
    name: &str,
    from_ns: Option<&str>,
) -> Option<(&'a TunnelEnd, &'a TunnelEnd)> {
    let ends: Vec<&TunnelEnd> = plan
        .tunnels()
        .map(|(e, _)| e)
        .filter(|e| e.name == name)
        .collect();
    let a = *ends
        .iter()
        .find(|e| from_ns.is_none_or(|ns| e.netns == ns))?;
    let b = *ends
        .iter()
        .find(|e| e.netns != a.netns && e.local == a.remote)?;
    Some((a, b))
}

/// An overlay address of `a` and one of `b` in the same family.
fn overlay_pair(plan: &Plan, a: &TunnelEnd, b: &TunnelEnd) -> Option<(IpAddr, IpAddr)> {
    addresses(plan, &a.netns, &a.name).find_map(|x| {
        addresses(plan, &b.netns, &b.name)
            .find(|y| y.is_ipv4() == x.is_ipv4())
            .map(|y| (x, y))
    })
}

fn node_of<'a>(plan: &'a Plan, ns: &str) -> &'a str {
    plan.nodes
        .iter()
        .find(|n| n.ns == ns)
        .map_or("?", |n| n.node.as_str())
}

fn ns_of(plan: &Plan, node: &str) -> Result<String, String> {
    plan.ns_of(node)
        .map(str::to_owned)
        .ok_or(format!("no node `{node}`"))
}

/// The job of an mtu check, or (`encap`) of an encap check, on a tunnel.
fn tunnel_job(plan: &Plan, t: &TunnelCheck, encap: bool) -> Result<Job, String> {
    let from_ns = t.from.as_deref().map(|n| ns_of(plan, n)).transpose()?;
    let (a, b) = tunnel_pair(plan, &t.tunnel, from_ns.as_deref())
        .ok_or(format!("no tunnel `{}` in the lab", t.tunnel))?;
    let (x, y) = overlay_pair(plan, a, b).ok_or("the tunnel has no overlay addresses")?;
    if encap {
        let iface = plan
            .steps
            .iter()
            .find_map(|s| match s {
                Step::Address { ns, dev, addr } if *ns == a.netns && addr.addr == a.local => {
                    Some(dev.clone())
                }
                _ => None,
            })
            .ok_or("no underlay interface holds the tunnel's local address")?;
        Ok(Job::Encap(Probe {
            ns: a.netns.clone(),
            iface,
            end: a.clone(),
            from: x,
            to: y,
            timeout: secs(t.timeout),
        }))
    } else {
        Ok(Job::Mtu {
            ns: a.netns.clone(),
            to: y,
            mtu: a.mtu,
            timeout: secs(t.timeout),
        })
    }
}

/// The checks to run for `plan`, named for people.
pub(in crate::check) fn jobs(plan: &Plan, opts: Options) -> Vec<Planned> {
    let planned = |(name, kind, job): Named, within| Planned {
        name,
        kind,
        job,
        within,
    };
    let mut out: Vec<Planned> = plan
        .checks
        .iter()
        .filter(|c| !opts.only_ping || matches!(c, Check::Ping(_)))
        .map(|c| planned(file_job(plan, c), c.within().map(secs)))
        .collect();
    if opts.derived && !opts.only_ping {
        out.extend(derived_jobs(plan).into_iter().map(|n| planned(n, None)));
    }
    out
}

/// One check of the file.
fn file_job(plan: &Plan, check: &Check) -> Named {
    let ns = |node: &str| ns_of(plan, node);
    match check {
        Check::Ping(PingCheck {
            from,
            to,
            count,
            expect,
            interval,
            timeout,
            ..
        }) => (
            format!(
                "ping {from} -> {to}{}",
                match expect {
                    Expect::Failure => " (expect failure)".to_owned(),
                    Expect::Path(p) => format!(" (expect {})", super::ping::bounds(p)),
                    Expect::Success => String::new(),
                }
            ),
            "ping",
            ns(from).map(|ns| Job::Ping {
                ns,
                to: *to,
                count: *count,
                expect: *expect,
                interval: interval.std(),
                timeout: secs(*timeout),
            }),
        ),
        Check::Mtu(t) => (
            format!("mtu {}", t.tunnel),
            "mtu",
            tunnel_job(plan, t, false),
        ),
        Check::Encap(t) => (
            format!("encap {}", t.tunnel),
            "encap",
            tunnel_job(plan, t, true),
        ),
        Check::Route(RouteCheck { from, to, dev, .. }) => (
            format!("route {from} -> {to} via {dev}"),
            "route",
            ns(from).map(|ns| Job::Route {
                ns,
                to: *to,
                dev: dev.clone(),
            }),
        ),
        Check::Exec(ExecCheck {
            node,
            cmd,
            exit,
            timeout,
            ..
        }) => (
            format!("exec {node}: {}", cmd.join(" ")),
            "exec",
            ns(node).map(|ns| Job::Exec {
                ns,
                lab: plan.lab.clone(),
                node: node.clone(),
                cmd: cmd.clone(),
                exit: *exit,
                timeout: secs(*timeout),
            }),
        ),
        Check::Tcp(TcpCheck {
            from,
            to,
            port,
            timeout,
            ..
        }) => (
            format!("tcp {from} -> {}", std::net::SocketAddr::new(*to, *port)),
            "tcp",
            ns(from).map(|ns| Job::Tcp {
                ns,
                to: *to,
                port: *port,
                timeout: secs(*timeout),
            }),
        ),
        Check::Multicast(m) => (
            format!("multicast {} -> {}: {}", m.from, m.to, m.group),
            "multicast",
            multicast_job(plan, m),
        ),
    }
}

fn multicast_job(plan: &Plan, m: &MulticastCheck) -> Result<Job, String> {
    Ok(Job::Multicast(multicast::Probe {
        nodes: (m.from.clone(), m.to.clone()),
        from_ns: ns_of(plan, &m.from)?,
        to_ns: ns_of(plan, &m.to)?,
        group: m.group,
        port: m.port,
        dev: m.dev.clone(),
        join: m.join.clone(),
        timeout: secs(m.timeout),
    }))
}

/// For every tunnel: the underlay ping, a ping each way across, its MTU
/// and its encapsulation.
fn derived_jobs(plan: &Plan) -> Vec<Named> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (a, _) in plan.tunnels() {
        if seen.contains(&&a.name) {
            continue;
        }
        seen.push(&a.name);
        let Some((a, b)) = tunnel_pair(plan, &a.name, Some(&a.netns)) else {
            continue;
        };
        let (na, nb) = (node_of(plan, &a.netns), node_of(plan, &b.netns));
        let t = Duration::from_secs(5);
        out.push((
            format!("underlay {}: {na} -> {}", a.name, a.remote),
            "ping",
            Ok(Job::Ping {
                ns: a.netns.clone(),
                to: a.remote,
                count: 2,
                expect: Expect::Success,
                interval: DEFAULT_PING_INTERVAL.std(),
                timeout: t,
            }),
        ));
        if let Some((x, y)) = overlay_pair(plan, a, b) {
            for (from, ns, to) in [(na, &a.netns, y), (nb, &b.netns, x)] {
                out.push((
                    format!("tunnel {}: {from} -> {to}", a.name),
                    "ping",
                    Ok(Job::Ping {
                        ns: ns.clone(),
                        to,
                        count: 3,
                        expect: Expect::Success,
                        interval: DEFAULT_PING_INTERVAL.std(),
                        timeout: t,
                    }),
                ));
            }
            let probe = TunnelCheck {
                tunnel: a.name.clone(),
                from: Some(na.to_owned()),
                timeout: crate::model::Duration::from_secs(5),
                within: None,
            };
            out.push((
                format!("mtu {}", a.name),
                "mtu",
                tunnel_job(plan, &probe, false),
            ));
            out.push((
                format!("encap {}", a.name),
                "encap",
                tunnel_job(plan, &probe, true),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_waits_of_any_length_stay_in_range() {
        use crate::model::Duration as D;
        assert_eq!(secs(D::from_secs(0)), Duration::from_millis(1));
        assert_eq!(secs(D::from_secs(u64::MAX)), Duration::from_secs(600));
        assert_eq!(secs("2.5s".parse().unwrap()), Duration::from_millis(2500));
    }
}
