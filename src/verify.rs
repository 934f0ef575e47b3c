//! Verify: proves a lab works. The file's checks plus derived ones (underlay
//! reachability, a ping each way across every tunnel, path MTU, and the
//! encapsulation seen on the wire), run concurrently, each in its node's
//! namespace.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::capture;
use crate::icmp::{self, PingError, PingOptions};
use crate::netns;
use crate::plan::{Plan, Step, TunnelEnd};
use crate::report::{CheckResult, Status};
use crate::topology::{Check, ExecCheck, Expect, PingCheck, RouteCheck, TunnelCheck};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Add the derived checks to the file's.
    pub derived: bool,
    /// Only ping checks (what `up` runs at its end).
    pub only_ping: bool,
}

/// A check resolved against the plan: namespaces and addresses known.
#[derive(Debug, Clone)]
enum Job {
    Ping {
        ns: String,
        to: IpAddr,
        count: u32,
        expect: Expect,
        timeout: Duration,
    },
    Mtu {
        ns: String,
        to: IpAddr,
        mtu: u32,
        timeout: Duration,
    },
    Encap {
        ns: String,
        iface: String,
        end: TunnelEnd,
        from: IpAddr,
        to: IpAddr,
        timeout: Duration,
    },
    Route {
        ns: String,
        to: IpAddr,
        dev: String,
        sources: Vec<(IpAddr, String)>,
    },
    Exec {
        ns: String,
        cmd: Vec<String>,
        exit: i32,
        timeout: Duration,
    },
}

fn secs(t: f64) -> Duration {
    Duration::from_secs_f64(t.clamp(0.001, 600.0))
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

/// The checks to run for `plan`, named for people.
fn jobs(plan: &Plan, opts: Options) -> Vec<(String, &'static str, Result<Job, String>)> {
    let mut out = Vec::new();
    let ns = |node: &str| {
        plan.ns_of(node)
            .map(str::to_owned)
            .ok_or(format!("no node `{node}`"))
    };
    let tunnel_job = |t: &TunnelCheck, encap: bool| -> Result<Job, String> {
        let from_ns = t.from.as_deref().map(ns).transpose()?;
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
            Ok(Job::Encap {
                ns: a.netns.clone(),
                iface,
                end: a.clone(),
                from: x,
                to: y,
                timeout: secs(t.timeout),
            })
        } else {
            Ok(Job::Mtu {
                ns: a.netns.clone(),
                to: y,
                mtu: a.mtu,
                timeout: secs(t.timeout),
            })
        }
    };
    for check in &plan.checks {
        match check {
            Check::Ping(PingCheck {
                from,
                to,
                count,
                expect,
                timeout,
            }) => out.push((
                format!(
                    "ping {from} -> {to}{}",
                    if *expect == Expect::Failure {
                        " (expect failure)"
                    } else {
                        ""
                    }
                ),
                "ping",
                ns(from).map(|ns| Job::Ping {
                    ns,
                    to: *to,
                    count: *count,
                    expect: *expect,
                    timeout: secs(*timeout),
                }),
            )),
            _ if opts.only_ping => {}
            Check::Mtu(t) => out.push((format!("mtu {}", t.tunnel), "mtu", tunnel_job(t, false))),
            Check::Encap(t) => {
                out.push((format!("encap {}", t.tunnel), "encap", tunnel_job(t, true)))
            }
            Check::Route(RouteCheck { from, to, dev, .. }) => out.push((
                format!("route {from} -> {to} via {dev}"),
                "route",
                ns(from).map(|ns| {
                    let sources = plan
                        .steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Address { ns: n, dev, addr } if *n == ns => {
                                Some((addr.addr, dev.clone()))
                            }
                            _ => None,
                        })
                        .collect();
                    Job::Route {
                        ns,
                        to: *to,
                        dev: dev.clone(),
                        sources,
                    }
                }),
            )),
            Check::Exec(ExecCheck {
                node,
                cmd,
                exit,
                timeout,
            }) => out.push((
                format!("exec {node}: {}", cmd.join(" ")),
                "exec",
                ns(node).map(|ns| Job::Exec {
                    ns,
                    cmd: cmd.clone(),
                    exit: *exit,
                    timeout: secs(*timeout),
                }),
            )),
        }
    }
    if !opts.derived || opts.only_ping {
        return out;
    }
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
                        timeout: t,
                    }),
                ));
            }
            let probe = TunnelCheck {
                tunnel: a.name.clone(),
                from: Some(na.to_owned()),
                timeout: 5.0,
            };
            out.push((format!("mtu {}", a.name), "mtu", tunnel_job(&probe, false)));
            out.push((
                format!("encap {}", a.name),
                "encap",
                tunnel_job(&probe, true),
            ));
        }
    }
    out
}

