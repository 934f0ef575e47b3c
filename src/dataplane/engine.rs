//! The engine: setup (every device and socket, from one thread entering
//! each namespace in turn) and the epoll loop that moves packets.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::mem::zeroed;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::control::Spec;
use super::delay::{DelayLine, ImpairFile};
use super::fast::{FAST_AFTER, Fast};
use super::rx::{RX_HEADROOM, Rx};
use super::sock::{epoll_add, epoll_create, raise_fd_limit, raw_socket, sockaddr};
use super::stats::{Stats, TunnelStats, write_stats};
use super::tx::{Tx, random_u16};
use crate::model::TunnelEnd;
use crate::sys::{netns, tun};
use crate::wire::gre;

pub(super) const EPOLL_TIMEOUT_MS: i32 = 200;
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often the impairments file is looked at.
const IMPAIRS_EVERY: Duration = Duration::from_millis(100);
/// Epoll tokens at or above this are sockets; below, tunnel devices.
pub(super) const SOCK_TOKEN: u64 = 1 << 32;

/// Runs the dataplane for `spec` until `stop` is set. Every device and socket
/// is created first: a setup error returns before `on_ready` is called, with
/// nothing left behind. Counters go to `stats_path`.
pub fn run(
    spec: &Spec,
    stats_path: &Path,
    on_ready: impl FnOnce(),
    stop: &AtomicBool,
) -> Result<()> {
    // GRELAB_DP_OFFLOAD=0 turns offloads off, GRELAB_DP_FASTPATH=0 the
    // in-kernel fast path, to measure or rule them out.
    let on = |var| std::env::var_os(var).is_none_or(|v| v != "0");
    let (offload, fast) = (on("GRELAB_DP_OFFLOAD"), on("GRELAB_DP_FASTPATH"));
    run_with(spec, stats_path, on_ready, stop, offload, fast)
}

/// `run`, with device offloads (TSO, checksums, GRO) and the fast path on
/// or off.
pub(super) fn run_with(
    spec: &Spec,
    stats_path: &Path,
    on_ready: impl FnOnce(),
    stop: &AtomicBool,
    offload: bool,
    fast: bool,
) -> Result<()> {
    let mut engine = Engine::new(spec, offload)?;
    engine.delays = vec![None; engine.tunnels.len()];
    let mut impairs = ImpairFile::beside(stats_path);
    if let Some(list) = impairs.changed() {
        engine.set_impairments(&list);
    }
    let why = if fast {
        format!("waits for {FAST_AFTER} packets through userspace")
    } else {
        "disabled by GRELAB_DP_FASTPATH=0".to_owned()
    };
    for st in &mut engine.stats.tunnels {
        st.fast_path_off = Some(why.clone());
    }
    write_stats(stats_path, &engine.stats)?;
    on_ready();
    // After `ready`: `up` need not wait for it, and nothing uses it yet.
    if fast {
        engine.enable_fast_path();
    }
    let served = engine.serve(stats_path, stop, &mut impairs);
    let written = write_stats(stats_path, &engine.stats);
    served.and(written)
}

/// One tunnel end being served.
pub(super) struct Tunnel {
    pub(super) end: TunnelEnd,
    pub(super) dev: File,
    pub(super) sock: usize,
    pub(super) l2: bool,
    /// GRE header length of sent packets.
    pub(super) hlen: usize,
    pub(super) remote: (libc::sockaddr_storage, libc::socklen_t),
    pub(super) tx_seq: u32,
    pub(super) rx_seq: Option<u32>,
    /// The next outer IPv4 ID.
    pub(super) tx_id: u16,
    pub(super) alive: bool,
    /// The namespace's index in `Engine::namespaces`.
    pub(super) slot: usize,
}

impl Tunnel {
    /// End `end` served through device `dev` and socket `sock`, in the
    /// namespace of slot `slot`, with nothing sent or received yet.
    pub(super) fn new(end: &TunnelEnd, dev: File, sock: usize, l2: bool, slot: usize) -> Tunnel {
        Tunnel {
            end: end.clone(),
            dev,
            sock,
            l2,
            hlen: gre::header_len(end.checksum, end.okey.is_some(), end.sequence),
            remote: sockaddr(end.remote),
            tx_seq: 0,
            rx_seq: None,
            tx_id: random_u16(),
            alive: true,
            slot,
        }
    }
}

/// One raw GRE socket of one namespace and address family.
pub(super) struct Sock {
    pub(super) fd: OwnedFd,
    pub(super) v6: bool,
}

/// Receive lookup: (socket, outer destination, outer source, key, carries Ethernet).
pub(super) type Route = (usize, IpAddr, IpAddr, Option<u32>, bool);

