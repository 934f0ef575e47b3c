//! Verify: proves a lab works. The file's checks plus derived ones (underlay
//! reachability, a ping each way across every tunnel, path MTU, and the
//! encapsulation seen on the wire), run concurrently, each in its node's
//! namespace.

pub mod ping;
pub mod report;

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use self::ping::{PingError, PingOptions};
use crate::capture;
use crate::check::report::{CheckResult, Status};
use crate::model::TunnelEnd;
use crate::plan::{Plan, Step};
use crate::sys::netns;
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
    // A NaN (a record edited by hand) would make from_secs_f64 panic.
    let t = if t.is_nan() { 0.001 } else { t };
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
            let report = ping::ping(to, &opts).map_err(|e| anyhow!("{e}"))?;
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
                ping::ping(to, &opts)
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
        } => netns::run_in(&ns, move || exec(&cmd, exit, timeout)),
    }
}

/// Bytes of each output stream of an exec check kept for the report: the end.
const TAIL: usize = 16 << 10;
/// How long an exec check's output is still read once its process has
/// ended: a background child holding the pipes open must not hold verify.
const DRAIN: Duration = Duration::from_millis(100);

/// Runs `cmd` in the calling thread's namespace for at most `timeout` and
/// judges its exit code against `exit`. Its output is read while it runs
/// (a full pipe would stall it), and the end of each stream is kept.
fn exec(cmd: &[String], exit: i32, timeout: Duration) -> Result<Outcome> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout also ends what it started.
        .process_group(0)
        .spawn()
        .with_context(|| format!("running `{}`", cmd[0]))?;
    let mut streams = [
        Stream::new(
            child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
            "stdout",
        ),
        Stream::new(
            child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
            "stderr",
        ),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            // The group is the one spawn made: its leader is not reaped
            // yet, so the id cannot name another group.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        // Short waits: the process's end is seen by polling it.
        read_ready(
            &mut streams,
            (deadline - now).min(Duration::from_millis(10)),
        );
    };
    let drained = Instant::now() + DRAIN;
    while streams.iter().any(|s| s.pipe.is_some()) {
        let left = drained.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        read_ready(&mut streams, left);
    }
    let details: Vec<String> = streams.iter().flat_map(Stream::lines).collect();
    let Some(status) = status else {
        return Ok(fail(format!("timed out after {timeout:?}"), details));
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) if code == exit => pass(format!("exited {code}"), details),
        (Some(code), _) => fail(format!("exited {code}, expected {exit}"), details),
        (None, sig) => fail(
            format!(
                "killed by signal {}, expected exit {exit}",
                sig.unwrap_or_default()
            ),
            details,
        ),
    })
}

/// One output pipe of an exec check and the end of what came through it.
struct Stream {
    /// Closed at its end, or once the check is over.
    pipe: Option<File>,
    name: &'static str,
    tail: Vec<u8>,
    /// Bytes read and not kept.
    cut: usize,
}

impl Stream {
    fn new(pipe: Option<File>, name: &'static str) -> Stream {
        Stream {
            pipe,
            name,
            tail: Vec::new(),
            cut: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        // Trimmed now and then, not at every read.
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
            self.cut += cut;
        }
    }

    /// The kept lines, after a line saying how much was cut, if any.
    fn lines(&self) -> Vec<String> {
        let mut text = &self.tail[self.tail.len().saturating_sub(TAIL)..];
        let mut cut = self.cut + (self.tail.len() - text.len());
        if cut > 0
            && let Some(i) = text.iter().position(|&b| b == b'\n')
        {
            // From the first whole line.
            cut += i + 1;
            text = &text[i + 1..];
        }
        let mut out = Vec::new();
        if cut > 0 {
            out.push(format!("... {cut} bytes of {} not kept", self.name));
        }
        out.extend(String::from_utf8_lossy(text).lines().map(str::to_owned));
        out
    }
}