/// Runs the checks of `plan`, concurrently, and returns their results in order.
pub fn run(plan: &Plan, opts: Options) -> Vec<CheckResult> {
    let jobs = jobs(plan, opts);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(name, kind, job)| {
                s.spawn(move || {
                    let start = Instant::now();
                    let (status, summary, details) = match job {
                        Err(e) => (Status::Error, e, vec![]),
                        Ok(job) => match execute(job) {
                            Ok(r) => r,
                            Err(e) => (Status::Error, format!("{e:#}"), vec![]),
                        },
                    };
                    CheckResult {
                        name,
                        kind: kind.to_owned(),
                        status,
                        duration: start.elapsed(),
                        summary,
                        details,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| CheckResult {
                    name: "?".into(),
                    kind: "?".into(),
                    status: Status::Error,
                    duration: Duration::ZERO,
                    summary: "the check panicked".into(),
                    details: vec![],
                })
            })
            .collect()
    })
}

type Outcome = (Status, String, Vec<String>);

fn pass(summary: String, details: Vec<String>) -> Outcome {
    (Status::Pass, summary, details)
}

fn fail(summary: String, details: Vec<String>) -> Outcome {
    (Status::Fail, summary, details)
}

fn execute(job: Job) -> Result<Outcome> {
    match job {
        Job::Ping {
            ns,
            to,
            count,
            expect,
            timeout,
        } => netns::run_in(&ns, move || {
            let opts = PingOptions {
                count,
                timeout,
                ..PingOptions::default()
            };
            let report = icmp::ping(to, &opts).map_err(|e| anyhow!("{e}"))?;
            let got = report.received();
            let mut summary = format!("{got}/{count} replies");
            if let Some((_, avg, _, _)) = report.rtt_stats() {
                summary.push_str(&format!(", rtt avg {:.3} ms", avg.as_secs_f64() * 1e3));
            }
            let details = report.lines();
            Ok(match expect {
                Expect::Success if got == count => pass(summary, details),
                Expect::Success => fail(
                    format!("{summary}: {to} did not answer every echo request"),
                    details,
                ),
                Expect::Failure if got == 0 => {
                    pass(format!("{summary}, isolated as expected"), details)
                }
                Expect::Failure => fail(
                    format!("{summary}: {to} answered, but should not be reachable"),
                    details,
                ),
            })
        }),
        Job::Mtu {
            ns,
            to,
            mtu,
            timeout,
        } => netns::run_in(&ns, move || {
            let header = if to.is_ipv4() { 28 } else { 48 };
            let fits = mtu as usize - header;
            let probe = |payload| {
                let opts = PingOptions {
                    count: 1,
                    timeout,
                    payload,
                    dont_fragment: true,
                    ..PingOptions::default()
                };
                icmp::ping(to, &opts)
            };
            let mut details = Vec::new();
            match probe(fits) {
                Ok(r) if r.received() == 1 => details.push(format!(
                    "DF probe of {mtu} bytes ({fits} payload) to {to}: answered"
                )),
                Ok(r) => {
                    let d = r.lines();
                    return Ok(fail(
                        format!(
                            "a DF probe of {mtu} bytes ({fits} payload) got no answer: the path MTU is below the tunnel MTU {mtu}"
                        ),
                        d,
                    ));
                }
                Err(PingError::MessageTooLong { mtu: m }) => {
                    return Ok(fail(
                        format!(
                            "a DF probe of {mtu} bytes was refused locally (message too long{}): the tunnel device's MTU is below {mtu}",
                            m.map(|m| format!(", MTU {m}")).unwrap_or_default()
                        ),
                        details,
                    ));
                }
                Err(e) => return Err(anyhow!("{e}")),
            }
            match probe(fits + 1) {
                Err(PingError::MessageTooLong { .. }) => {
                    details.push(format!(
                        "DF probe of {} bytes: refused locally, message too long",
                        mtu + 1
                    ));
                    Ok(pass(
                        format!("{mtu} bytes pass with DF, {} are refused", mtu + 1),
                        details,
                    ))
                }
                Ok(r) => Ok(fail(
                    format!(
                        "a DF probe of {} bytes was not refused ({} replies): the MTU is above the expected {mtu}",
                        mtu + 1,
                        r.received()
                    ),
                    details,
                )),
                Err(e) => Err(anyhow!("{e}")),
            }
        }),
        Job::Encap {
            ns,
            iface,
            end,
            from,
            to,
            timeout,
        } => encap(&ns, &iface, &end, from, to, timeout),
        Job::Route {
            ns,
            to,
            dev,
            sources,
        } => netns::run_in(&ns, move || {
            let sock = std::net::UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
                .context("opening a probe socket")?;
            // connect() asks the kernel's routing for the way out; nothing is sent.
            if let Err(e) = sock.connect((to, 9)) {
                return Ok(fail(format!("no route to {to}: {e}"), vec![]));
            }
            let src = sock.local_addr()?.ip();
            let out = sources
                .iter()
                .find(|(a, _)| *a == src)
                .map(|(_, d)| d.as_str());
            Ok(match out {
                Some(d) if d == dev => pass(format!("leaves through {dev} (source {src})"), vec![]),
                Some(d) => fail(
                    format!("leaves through {d} (source {src}), expected {dev}"),
                    vec![],
                ),
                None => fail(
                    format!("source {src} is on no interface of the plan, expected {dev}"),
                    vec![],
                ),
            })
        }),
        Job::Exec {
            ns,
            cmd,
            exit,
            timeout,
        } => netns::run_in(&ns, move || {
            let mut child = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("running `{}`", cmd[0]))?;
            let deadline = Instant::now() + timeout;
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(fail(format!("timed out after {timeout:?}"), vec![]));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let output = child.wait_with_output()?;
            let code = output.status.code().unwrap_or(-1);
            let mut details: Vec<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            details.extend(
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .map(str::to_owned),
            );
            Ok(if code == exit {
                pass(format!("exited {code}"), details)
            } else {
                fail(format!("exited {code}, expected {exit}"), details)
            })
        }),
    }
}