/// Everything the loop works on.
pub(super) struct Engine {
    pub(super) tunnels: Vec<Tunnel>,
    pub(super) socks: Vec<Sock>,
    pub(super) routes: HashMap<Route, usize>,
    /// (socket, destination, source) to the first tunnel of that pair, to
    /// count wrong keys.
    pub(super) pairs: HashMap<(usize, IpAddr, IpAddr), usize>,
    pub(super) stats: Stats,
    pub(super) dirty: bool,
    pub(super) rx: Rx,
    pub(super) tx: Tx,
    /// Whether received TCP segments are joined for the devices.
    pub(super) gro: bool,
    pub(super) epoll: OwnedFd,
    /// The tunnels' namespaces, by slot.
    pub(super) namespaces: Vec<File>,
    /// Per tunnel: what its egress suffers, if the dataplane impairs it.
    pub(super) delays: Vec<Option<crate::model::Impairment>>,
    /// What impaired tunnels sent, waiting for its departure.
    pub(super) line: DelayLine,
    pub(super) fast: Option<Fast>,
}

/// Enters the thread's original namespace again when dropped.
pub(super) struct Home(pub(super) File);

impl Drop for Home {
    fn drop(&mut self) {
        if let Err(e) = netns::enter(&self.0) {
            eprintln!("dataplane: returning to the original network namespace: {e:#}");
        }
    }
}

impl Engine {
    pub(super) fn new(spec: &Spec, offload_on: bool) -> Result<Engine> {
        raise_fd_limit();
        let home = Home(
            File::open("/proc/thread-self/ns/net")
                .context("opening this thread's network namespace")?,
        );
        let mut slots: HashMap<&str, usize> = HashMap::new();
        let mut current: Option<&str> = None;
        let mut ctl = None;
        let mut sock_of: HashMap<(&str, bool), usize> = HashMap::new();
        let mut engine = Engine {
            tunnels: Vec::with_capacity(spec.tunnels.len()),
            socks: Vec::new(),
            routes: HashMap::new(),
            pairs: HashMap::new(),
            stats: Stats::default(),
            dirty: false,
            rx: Rx::new(0),
            tx: Tx::new(),
            gro: offload_on,
            epoll: epoll_create()?,
            namespaces: Vec::new(),
            fast: None,
            delays: Vec::new(),
            line: DelayLine::default(),
        };
        // Until setup is complete, devices made so far are removed on failure.
        let mut transient = Transient(Vec::new());
        for end in &spec.tunnels {
            let what = format!("tunnel `{}` in namespace `{}`", end.name, end.netns);
            let v6 = end.kind.is_ipv6();
            if end.local.is_ipv6() != v6 || end.remote.is_ipv6() != v6 {
                bail!(
                    "{what}: a {} tunnel needs IPv{} local and remote addresses",
                    end.kind.as_str(),
                    if v6 { 6 } else { 4 }
                );
            }
            if current != Some(end.netns.as_str()) {
                let slot = match slots.get(end.netns.as_str()) {
                    Some(&i) => i,
                    None => {
                        engine.namespaces.push(netns::open(&end.netns)?);
                        slots.insert(&end.netns, engine.namespaces.len() - 1);
                        engine.namespaces.len() - 1
                    }
                };
                netns::enter(&engine.namespaces[slot])
                    .with_context(|| format!("entering network namespace `{}`", end.netns))?;
                current = Some(&end.netns);
                ctl = Some(netns::ioctl_socket().with_context(|| format!("setting up {what}"))?);
            }
            let l2 = end.kind.is_l2();
            let ctl = ctl
                .as_ref()
                .map(std::os::fd::AsFd::as_fd)
                .context("no namespace entered")?;
            let dev = open_device(end, l2, ctl, offload_on, &mut transient)
                .with_context(|| format!("setting up {what}"))?;
            let sock = match sock_of.get(&(end.netns.as_str(), v6)) {
                Some(&i) => i,
                None => {
                    let fd = raw_socket(v6).with_context(|| format!("setting up {what}"))?;
                    engine.socks.push(Sock { fd, v6 });
                    sock_of.insert((&end.netns, v6), engine.socks.len() - 1);
                    engine.socks.len() - 1
                }
            };
            let index = engine.tunnels.len();
            let route = (sock, end.local, end.remote, end.ikey, l2);
            if let Some(&other) = engine.routes.get(&route) {
                bail!(
                    "{what} and tunnel `{}` would receive the same packets (same local, remote, key and type): give them different keys",
                    spec.tunnels[other].name
                );
            }
            engine.routes.insert(route, index);
            engine
                .pairs
                .entry((sock, end.local, end.remote))
                .or_insert(index);
            engine
                .tunnels
                .push(Tunnel::new(end, dev, sock, l2, slots[end.netns.as_str()]));
            engine.stats.tunnels.push(TunnelStats {
                name: end.name.clone(),
                netns: end.netns.clone(),
                ..TunnelStats::default()
            });
        }
        drop(home);
        // Room for the biggest IP packet: a kernel end on this machine
        // sends TCP super-packets whole across veths. Slots a cache line
        // apart from a page multiple, so packet heads do not share cache sets.
        engine.rx = Rx::new((RX_HEADROOM + 65535).next_multiple_of(64));
        engine.watch()?;
        transient.0.clear();
        Ok(engine)
    }

