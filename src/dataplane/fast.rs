//! When a tunnel moves onto the in-kernel fast path: the attaching thread,
//! the netfilter re-checks, and the fast path's counters in the stats.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::engine::Engine;
use super::fastpath::{self, Encap, FastPath};
use super::stats::{Stats, TunnelStats};
use crate::model::TunnelEnd;
use crate::model::overhead;
use crate::sys::{netns, rtnl};

/// The in-kernel fast path of the dataplane's eligible tunnels. Attaching
/// costs an RCU grace period per hook (milliseconds), and so does detaching
/// at exit: a tunnel gets it once it has carried FAST_AFTER packets through
/// userspace, at most FAST_MAX tunnels get it, and a thread of its own does
/// the attaching, so the packet loop never waits for it.
pub(super) struct Fast {
    pub(super) path: Arc<FastPath>,
    pub(super) tunnels: Vec<FastState>,
    /// Tunnels attached or being attached.
    pub(super) granted: usize,
    /// To the attaching thread; dropped first, to stop it.
    pub(super) jobs: Option<mpsc::Sender<AttachJob>>,
    pub(super) done: mpsc::Receiver<(usize, Outcome)>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    /// Why a tunnel waits once FAST_MAX are granted.
    pub(super) full: String,
}

/// What the attaching thread reports of a tunnel.
pub(super) enum Outcome {
    On,
    /// Not now, for this reason (no route yet; netfilter rules, found when
    /// attaching or later, then detached): try again after the delay.
    Later(String, Duration),
    /// Attaching failed: it stays in userspace.
    Failed(anyhow::Error),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FastState {
    /// Not eligible, or attaching failed.
    Off,
    /// To be attached once it carries enough traffic, not before this time
    /// (after an attempt that found no route to the remote yet).
    Waiting(Instant),
    Attaching,
    On,
}

/// Slow-path packets (either way) after which a tunnel gets the fast path:
/// enough to tell a flow from the few packets of a check.
pub(super) const FAST_AFTER: u64 = 64;
/// Tunnel ends per dataplane on the fast path: bounds what detaching adds
/// to `down` when every tunnel of a large lab carries a flow (about 10 ms a
/// hook here: down of basic with both ends on it, 64 against 24 ms).
pub(super) const FAST_MAX: usize = 32;
/// How long after a failed attach (no route yet) to try again.
pub(super) const FAST_RETRY: Duration = Duration::from_secs(1);
/// How often the namespaces of tunnel ends on the fast path are checked for
/// netfilter rules (which it would bypass): a rule added takes effect
/// within this (kernel GRE and the userspace path see it at once).
pub(super) const NETFILTER_CHECK: Duration = Duration::from_secs(1);
/// How long a tunnel end kept off the fast path by netfilter rules waits
/// before its namespace is checked again.
pub(super) const NETFILTER_RETRY: Duration = Duration::from_secs(5);

/// What the attaching thread needs to know of a tunnel.
pub(super) struct AttachJob {
    pub(super) index: usize,
    pub(super) netns: File,
    pub(super) end: TunnelEnd,
    pub(super) slot: usize,
    /// The userspace path's next IPv4 ID, for the fast path to go on from.
    pub(super) id_base: u16,
}

impl Drop for Fast {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    /// Sets up the fast path's maps; the programs are attached per tunnel
    /// once it carries traffic (see `try_fast`). Without eBPF, one line in
    /// the log says so and every packet goes through userspace.
    pub(super) fn enable_fast_path(&mut self) {
        let no_fast = |stats: &mut Stats, why: String| {
            eprintln!("dataplane: {why}; all packets go through userspace");
            for st in &mut stats.tunnels {
                st.fast_path_off = Some(why.clone());
            }
        };
        self.dirty = true;
        let path = match FastPath::new(self.tunnels.len()) {
            Ok(p) => Arc::new(p),
            Err(e) => return no_fast(&mut self.stats, format!("no in-kernel fast path: {e:#}")),
        };
        let (jobs, todo) = mpsc::channel();
        let (report, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("fastpath".into()).spawn({
            let path = path.clone();
            move || attacher(&path, &todo, &report)
        });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let why = format!("no in-kernel fast path (no thread for it: {e})");
                return no_fast(&mut self.stats, why);
            }
        };
        let tunnels = self
            .tunnels
            .iter()
            .zip(&mut self.stats.tunnels)
            .zip(&self.delays)
            .map(|((t, st), impaired)| {
                if impaired.is_some() {
                    st.fast_path_off =
                        Some("impaired (the fast path would bypass the impairments)".into());
                    FastState::Off
                } else if fastpath::carries(&t.end) {
                    FastState::Waiting(Instant::now())
                } else {
                    st.fast_path_off = Some(
                        "GRE checksums or sequence numbers are configured (userspace keeps them)"
                            .into(),
                    );
                    FastState::Off
                }
            })
            .collect();
        self.fast = Some(Fast {
            path,
            tunnels,
            granted: 0,
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            full: format!("the dataplane's {FAST_MAX} fast-path places are taken"),
        });
    }