/// Waits up to `wait` for output on the open pipes and reads what came.
fn read_ready(streams: &mut [Stream], wait: Duration) {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let ms = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
    let ready: Vec<bool> = {
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter_map(|s| s.pipe.as_ref())
            .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        if poll(&mut fds, ms).is_err() {
            return; // EINTR: the caller's loop comes back
        }
        fds.iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect()
    };
    let mut buf = [0u8; 64 << 10];
    let open = streams.iter_mut().filter(|s| s.pipe.is_some());
    for (s, _) in open.zip(ready).filter(|(_, r)| *r) {
        // Readable (or at its end): one read does not block.
        match s.pipe.as_mut().map(|p| p.read(&mut buf)) {
            Some(Ok(0)) | Some(Err(_)) | None => s.pipe = None,
            Some(Ok(n)) => s.push(&buf[..n]),
        }
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
        let ident = ping::next_id();
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
                    ping::ping(to, &opts).map_err(|e| anyhow!("{e}"))
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
            crate::wire::gre::ETHERTYPE_TEB
        } else if to.is_ipv4() {
            crate::wire::gre::ETHERTYPE_IPV4
        } else {
            crate::wire::gre::ETHERTYPE_IPV6
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `sh -c script` as an exec check on a thread of its own, and
    /// fails the test if it has not ended within `limit` (not hangs).
    fn exec_within(
        script: &str,
        exit: i32,
        timeout: Duration,
        limit: Duration,
    ) -> (Outcome, Duration) {
        let cmd: Vec<String> = vec!["sh".into(), "-c".into(), script.into()];
        let (tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(exec(&cmd, exit, timeout));
        });
        let out = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("`{script}` did not end within {limit:?}"))
            .expect("the check runs");
        (out, start.elapsed())
    }

    /// The pid a script printed as its first line (`echo $!`): a process
    /// this test started.
    fn printed_pid(out: &Outcome) -> Option<nix::unistd::Pid> {
        let pid = out.2.first()?.trim().parse().ok()?;
        Some(nix::unistd::Pid::from_raw(pid))
    }

    /// Whether `pid` runs a `sleep` (not a zombie): the one the test started.
    fn sleeping(pid: nix::unistd::Pid) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.contains("(sleep)") && !stat.contains(") Z ")
    }

    #[test]
    fn check_timeouts_of_any_float_become_a_duration() {
        assert_eq!(secs(f64::NAN), Duration::from_millis(1));
        assert_eq!(secs(-1.0), Duration::from_millis(1));
        assert_eq!(secs(f64::INFINITY), Duration::from_secs(600));
        assert_eq!(secs(2.5), Duration::from_millis(2500));
    }

    #[test]
    fn an_exec_check_printing_a_mebibyte_passes_promptly() {
        let (out, took) = exec_within(
            "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo last line; echo on stderr >&2",
            0,
            Duration::from_secs(10),
            Duration::from_secs(11),
        );
        let (status, summary, details) = &out;
        assert_eq!((*status, summary.as_str()), (Status::Pass, "exited 0"));
        assert!(took < Duration::from_secs(2), "took {took:?}");
        // A bounded tail of each stream is kept, saying what was cut.
        let kept: usize = details.iter().map(String::len).sum();
        assert!(kept < 40 << 10, "{kept} bytes of details kept");
        assert!(
            details[0].contains("bytes of stdout not kept"),
            "{}",
            details[0]
        );
        assert!(details.iter().any(|l| l == "last line"), "{details:?}");
        assert_eq!(details.last().map(String::as_str), Some("on stderr"));
    }

    #[test]
    fn an_exec_check_leaving_a_background_child_ends_with_its_result() {
        let timeout = Duration::from_secs(3);
        let (out, took) = exec_within(
            "sleep 300 & echo $!; exit 3",
            3,
            timeout,
            timeout + Duration::from_secs(1),
        );
        let pid = printed_pid(&out);
        if let Some(pid) = pid.filter(|p| sleeping(*p)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        assert!(pid.is_some(), "{out:?}");
        assert_eq!(
            (out.0, out.1.as_str()),
            (Status::Pass, "exited 3"),
            "{out:?}"
        );
        assert!(took < timeout, "took {took:?}");
    }

    #[test]
    fn an_exec_check_past_its_timeout_is_killed_with_its_children() {
        let timeout = Duration::from_millis(500);
        let (out, took) = exec_within(
            "sleep 300 & echo $!; wait",
            0,
            timeout,
            timeout + Duration::from_secs(1),
        );
        assert_eq!(out.0, Status::Fail, "{out:?}");
        assert!(out.1.contains("timed out after 500ms"), "{out:?}");
        assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
        let pid = printed_pid(&out).unwrap_or_else(|| panic!("no pid in {out:?}"));
        let deadline = Instant::now() + Duration::from_secs(1);
        while sleeping(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = sleeping(pid);
        if left {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        assert!(
            !left,
            "the check's background sleep {pid} outlived its timeout"
        );
    }
}