    pub(super) fn serve(
        &mut self,
        stats_path: &Path,
        stop: &AtomicBool,
        impairs: &mut ImpairFile,
    ) -> Result<()> {
        // SAFETY: epoll_event is plain data.
        let mut events = vec![unsafe { zeroed::<libc::epoll_event>() }; 256];
        let mut flushed = Instant::now();
        let mut fast_checked = Instant::now();
        let mut impairs_checked = Instant::now();
        let mut write_failed = false;
        while !stop.load(Ordering::Relaxed) {
            if super::control::RELOAD.swap(false, Ordering::Relaxed)
                && let Some(spec) = super::control::SPEC_PATH.get()
            {
                self.reload_from(spec);
            }
            // Stats are written when no packet waits (a write takes up to
            // a millisecond): with new counters, sleep only until they are due.
            let due = FLUSH_EVERY.saturating_sub(flushed.elapsed());
            let mut timeout = if self.dirty {
                (due.as_millis() as i32).clamp(1, EPOLL_TIMEOUT_MS)
            } else {
                EPOLL_TIMEOUT_MS
            };
            // Held packets leave on time (to the millisecond, as epoll counts).
            if let Some(next) = self.line.next_in(Instant::now()) {
                timeout = timeout.min(next.as_micros().div_ceil(1000) as i32);
            }
            // SAFETY: `events` has room for the count passed.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for packets (epoll_wait)");
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token >= SOCK_TOKEN {
                    self.decapsulate((token - SOCK_TOKEN) as usize);
                    if self.fast.is_some() {
                        for r in 0..self.rx.runs.len() {
                            self.try_fast(self.rx.runs[r].tunnel);
                        }
                    }
                } else {
                    self.encapsulate(token as usize);
                    self.try_fast(token as usize);
                }
            }
            self.release_due();
            // A change by `grelab impair` shows within a tenth of a second.
            if impairs_checked.elapsed() >= IMPAIRS_EVERY {
                if let Some(list) = impairs.changed() {
                    self.set_impairments(&list);
                }
                impairs_checked = Instant::now();
            }
            // Idle, or busy for long: then write anyway.
            if self.fast.is_some() && fast_checked.elapsed() >= FLUSH_EVERY {
                self.fast_results();
                self.refresh_fast();
                fast_checked = Instant::now();
            }
            let since = flushed.elapsed();
            if self.dirty && since >= FLUSH_EVERY && (n == 0 || since >= 4 * FLUSH_EVERY) {
                match write_stats(stats_path, &self.stats) {
                    Ok(()) => write_failed = false,
                    Err(e) if !write_failed => {
                        eprintln!("dataplane: {e:#}");
                        write_failed = true;
                    }
                    Err(_) => {}
                }
                self.dirty = false;
                flushed = Instant::now();
            }
        }
        Ok(())
    }
}

/// Devices of a setup in progress: dropped (setup failed) while their
/// descriptors are still open, it makes them non-persistent, so they go
/// with the descriptors.
pub(super) struct Transient(pub(super) Vec<std::os::fd::RawFd>);

impl Drop for Transient {
    fn drop(&mut self) {
        for fd in &self.0 {
            let _ = tun::set_persist(*fd, false);
        }
    }
}

/// Opens tunnel end `end`'s device in the current namespace (a TAP device
/// if `l2`), with offloads on or off; `transient` until setup completes.
pub(super) fn open_device(
    end: &TunnelEnd,
    l2: bool,
    ctl: std::os::fd::BorrowedFd,
    offload_on: bool,
    transient: &mut Transient,
) -> Result<File> {
    let dev = tun::open(&end.name, l2, end.mtu, ctl)?;
    transient.0.push(dev.as_raw_fd());
    // Set either way: a persistent device keeps the last setting.
    let flags = if offload_on {
        libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
    } else {
        0
    };
    tun::set_offload(dev.as_raw_fd(), flags)?;
    Ok(dev)
}

impl Engine {
    /// Adds every device and socket to the epoll set.
    fn watch(&self) -> Result<()> {
        for (i, t) in self.tunnels.iter().enumerate() {
            epoll_add(&self.epoll, t.dev.as_raw_fd(), i as u64)?;
        }
        for (i, s) in self.socks.iter().enumerate() {
            epoll_add(&self.epoll, s.fd.as_raw_fd(), SOCK_TOKEN + i as u64)?;
        }
        Ok(())
    }
}