    /// Hands tunnel `ti` to the attaching thread if it waits, is due, and
    /// has carried enough traffic through userspace.
    pub(super) fn try_fast(&mut self, ti: usize) {
        let Some(fast) = &mut self.fast else { return };
        let st = &mut self.stats.tunnels[ti];
        match fast.tunnels[ti] {
            FastState::Waiting(at)
                if st.tx_packets + st.rx_packets >= FAST_AFTER && at <= Instant::now() => {}
            _ => return,
        }
        if fast.granted >= FAST_MAX {
            if st.fast_path_off.as_ref() != Some(&fast.full) {
                st.fast_path_off = Some(fast.full.clone());
                self.dirty = true;
            }
            return;
        }
        let t = &self.tunnels[ti];
        let job = self.namespaces[t.slot].try_clone().map(|netns| AttachJob {
            index: ti,
            netns,
            end: t.end.clone(),
            slot: t.slot,
            id_base: t.tx_id,
        });
        let sent = match (job, &fast.jobs) {
            (Ok(job), Some(jobs)) => jobs.send(job).is_ok(),
            _ => false,
        };
        fast.tunnels[ti] = if sent {
            fast.granted += 1;
            FastState::Attaching
        } else {
            FastState::Off
        };
    }

    /// Takes the attaching thread's results.
    pub(super) fn fast_results(&mut self) {
        let Some(fast) = &mut self.fast else { return };
        while let Ok((ti, outcome)) = fast.done.try_recv() {
            let t = &self.tunnels[ti];
            let st = &mut self.stats.tunnels[ti];
            self.dirty = true;
            fast.tunnels[ti] = match outcome {
                Outcome::On => {
                    st.fast_path = true;
                    st.fast_path_off = None;
                    FastState::On
                }
                Outcome::Later(why, retry) => {
                    fast.granted -= 1;
                    if st.fast_path {
                        // Detached: its last counts.
                        if let Ok(c) = fast.path.counters(ti as u32) {
                            take_counters(st, &c);
                        }
                    }
                    st.fast_path = false;
                    st.fast_path_off = Some(why);
                    FastState::Waiting(Instant::now() + retry)
                }
                Outcome::Failed(e) => {
                    fast.granted -= 1;
                    eprintln!(
                        "dataplane: tunnel `{}` in `{}` stays in userspace: {e:#}",
                        t.end.name, t.end.netns
                    );
                    st.fast_path_off = Some(format!("attaching it failed: {e:#}"));
                    FastState::Off
                }
            };
        }
    }

    /// Copies the fast path's counters into the stats; marks them dirty if
    /// they moved.
    pub(super) fn refresh_fast(&mut self) {
        let Some(fast) = &self.fast else { return };
        for (i, state) in fast.tunnels.iter().enumerate() {
            if *state != FastState::On {
                continue;
            }
            let Ok(c) = fast.path.counters(i as u32) else {
                continue;
            };
            self.dirty |= take_counters(&mut self.stats.tunnels[i], &c);
        }
    }
}

/// Copies fast-path counters into `st`; true if they moved.
pub(super) fn take_counters(st: &mut TunnelStats, c: &fastpath::Counters) -> bool {
    if (st.fast_tx_packets, st.fast_rx_packets) == (c.tx_packets, c.rx_packets) {
        return false;
    }
    st.fast_tx_packets = c.tx_packets;
    st.fast_tx_bytes = c.tx_bytes;
    st.fast_rx_packets = c.rx_packets;
    st.fast_rx_bytes = c.rx_bytes;
    true
}

/// A tunnel end the attaching thread put on the fast path.
pub(super) struct OnFast {
    pub(super) index: usize,
    pub(super) slot: usize,
    pub(super) end: TunnelEnd,
    /// Its egress program: closing it detaches the program.
    pub(super) _egress: OwnedFd,
}

/// The attaching thread: takes jobs until the dataplane drops its sender,
/// reports each result, checks the namespaces of the tunnels it attached
/// for netfilter rules every NETFILTER_CHECK (detaching them where some
/// appeared), and holds the links (closing them detaches the programs)
/// until it ends.
pub(super) fn attacher(
    path: &FastPath,
    jobs: &mpsc::Receiver<AttachJob>,
    report: &mpsc::Sender<(usize, Outcome)>,
) {
    let home = match File::open("/proc/thread-self/ns/net") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dataplane: fast path: opening this thread's network namespace: {e}");
            return;
        }
    };
    let mut ingress: HashMap<(usize, u32), OwnedFd> = HashMap::new();
    let mut on: Vec<OnFast> = Vec::new();
    let mut namespaces: HashMap<usize, File> = HashMap::new();
    let mut checked = Instant::now();
    loop {
        match jobs.recv_timeout(NETFILTER_CHECK.saturating_sub(checked.elapsed())) {
            Ok(job) => {
                let attached =
                    netns::enter(&job.netns).and_then(|()| attach(path, &mut ingress, &job));
                if !go_home(&home) {
                    return;
                }
                let outcome = match attached {
                    Ok(Ok(egress)) => {
                        on.push(OnFast {
                            index: job.index,
                            slot: job.slot,
                            end: job.end,
                            _egress: egress,
                        });
                        namespaces.entry(job.slot).or_insert(job.netns);
                        Outcome::On
                    }
                    Ok(Err((why, retry))) => Outcome::Later(why, retry),
                    Err(e) => Outcome::Failed(e),
                };
                if report.send((job.index, outcome)).is_err() {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if checked.elapsed() >= NETFILTER_CHECK {
            checked = Instant::now();
            if !recheck(path, &home, &mut on, &mut ingress, &namespaces, report) {
                return;
            }
        }
    }
}

/// Enters the attaching thread's original namespace; false (said) if it
/// cannot, and the thread must end.
pub(super) fn go_home(home: &File) -> bool {
    match netns::enter(home) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("dataplane: fast path: returning to the original network namespace: {e:#}");
            false
        }
    }
}