/// Captures one probe crossing the tunnel on the sending node's underlay
/// interface and checks every header field against the configuration.
fn encap(
    ns: &str,
    iface: &str,
    end: &TunnelEnd,
    from: IpAddr,
    to: IpAddr,
    timeout: Duration,
) -> Result<Outcome> {
    let (ns, iface, end) = (ns.to_owned(), iface.to_owned(), end.clone());
    netns::run_in(&ns.clone(), move || {
        let mut cap = capture::Capture::open(&iface)?;
        // Its own echo identifier: other checks' probes cross the same tunnel.
        let ident = icmp::next_id();
        let pinger = {
            let ns = ns.clone();
            std::thread::spawn(move || {
                netns::run_in(&ns, move || {
                    let opts = PingOptions {
                        count: 2,
                        timeout,
                        ident: Some(ident),
                        ..PingOptions::default()
                    };
                    icmp::ping(to, &opts).map_err(|e| anyhow!("{e}"))
                })
            })
        };
        let deadline = Instant::now() + timeout;
        let mut found = None;
        while let Some(frame) = cap.next(deadline)? {
            if !frame.outgoing {
                continue;
            }
            if let Some(e) = capture::decode(&frame.data) {
                let inner = match &e.inner {
                    capture::Inner::Ip {
                        src, dst, echo_id, ..
                    } => Some((*src, *dst, *echo_id)),
                    capture::Inner::Ethernet {
                        ip: Some((src, dst, _)),
                        echo_id,
                        ..
                    } => Some((*src, *dst, *echo_id)),
                    _ => None,
                };
                if e.outer_src == end.local
                    && e.outer_dst == end.remote
                    && inner == Some((from, to, Some(ident)))
                {
                    found = Some((e, capture::describe(&frame.data)));
                    break;
                }
            }
        }
        let _ = pinger.join();
        let Some((e, lines)) = found else {
            return Ok(fail(
                format!(
                    "no GRE packet {} > {} carrying {from} > {to} seen on {iface} within {timeout:?}",
                    end.local, end.remote
                ),
                vec![],
            ));
        };
        let mut wrong = Vec::new();
        let (inner_ttl, inner_df) = match &e.inner {
            capture::Inner::Ip { ttl, df, .. } => (Some(*ttl), *df),
            _ => (None, false),
        };
        let want_ttl = if end.ttl != 0 {
            Some(end.ttl)
        } else {
            inner_ttl
        };
        if let Some(t) = want_ttl
            && e.ttl != t
        {
            wrong.push(format!("outer ttl {} (expected {t})", e.ttl));
        }
        // ip_gre copies an IPv4 inner DF when pmtudisc is off.
        let want_df = end.pmtudisc || (!end.kind.is_l2() && inner_df);
        if end.local.is_ipv4() && e.df != want_df {
            wrong.push(format!(
                "DF {} (pmtudisc is {})",
                if e.df { "set" } else { "clear" },
                if end.pmtudisc { "on" } else { "off" }
            ));
        }
        if e.gre.key != end.okey {
            let show = |k: Option<u32>| k.map_or("none".to_owned(), |k| k.to_string());
            wrong.push(format!(
                "GRE key {} (expected {})",
                show(e.gre.key),
                show(end.okey)
            ));
        }
        if e.gre.checksum != end.checksum {
            wrong.push(format!(
                "GRE checksum {} (expected {})",
                e.gre.checksum, end.checksum
            ));
        }
        if e.gre.sequence.is_some() != end.sequence {
            wrong.push(format!(
                "GRE sequence numbers {} (expected {})",
                e.gre.sequence.is_some(),
                end.sequence
            ));
        }
        let want_proto = if end.kind.is_l2() {
            crate::gre::ETHERTYPE_TEB
        } else if to.is_ipv4() {
            crate::gre::ETHERTYPE_IPV4
        } else {
            crate::gre::ETHERTYPE_IPV6
        };
        if e.gre.protocol != want_proto {
            wrong.push(format!(
                "GRE protocol 0x{:04x} (expected 0x{want_proto:04x})",
                e.gre.protocol
            ));
        }
        let summary = format!(
            "proto GRE (47) {} > {}, ttl {}, {}GREv0{}, inner {from} > {to}",
            e.outer_src,
            e.outer_dst,
            e.ttl,
            if e.df { "DF, " } else { "" },
            e.gre.key.map(|k| format!(" key {k}")).unwrap_or_default()
        );
        Ok(if wrong.is_empty() {
            pass(summary, lines)
        } else {
            fail(format!("{summary}: wrong {}", wrong.join(", ")), lines)
        })
    })
}