/// Takes the tunnel ends of every namespace that now has netfilter rules
/// (or cannot be checked) off the fast path: their routes first, so the
/// receive programs leave their packets to the stack at once, then the
/// programs; reports each as `Later`. False if the thread must end.
pub(super) fn recheck(
    path: &FastPath,
    home: &File,
    on: &mut Vec<OnFast>,
    ingress: &mut HashMap<(usize, u32), OwnedFd>,
    namespaces: &HashMap<usize, File>,
    report: &mpsc::Sender<(usize, Outcome)>,
) -> bool {
    let mut slots: Vec<usize> = on.iter().map(|t| t.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        let Some(ns) = namespaces.get(&slot) else {
            continue;
        };
        let found = netns::enter(ns).map(|()| crate::sys::rtnl::netfilter::rules_here());
        if !go_home(home) {
            return false;
        }
        let name = on
            .iter()
            .find(|t| t.slot == slot)
            .map(|t| t.end.netns.clone())
            .unwrap_or_default();
        let why = match found {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(what))) => format!("netfilter rules in namespace `{name}`: {what}"),
            Ok(Err(e)) => format!("could not check namespace `{name}` for netfilter rules: {e}"),
            Err(e) => format!("could not check namespace `{name}` for netfilter rules: {e:#}"),
        };
        let (gone, kept) = std::mem::take(on).into_iter().partition(|t| t.slot == slot);
        *on = kept;
        let gone: Vec<OnFast> = gone;
        for t in &gone {
            if let Err(e) = path.remove_route(slot as u32, &t.end) {
                eprintln!("dataplane: fast path: {e:#}");
            }
        }
        ingress.retain(|k, _| k.0 != slot);
        for t in gone {
            eprintln!(
                "dataplane: tunnel `{}` in `{}` leaves the fast path: {why}",
                t.end.name, t.end.netns
            );
            if report
                .send((t.index, Outcome::Later(why.clone(), NETFILTER_RETRY)))
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// Attaches a tunnel's programs from inside its namespace: the receive
/// program on the underlay device its remote is routed out of (once per
/// device), its route in the table, and the egress program on its device.
/// Not now (why, and when to try again) while the namespace has netfilter
/// rules, which the programs would bypass, or the remote has no route.
pub(super) fn attach(
    path: &FastPath,
    ingress: &mut HashMap<(usize, u32), OwnedFd>,
    job: &AttachJob,
) -> Result<std::result::Result<OwnedFd, (String, Duration)>> {
    let e = &job.end;
    let netfilter = match crate::sys::rtnl::netfilter::rules_here() {
        Ok(None) => None,
        Ok(Some(what)) => Some(format!(
            "netfilter rules in namespace `{}`: {what}",
            e.netns
        )),
        Err(err) => Some(format!(
            "could not check namespace `{}` for netfilter rules: {err}",
            e.netns
        )),
    };
    if let Some(why) = netfilter {
        return Ok(Err((why, NETFILTER_RETRY)));
    }
    let Some(oif) = rtnl::route_oif(e.remote)? else {
        return Ok(Err((
            format!("no route to its remote {} yet", e.remote),
            FAST_RETRY,
        )));
    };
    let ifindex = nix::net::if_::if_nametoindex(e.name.as_str())
        .with_context(|| format!("reading the interface index of `{}`", e.name))?;
    if oif == ifindex {
        bail!(
            "its remote {} is routed through the tunnel itself",
            e.remote
        );
    }
    let (slot, index) = (job.slot as u32, job.index as u32);
    // The programs do not fragment: every packet must fit the underlay.
    let (room, overhead) = (rtnl::link_mtu(oif)?, overhead(e.kind, &e.options()));
    if e.mtu + overhead > room {
        bail!(
            "its MTU {} and {overhead} bytes of headers exceed the underlay's MTU {room}",
            e.mtu
        );
    }
    if let std::collections::hash_map::Entry::Vacant(v) = ingress.entry((job.slot, oif)) {
        v.insert(path.attach_ingress(slot, oif)?);
    }
    path.add_route(slot, e, ifindex, index)?;
    let encap = Encap::of(e, index, oif, job.id_base);
    match path.attach_egress(&encap, ifindex) {
        Ok(link) => Ok(Ok(link)),
        Err(err) => {
            // Its packets stay with the userspace path both ways.
            let _ = path.remove_route(slot, e);
            Err(err)
        }
    }
}
