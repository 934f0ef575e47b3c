//! The userspace GRE dataplane, for kernels without ip_gre: per tunnel end a
//! TUN (gre, ip6gre) or TAP (gretap, ip6gretap) device in the end's
//! namespace, and real GRE on the wire through raw IP-protocol-47 sockets,
//! wire-compatible with Linux ip_gre. One process serves a whole lab.
//!
//! Setup creates every device and socket from one thread, entering each
//! namespace in turn (an fd stays bound to the namespace it was made in);
//! then a single epoll loop moves packets. There is one raw socket per
//! (namespace, address family), so a hub with many tunnels gets each packet
//! once, and received packets are demultiplexed by (destination, source, key).
//!
//! Devices run with offloads, as a virtio NIC: the kernel hands over TCP
//! super-packets of up to 64 KiB and leaves checksums to us. Each is cut
//! into MTU-sized segments (as the kernel's TSO would) before GRE, and the
//! whole train leaves in one sendmmsg; received in-order segments of a flow
//! are joined back into one super-packet per device write (GRO). The wire
//! sees the same GRE packets as without (`GRELAB_DP_OFFLOAD=0`, to compare).
//! One thread: a second one, on 2 cores, cost more in cross-CPU copies and
//! wakeups than it gained.

pub mod demux;
pub mod fastpath;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use self::fastpath::{Encap, FastPath};
use crate::plan::TunnelEnd;
use crate::sys::process::{self, Identity, Pidfd};
use crate::sys::{netns, rtnl, tun};
use crate::topology::overhead;
use crate::wire::gre;

/// What one dataplane process serves: the userspace tunnel ends of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub lab: String,
    pub tunnels: Vec<TunnelEnd>,
}

/// Counters of a running dataplane, as written to its stats file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// One entry per tunnel end, in the order of the spec.
    pub tunnels: Vec<TunnelStats>,
    /// GRE packets for no configured tunnel (wrong source or destination).
    pub unmatched: u64,
    /// Packets too short or not GRE version 0.
    pub malformed: u64,
}

/// Counters of one tunnel end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStats {
    pub name: String,
    pub netns: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Right source and destination, but a key no tunnel expects (counted
    /// on the first tunnel between those addresses).
    pub drop_key: u64,
    /// Bad GRE checksum, or checksum presence differing from the config.
    pub drop_checksum: u64,
    /// Sequence number missing or not newer than the last accepted.
    pub drop_sequence: u64,
    /// Payload type not for this device (IP on TAP, Ethernet on TUN).
    pub drop_protocol: u64,
    /// Outer header marked CE over an inner packet that is not
    /// ECN-capable (RFC 6040: dropped, as ip_gre does).
    #[serde(default)]
    pub drop_ecn: u64,
    /// Packets read from the device that could not be sent.
    pub tx_errors: u64,
    /// Decapsulated packets the device refused.
    #[serde(default)]
    pub rx_errors: u64,
    /// TCP super-packets read from the device and cut into segments (TSO).
    #[serde(default)]
    pub tx_gso: u64,
    /// Device writes that joined several received TCP segments (GRO).
    #[serde(default)]
    pub rx_gro: u64,
    /// Whether the in-kernel fast path (`fastpath`) carries the tunnel.
    #[serde(default)]
    pub fast_path: bool,
    /// Why it does not (yet), while it does not.
    #[serde(default)]
    pub fast_path_off: Option<String>,
    /// Packets and inner bytes the fast path carried, TCP super-packets
    /// counting once; not in the counters above.
    #[serde(default)]
    pub fast_tx_packets: u64,
    #[serde(default)]
    pub fast_tx_bytes: u64,
    #[serde(default)]
    pub fast_rx_packets: u64,
    #[serde(default)]
    pub fast_rx_bytes: u64,
}

/// GRE packets received per socket per wakeup.
const BATCH: usize = 64;
/// Room in front of each received packet for the virtio header.
const RX_HEADROOM: usize = 16;
/// Open runs a received TCP segment looks back over for its flow's.
const GRO_SCAN: usize = 8;
/// Device reads per wakeup, so one busy tunnel does not starve the others.
const READS: usize = 64;
/// The longest device read: virtio header, Ethernet header with a VLAN
/// tag, and a 64 KiB super-packet.
const READ_MAX: usize = tun::VNET_HDR_LEN + 18 + 65536;
/// Device reads buffered for one send batch.
const ARENA: usize = 4 * READ_MAX;
/// GRE packets per sendmmsg.
const TX_MSGS: usize = 256;
/// Header room per sent message: outer IPv4 and GRE headers, then the
/// inner headers of a segment (starting at INNER_AT).
const HDR_BLOCK: usize = 256;
const INNER_AT: usize = 20 + gre::MAX_HEADER_LEN;
/// Space for the IPv6 control messages of one packet (8-byte words).
const CTRL_WORDS: usize = 16;
const EPOLL_TIMEOUT_MS: i32 = 200;
/// How long a send waits for room in a full socket buffer before the rest
/// of its batch is lost.
const SEND_WAIT_MS: i32 = 50;
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Epoll tokens at or above this are sockets; below, tunnel devices.
const SOCK_TOKEN: u64 = 1 << 32;
const IPPROTO_GRE: i32 = 47;

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
fn run_with(
    spec: &Spec,
    stats_path: &Path,
    on_ready: impl FnOnce(),
    stop: &AtomicBool,
    offload: bool,
    fast: bool,
) -> Result<()> {
    let mut engine = Engine::new(spec, offload)?;
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
    let served = engine.serve(stats_path, stop);
    let written = write_stats(stats_path, &engine.stats);
    served.and(written)
}

/// Reads the counters a dataplane wrote to `path`.
pub fn read_stats(path: &Path) -> Result<Stats> {
    let text =
        fs::read(path).with_context(|| format!("reading dataplane stats {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("parsing dataplane stats {}", path.display()))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The body of the hidden `grelab dataplane` subcommand: serves the spec in
/// `spec_path` until SIGTERM or SIGINT, reporting `ready` or `error: ...`
/// on `ready_fd`.
pub fn serve(spec_path: &Path, stats_path: &Path, ready_fd: Option<RawFd>) -> Result<()> {
    let mut ready = ready_fd.map(ready_pipe).transpose()?;
    let result = (|| {
        let text = fs::read(spec_path)
            .with_context(|| format!("reading dataplane spec {}", spec_path.display()))?;
        let spec: Spec = serde_json::from_slice(&text)
            .with_context(|| format!("parsing dataplane spec {}", spec_path.display()))?;
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only stores to an atomic.
            unsafe { sigaction(signal, &action) }.context("installing a signal handler")?;
        }
        let ready_now = || {
            eprintln!(
                "grelab dataplane {}: lab `{}`: serving {} tunnel ends",
                std::process::id(),
                spec.lab,
                spec.tunnels.len()
            );
            tell(&mut ready, "ready");
        };
        run(&spec, stats_path, ready_now, &STOP)
    })();
    if let Err(e) = &result {
        tell(&mut ready, &format!("error: {e:#}"));
    }
    result
}

/// Takes `fd` as the ready pipe if it is one: the write end of a pipe, not
/// a standard stream. Anything else is refused (exit 2) rather than
/// written to or closed.
fn ready_pipe(fd: RawFd) -> Result<File> {
    let bad = |why: &str| {
        crate::error::bad_input(format!(
            "--ready-fd {fd}: {why}; it takes the write end of a pipe that the \
             starting grelab reads (`grelab up` starts the dataplane with it)"
        ))
    };
    if fd <= 2 {
        return Err(bad("0, 1 and 2 are the standard streams"));
    }
    // SAFETY: plain data; zero is valid.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: fstat only fills `st`, and fails on a closed descriptor.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(bad(&format!("not an open descriptor ({e})")));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(bad("not a pipe"));
    }
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_WRONLY {
        return Err(bad("not a pipe's write end"));
    }
    // SAFETY: an inherited pipe end that nothing else in this process uses;
    // the dataplane owns it from here and closes it once it said ready.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Writes one line to the ready pipe, then closes it.
fn tell(ready: &mut Option<File>, line: &str) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{}", line.replace('\n', " "));
    }
}

/// Starts a detached dataplane process serving `spec`, with its files in
/// `lab_dir`; returns its identity once it is ready.
pub fn start(lab_dir: &Path, spec: &Spec) -> Result<Identity> {
    let exe =
        std::env::current_exe().context("finding the grelab executable to start the dataplane")?;
    launch(lab_dir, spec, |spec_path, stats_path| {
        // This very executable, even if its path now names another file:
        // `find` knows a dataplane by running the same one.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(&exe);
        cmd.arg("dataplane").arg("--spec").arg(spec_path);
        cmd.arg("--stats")
            .arg(stats_path)
            .arg("--ready-fd")
            .arg("3");
        cmd
    })
}

/// Where the dataplane of the lab with record directory `lab_dir` writes
/// its counters.
pub fn stats_path(lab_dir: &Path) -> std::path::PathBuf {
    lab_dir.join("dataplane-stats.json")
}

/// Where a started dataplane's identity is kept beside its spec, so that
/// `down` finds it without the lab's record.
fn identity_path(lab_dir: &Path) -> std::path::PathBuf {
    lab_dir.join("dataplane-identity.json")
}

/// The identity `launch` left in `lab_dir`, if any.
fn read_identity(lab_dir: &Path) -> Option<Identity> {
    serde_json::from_slice(&fs::read(identity_path(lab_dir)).ok()?).ok()
}

/// Writes the spec, spawns `command(spec_path, stats_path)` in a new session
/// with the ready pipe on fd 3, waits for its ready line and records its
/// identity.
fn launch(
    lab_dir: &Path,
    spec: &Spec,
    command: impl FnOnce(&Path, &Path) -> Command,
) -> Result<Identity> {
    let spec_path = lab_dir.join("dataplane.json");
    let stats_path = stats_path(lab_dir);
    let log_path = lab_dir.join("dataplane.log");
    let json = serde_json::to_vec_pretty(spec).context("encoding the dataplane spec")?;
    fs::write(&spec_path, json).with_context(|| format!("writing {}", spec_path.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    let mut cmd = command(&spec_path, &stats_path);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let w = write_end.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // dup2 onto itself would keep close-on-exec; clear it instead.
            let r = if w == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(w, 3)
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut child = cmd.spawn().context("spawning the dataplane process")?;
    drop(write_end);
    let pid = child.id();
    match read_line(read_end, Duration::from_secs(10)) {
        Ok(Some(line)) if line == "ready" => {
            // Our unreaped child: its pid is its own while we read /proc.
            let tmp = lab_dir.join("dataplane-identity.json.tmp");
            let recorded = match Identity::of(pid) {
                None => Err(anyhow::anyhow!(
                    "the userspace GRE dataplane exited once ready (log: {})",
                    log_path.display()
                )),
                Some(id) => serde_json::to_vec(&id)
                    .map_err(io::Error::from)
                    .and_then(|json| fs::write(&tmp, json))
                    .and_then(|()| fs::rename(&tmp, identity_path(lab_dir)))
                    .with_context(|| format!("recording the dataplane in {}", tmp.display()))
                    .map(|()| id),
            };
            if recorded.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
            recorded
        }
        Ok(line) => {
            let _ = child.wait();
            let why = match line {
                Some(l) => l.strip_prefix("error: ").unwrap_or(&l).to_owned(),
                None => "it exited without saying why".to_owned(),
            };
            bail!(
                "the userspace GRE dataplane failed to start: {why} (log: {})",
                log_path.display()
            )
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.context(format!(
                "waiting for the dataplane to start (log: {})",
                log_path.display()
            )))
        }
    }
}

/// Reads one line from `fd` within `timeout`; None at end of file.
fn read_line(fd: OwnedFd, timeout: Duration) -> Result<Option<String>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + timeout;
    let mut file = File::from(fd);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer within {} s", timeout.as_secs());
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("polling the ready pipe"),
        }
        let n = file.read(&mut buf).context("reading the ready pipe")?;
        if n == 0 {
            return Ok(None);
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
        }
    }
}

/// Stops the dataplane `id`: SIGTERM, SIGKILL after 3 s, through a pidfd
/// opened on that very process. Ok(false) when it no longer runs.
pub fn stop(id: &Identity) -> Result<bool> {
    let Some(p) = Pidfd::open(id) else {
        return Ok(false);
    };
    process::terminate(std::slice::from_ref(&p), Duration::from_secs(3))
        .with_context(|| format!("stopping the dataplane (pid {})", id.pid))?;
    Ok(true)
}

/// Whether the dataplane `id` still runs (a recycled pid is another process).
pub fn is_running(id: &Identity) -> bool {
    id.is_running()
}

/// The running dataplanes of the lab in `lab_dir`: `recorded` (the lab's
/// record) or the identity `launch` left beside the spec; when neither
/// runs, any process in /proc that is unmistakably one: root's, running
/// this grelab executable as `dataplane --spec <the lab's spec>`.
pub fn find(lab_dir: &Path, recorded: Option<Identity>) -> Vec<Identity> {
    let mut known: Vec<Identity> = recorded
        .into_iter()
        .chain(read_identity(lab_dir))
        .filter(is_running)
        .collect();
    known.dedup();
    if !known.is_empty() {
        return known;
    }
    let Some(exe) = process::own_exe() else {
        return known;
    };
    let spec = lab_dir.join("dataplane.json");
    let want: [&[u8]; 3] = [b"dataplane", b"--spec", spec.as_os_str().as_encoded_bytes()];
    let is_ours = |pid| {
        let args = process::cmdline(pid);
        args.len() > want.len()
            && args[1..=want.len()].iter().zip(want).all(|(a, w)| a == w)
            && process::is_root(pid)
    };
    process::pids()
        .into_iter()
        .filter_map(Identity::of)
        .filter(|id| id.exe == exe)
        // Identity again after the checks: they read that same process.
        .filter(|id| is_ours(id.pid) && id.is_running())
        .collect()
}

/// Writes `stats` to `path` atomically (temp file, then rename).
fn write_stats(path: &Path, stats: &Stats) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let json = serde_json::to_vec_pretty(stats).context("encoding dataplane stats")?;
    fs::write(&tmp, json).with_context(|| format!("writing {}", Path::new(&tmp).display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming the stats file into {}", path.display()))
}

/// One tunnel end being served.
struct Tunnel {
    end: TunnelEnd,
    dev: File,
    sock: usize,
    l2: bool,
    /// GRE header length of sent packets.
    hlen: usize,
    remote: (libc::sockaddr_storage, libc::socklen_t),
    tx_seq: u32,
    rx_seq: Option<u32>,
    /// The next outer IPv4 ID.
    tx_id: u16,
    alive: bool,
    /// The namespace's index in `Engine::namespaces`.
    slot: usize,
}

/// One raw GRE socket of one namespace and address family.
struct Sock {
    fd: OwnedFd,
    v6: bool,
}

/// Receive lookup: (socket, outer destination, outer source, key, carries Ethernet).
type Route = (usize, IpAddr, IpAddr, Option<u32>, bool);

/// Buffers for receiving a batch of GRE packets and writing their payloads
/// to devices, allocated once.
struct Rx {
    slot: usize,
    data: Vec<u8>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    names: Vec<libc::sockaddr_in6>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    /// Accepted packets of the batch, in order.
    pkts: Vec<RxPkt>,
    /// What is written to the devices: single packets or joined runs.
    runs: Vec<Run>,
    wiov: Vec<libc::iovec>,
}

/// An accepted packet: its inner bytes in `Rx::data`, and the next packet
/// of its run.
#[derive(Clone, Copy)]
struct RxPkt {
    start: usize,
    end: usize,
    next: usize,
}

/// Packets for one device write: one, or TCP segments of a flow joined.
#[derive(Clone, Copy)]
struct Run {
    tunnel: usize,
    head: usize,
    tail: usize,
    count: usize,
    /// Inner bytes of the packets as received, and as written.
    bytes: usize,
    len: usize,
    /// Layout of the packets, if TCP that may take more segments.
    tcp: Option<offload::Tcp>,
    /// Payload length of the first segment: the most a next may carry.
    mss: usize,
    open: bool,
    /// The virtio header of a single packet.
    vh: offload::VnetHdr,
}

const NO_PKT: usize = usize::MAX;

impl Rx {
    fn new(slot: usize) -> Self {
        // SAFETY: these C structs are plain data; zero is a valid value.
        let (iov, msg, name) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Rx {
            slot,
            data: vec![0; slot * BATCH],
            iov: vec![iov; BATCH],
            msgs: vec![msg; BATCH],
            names: vec![name; BATCH],
            ctrl: vec![[0; CTRL_WORDS]; BATCH],
            pkts: Vec::with_capacity(BATCH),
            runs: Vec::with_capacity(BATCH),
            wiov: vec![iov; BATCH],
        }
    }

    /// Receives up to a batch from raw socket `fd`; returns the count.
    fn receive(&mut self, fd: RawFd, v6: bool) -> usize {
        for i in 0..BATCH {
            // Headroom in front of each packet takes the virtio header later.
            self.iov[i] = libc::iovec {
                iov_base: self.data[i * self.slot + RX_HEADROOM..].as_mut_ptr().cast(),
                iov_len: self.slot - RX_HEADROOM,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_flags = 0;
            if v6 {
                h.msg_name = std::ptr::addr_of_mut!(self.names[i]).cast();
                h.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = CTRL_WORDS * 8;
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        // SAFETY: every message points at buffers owned by `self`.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        // Errors are EAGAIN or ones ICMP left on the socket; reading clears them.
        n.max(0) as usize
    }

    /// Queues the accepted inner packet at `start..end` for tunnel `tunnel`
    /// (a TAP device if `l2`, of MTU `mtu`), joining it to an open run of
    /// its TCP flow when it continues it (with `gro`).
    fn add(&mut self, tunnel: usize, l2: bool, mtu: usize, start: usize, end: usize, gro: bool) {
        let k = self.pkts.len();
        self.pkts.push(RxPkt {
            start,
            end,
            next: NO_PKT,
        });
        let pkt = &self.data[start..end];
        let tcp = if gro {
            offload::tcp_layout(pkt, l2)
        } else {
            None
        };
        let mergeable = tcp.is_some_and(|t| offload::mergeable(pkt, &t));
        if let Some(t) = tcp {
            // The newest open run of this flow: join it or close it, so a
            // later segment never jumps ahead of this packet.
            for r in self.runs.iter_mut().rev().take(GRO_SCAN) {
                let Some(rt) = r.tcp.filter(|_| r.open && r.tunnel == tunnel) else {
                    continue;
                };
                let last = &self.data[self.pkts[r.tail].start..self.pkts[r.tail].end];
                if !offload::same_flow(last, &rt, pkt, &t) {
                    continue;
                }
                let payload = pkt.len() - t.end;
                if mergeable
                    && rt == t
                    && payload <= r.mss
                    && r.len - t.l3 + payload <= 65535
                    && offload::continues(last, pkt, &t)
                {
                    self.pkts[r.tail].next = k;
                    r.tail = k;
                    r.count += 1;
                    r.bytes += pkt.len();
                    r.len += payload;
                    r.open = payload == r.mss && !offload::has_psh(pkt, &t);
                    return;
                }
                r.open = false;
                break;
            }
        }
        let open = mergeable && tcp.is_some_and(|t| !offload::has_psh(pkt, &t));
        self.runs.push(Run {
            tunnel,
            head: k,
            tail: k,
            count: 1,
            bytes: pkt.len(),
            len: pkt.len(),
            tcp: tcp.filter(|_| open),
            mss: tcp.map_or(0, |t| pkt.len() - t.end),
            open,
            vh: offload::unfinished(pkt, l2, mtu).unwrap_or_default(),
        });
    }

    /// Writes every queued run to its device, led by its virtio header,
    /// counting the packets delivered or refused.
    fn write_all(&mut self, tunnels: &[Tunnel], stats: &mut [TunnelStats]) {
        for r in &self.runs {
            let t = &tunnels[r.tunnel];
            let st = &mut stats[r.tunnel];
            let head = self.pkts[r.head];
            let vh = match r.tcp.filter(|_| r.count > 1) {
                Some(tcp) => {
                    let last = self.pkts[r.tail];
                    let psh = offload::has_psh(&self.data[last.start..last.end], &tcp);
                    offload::seal(
                        &mut self.data[head.start..head.end],
                        &tcp,
                        r.len,
                        r.mss,
                        psh,
                    )
                }
                None => r.vh,
            };
            let at = head.start - tun::VNET_HDR_LEN;
            vh.emit(&mut self.data[at..head.start]);
            self.wiov[0] = libc::iovec {
                iov_base: self.data[at..].as_mut_ptr().cast(),
                iov_len: head.end - at,
            };
            let (mut k, mut n) = (head.next, 1);
            while k != NO_PKT {
                let p = self.pkts[k];
                let skip = r.tcp.map_or(0, |t| t.end);
                self.wiov[n] = libc::iovec {
                    iov_base: self.data[p.start + skip..].as_mut_ptr().cast(),
                    iov_len: p.end - p.start - skip,
                };
                (k, n) = (p.next, n + 1);
            }
            // SAFETY: the iovecs point into `self.data`. A TUN/TAP write
            // takes the whole packet or fails.
            let w = unsafe { libc::writev(t.dev.as_raw_fd(), self.wiov.as_ptr(), n as i32) };
            if w == (tun::VNET_HDR_LEN + r.len) as isize {
                st.rx_packets += r.count as u64;
                st.rx_bytes += r.bytes as u64;
                st.rx_gro += u64::from(r.count > 1);
            } else {
                st.rx_errors += r.count as u64;
            }
        }
        self.runs.clear();
        self.pkts.clear();
    }
}

/// Device reads and the GRE packets made of them, for one sendmmsg,
/// allocated once.
struct Tx {
    /// Packets read from the device, each led by its virtio header.
    arena: Vec<u8>,
    /// Per message: outer IPv4 header, GRE header, then the inner headers
    /// of a segment, ending at INNER_AT + their length.
    hdrs: Vec<[u8; HDR_BLOCK]>,
    iov: Vec<[libc::iovec; 2]>,
    msgs: Vec<libc::mmsghdr>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    /// Inner bytes of each message, and whether it was sent.
    inner: Vec<usize>,
    ok: Vec<bool>,
    n: usize,
}

/// How to wrap the packets of one device read.
struct Outer {
    protocol: u16,
    ttl: u8,
    tos: u8,
    df: bool,
}

impl Tx {
    fn new() -> Self {
        // SAFETY: these C structs are plain data; zero is a valid value.
        let (iov, msg) = unsafe { (zeroed(), zeroed()) };
        Tx {
            arena: vec![0; ARENA],
            hdrs: vec![[0; HDR_BLOCK]; TX_MSGS],
            iov: vec![[iov; 2]; TX_MSGS],
            msgs: vec![msg; TX_MSGS],
            ctrl: vec![[0; CTRL_WORDS]; TX_MSGS],
            inner: vec![0; TX_MSGS],
            ok: vec![false; TX_MSGS],
            n: 0,
        }
    }

    /// Wraps the packet in `arena[at..end]` (read from `t`'s device, with
    /// virtio header `vh`) in GRE: as it is, after finishing its checksum,
    /// or cut into segments first.
    fn encapsulate(
        &mut self,
        t: &mut Tunnel,
        st: &mut TunnelStats,
        sock: &Sock,
        vh: offload::VnetHdr,
        at: usize,
        end: usize,
    ) {
        let inner = &self.arena[at..end];
        let protocol = if t.l2 {
            gre::ETHERTYPE_TEB
        } else {
            match inner[0] >> 4 {
                4 => gre::ETHERTYPE_IPV4,
                6 => gre::ETHERTYPE_IPV6,
                _ => {
                    st.tx_errors += 1;
                    return;
                }
            }
        };
        let (ttl, tos, df) = outer_fields(&t.end, t.l2, inner);
        let outer = Outer {
            protocol,
            ttl,
            tos,
            df,
        };
        if vh.gso_type == offload::GSO_NONE {
            if vh.flags & offload::NEEDS_CSUM != 0
                && !offload::finish_checksum(
                    &mut self.arena[at..end],
                    usize::from(vh.csum_start),
                    usize::from(vh.csum_offset),
                )
            {
                st.tx_errors += 1;
                return;
            }
            if self.n == TX_MSGS {
                self.send(sock, st);
            }
            self.push(t, &outer, 0, at..end);
            return;
        }
        let Some(g) = offload::gso_layout(inner, t.l2, &vh, HDR_BLOCK - INNER_AT) else {
            st.tx_errors += 1;
            return;
        };
        st.tx_gso += 1;
        for i in 0..g.segs {
            if self.n == TX_MSGS {
                self.send(sock, st);
            }
            let payload = offload::segment(
                &self.arena[at..end],
                &g,
                i,
                &mut self.hdrs[self.n][INNER_AT..],
            );
            self.push(t, &outer, g.tcp.end, at + payload.start..at + payload.end);
        }
    }

    /// Adds a message: outer and GRE headers in front of `hl` inner header
    /// bytes already in place, then `payload` from the arena.
    fn push(&mut self, t: &mut Tunnel, o: &Outer, hl: usize, payload: std::ops::Range<usize>) {
        let i = self.n;
        let sequence = t.end.sequence.then(|| {
            t.tx_seq = t.tx_seq.wrapping_add(1);
            t.tx_seq
        });
        let repr = gre::Repr {
            protocol: o.protocol,
            checksum: t.end.checksum,
            key: t.end.okey,
            sequence,
        };
        let g = INNER_AT - t.hlen;
        let block = &mut self.hdrs[i];
        // The header alone fits: emit cannot fail.
        let _ = repr.emit(&mut block[g..INNER_AT]);
        if t.end.checksum {
            // The sum covers the inner packet too, in two pieces.
            block[g + 4..g + 6].fill(0);
            let sum = offload::csum_add(0, &block[g..INNER_AT + hl]);
            let sum = !offload::csum_fold(offload::csum_add(sum, &self.arena[payload.clone()]));
            block[g + 4..g + 6].copy_from_slice(&sum.to_be_bytes());
        }
        let inner = hl + payload.len();
        let (start, ctrl_len) = match (t.end.local, t.end.remote) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let total = 20 + t.hlen + inner;
                let h = &mut block[g - 20..g];
                ipv4_header(h, total, o.tos, o.ttl, o.df, src, dst);
                // The ID from the tunnel's counter, as ip_gre's; given
                // here, since the kernel gives DF packets of a raw socket
                // ID 0.
                h[4..6].copy_from_slice(&t.tx_id.to_be_bytes());
                t.tx_id = t.tx_id.wrapping_add(1);
                (g - 20, 0)
            }
            (IpAddr::V6(src), _) => (g, ipv6_control(&mut self.ctrl[i], src, o.ttl, o.tos)),
            _ => unreachable!("address families are checked at setup"),
        };
        self.iov[i] = [
            libc::iovec {
                iov_base: block[start..].as_mut_ptr().cast(),
                iov_len: INNER_AT + hl - start,
            },
            libc::iovec {
                iov_base: self.arena[payload.start..].as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ];
        let h = &mut self.msgs[i].msg_hdr;
        h.msg_name = std::ptr::addr_of_mut!(t.remote.0).cast();
        h.msg_namelen = t.remote.1;
        h.msg_iov = self.iov[i].as_mut_ptr();
        h.msg_iovlen = 2;
        h.msg_control = if ctrl_len > 0 {
            self.ctrl[i].as_mut_ptr().cast()
        } else {
            std::ptr::null_mut()
        };
        h.msg_controllen = ctrl_len;
        h.msg_flags = 0;
        self.inner[i] = inner;
        self.n += 1;
    }

    /// Sends the queued messages on `sock`, counting them on `st`.
    fn send(&mut self, sock: &Sock, st: &mut TunnelStats) {
        let n = std::mem::take(&mut self.n);
        send_batch(sock.fd.as_raw_fd(), &mut self.msgs, &mut self.ok, n);
        for i in 0..n {
            if self.ok[i] {
                st.tx_packets += 1;
                st.tx_bytes += self.inner[i] as u64;
            } else {
                st.tx_errors += 1;
            }
        }
    }
}

/// Everything the loop works on.
struct Engine {
    tunnels: Vec<Tunnel>,
    socks: Vec<Sock>,
    routes: HashMap<Route, usize>,
    /// (socket, destination, source) to the first tunnel of that pair, to
    /// count wrong keys.
    pairs: HashMap<(usize, IpAddr, IpAddr), usize>,
    stats: Stats,
    dirty: bool,
    rx: Rx,
    tx: Tx,
    /// Whether received TCP segments are joined for the devices.
    gro: bool,
    epoll: OwnedFd,
    /// The tunnels' namespaces, by slot.
    namespaces: Vec<File>,
    fast: Option<Fast>,
}

/// The in-kernel fast path of the dataplane's eligible tunnels. Attaching
/// costs an RCU grace period per hook (milliseconds), and so does detaching
/// at exit: a tunnel gets it once it has carried FAST_AFTER packets through
/// userspace, at most FAST_MAX tunnels get it, and a thread of its own does
/// the attaching, so the packet loop never waits for it.
struct Fast {
    path: Arc<FastPath>,
    tunnels: Vec<FastState>,
    /// Tunnels attached or being attached.
    granted: usize,
    /// To the attaching thread; dropped first, to stop it.
    jobs: Option<mpsc::Sender<AttachJob>>,
    done: mpsc::Receiver<(usize, Outcome)>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Why a tunnel waits once FAST_MAX are granted.
    full: String,
}

/// What the attaching thread reports of a tunnel.
enum Outcome {
    On,
    /// Not now, for this reason (no route yet; netfilter rules, found when
    /// attaching or later, then detached): try again after the delay.
    Later(String, Duration),
    /// Attaching failed: it stays in userspace.
    Failed(anyhow::Error),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FastState {
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
const FAST_AFTER: u64 = 64;
/// Tunnel ends per dataplane on the fast path: bounds what detaching adds
/// to `down` when every tunnel of a large lab carries a flow (about 10 ms a
/// hook here: down of basic with both ends on it, 64 against 24 ms).
const FAST_MAX: usize = 32;
/// How long after a failed attach (no route yet) to try again.
const FAST_RETRY: Duration = Duration::from_secs(1);
/// How often the namespaces of tunnel ends on the fast path are checked for
/// netfilter rules (which it would bypass): a rule added takes effect
/// within this (kernel GRE and the userspace path see it at once).
const NETFILTER_CHECK: Duration = Duration::from_secs(1);
/// How long a tunnel end kept off the fast path by netfilter rules waits
/// before its namespace is checked again.
const NETFILTER_RETRY: Duration = Duration::from_secs(5);

/// What the attaching thread needs to know of a tunnel.
struct AttachJob {
    index: usize,
    netns: File,
    end: TunnelEnd,
    slot: usize,
    /// The userspace path's next IPv4 ID, for the fast path to go on from.
    id_base: u16,
}

impl Drop for Fast {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Enters the thread's original namespace again when dropped.
struct Home(File);

impl Drop for Home {
    fn drop(&mut self) {
        if let Err(e) = netns::enter(&self.0) {
            eprintln!("dataplane: returning to the original network namespace: {e:#}");
        }
    }
}

impl Engine {
    fn new(spec: &Spec, offload_on: bool) -> Result<Engine> {
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
            let dev = tun::open(&end.name, l2, end.mtu, ctl)
                .with_context(|| format!("setting up {what}"))?;
            transient.0.push(dev.as_raw_fd());
            // Set either way: a persistent device keeps the last setting.
            let flags = if offload_on {
                libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
            } else {
                0
            };
            tun::set_offload(dev.as_raw_fd(), flags)
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
            engine.tunnels.push(Tunnel {
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
                slot: slots[end.netns.as_str()],
            });
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
        for (i, t) in engine.tunnels.iter().enumerate() {
            epoll_add(&engine.epoll, t.dev.as_raw_fd(), i as u64)?;
        }
        for (i, s) in engine.socks.iter().enumerate() {
            epoll_add(&engine.epoll, s.fd.as_raw_fd(), SOCK_TOKEN + i as u64)?;
        }
        transient.0.clear();
        Ok(engine)
    }

    /// Sets up the fast path's maps; the programs are attached per tunnel
    /// once it carries traffic (see `try_fast`). Without eBPF, one line in
    /// the log says so and every packet goes through userspace.
    fn enable_fast_path(&mut self) {
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
            .map(|(t, st)| {
                if fastpath::carries(&t.end) {
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
    fn try_fast(&mut self, ti: usize) {
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
    fn fast_results(&mut self) {
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
    fn refresh_fast(&mut self) {
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

    fn serve(&mut self, stats_path: &Path, stop: &AtomicBool) -> Result<()> {
        // SAFETY: epoll_event is plain data.
        let mut events = vec![unsafe { zeroed::<libc::epoll_event>() }; 256];
        let mut flushed = Instant::now();
        let mut fast_checked = Instant::now();
        let mut write_failed = false;
        while !stop.load(Ordering::Relaxed) {
            // Stats are written when no packet waits (a write takes up to
            // a millisecond): with new counters, sleep only until they are due.
            let due = FLUSH_EVERY.saturating_sub(flushed.elapsed());
            let timeout = if self.dirty {
                (due.as_millis() as i32).clamp(1, EPOLL_TIMEOUT_MS)
            } else {
                EPOLL_TIMEOUT_MS
            };
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

    /// Reads up to READS packets from tunnel `ti`'s device, wraps them (or
    /// their segments) in GRE and an outer header, and sends them in batches.
    fn encapsulate(&mut self, ti: usize) {
        let Engine {
            tunnels,
            socks,
            stats,
            tx,
            epoll,
            dirty,
            ..
        } = self;
        let t = &mut tunnels[ti];
        let st = &mut stats.tunnels[ti];
        let sock = &socks[t.sock];
        let mut pos = 0;
        let mut reads = 0;
        while t.alive && reads < READS {
            if tx.arena.len() - pos < READ_MAX {
                tx.send(sock, st);
                pos = 0;
            }
            let len = match (&t.dev).read(&mut tx.arena[pos..pos + READ_MAX]) {
                Ok(0) => break,
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The kernel dropped a packet it could not hand over.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EFAULT)) => {
                    st.tx_errors += 1;
                    *dirty = true;
                    reads += 1;
                    continue;
                }
                Err(e) => {
                    eprintln!(
                        "dataplane: reading device `{}` in `{}` failed, no longer serving it: {e}",
                        t.end.name, t.end.netns
                    );
                    t.alive = false;
                    epoll_del(epoll, t.dev.as_raw_fd());
                    break;
                }
            };
            reads += 1;
            *dirty = true;
            if len <= tun::VNET_HDR_LEN {
                st.tx_errors += 1;
                continue;
            }
            let vh = offload::VnetHdr::parse(&tx.arena[pos..]);
            let (at, end) = (pos + tun::VNET_HDR_LEN, pos + len);
            pos = end.next_multiple_of(16);
            tx.encapsulate(t, st, sock, vh, at, end);
        }
        if tx.n > 0 {
            tx.send(sock, st);
        }
    }

    /// Receives up to a batch of GRE packets on socket `si` and delivers
    /// their payloads to their tunnels' devices, or counts why not.
    fn decapsulate(&mut self, si: usize) {
        let Engine {
            tunnels,
            socks,
            routes,
            pairs,
            stats,
            rx,
            dirty,
            gro,
            ..
        } = self;
        let sock = &socks[si];
        let n = rx.receive(sock.fd.as_raw_fd(), sock.v6);
        if n == 0 {
            return;
        }
        *dirty = true;
        for i in 0..n {
            let m = &rx.msgs[i];
            let base = i * rx.slot + RX_HEADROOM;
            let data = &rx.data[base..base + m.msg_len as usize];
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.malformed += 1;
                continue;
            }
            // The outer ECN field too, for RFC 6040: in the IPv4 header, or
            // in IPv6's IPV6_TCLASS.
            let (parsed, outer_tos) = if sock.v6 {
                // SAFETY: the kernel filled the control buffer `m` points at.
                let (dst, tclass) = unsafe { ipv6_received(&m.msg_hdr) };
                let src = Ipv6Addr::from(rx.names[i].sin6_addr.s6_addr);
                let parsed = dst.map(|dst| (IpAddr::V6(src), IpAddr::V6(dst), 0..data.len()));
                (parsed, tclass)
            } else {
                (parse_ipv4(data), data.get(1).copied().unwrap_or(0))
            };
            let Some((src, dst, gre_at)) = parsed else {
                stats.malformed += 1;
                continue;
            };
            let accepted = accept(
                tunnels,
                stats,
                routes,
                pairs,
                si,
                src,
                dst,
                &data[gre_at.clone()],
            );
            if let Some((ti, inner)) = accepted {
                let (l2, mtu) = (tunnels[ti].l2, tunnels[ti].end.mtu as usize);
                let g = base + gre_at.start;
                let protocol = u16::from_be_bytes([rx.data[g + 2], rx.data[g + 3]]);
                let at = g + inner;
                if !ecn_decapsulate(outer_tos, protocol, &mut rx.data[at..base + gre_at.end]) {
                    stats.tunnels[ti].drop_ecn += 1;
                    continue;
                }
                rx.add(ti, l2, mtu, at, base + gre_at.end, *gro);
            }
        }
        rx.write_all(tunnels, &mut stats.tunnels);
    }
}

/// Copies fast-path counters into `st`; true if they moved.
fn take_counters(st: &mut TunnelStats, c: &fastpath::Counters) -> bool {
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
struct OnFast {
    index: usize,
    slot: usize,
    end: TunnelEnd,
    /// Its egress program: closing it detaches the program.
    _egress: OwnedFd,
}

/// The attaching thread: takes jobs until the dataplane drops its sender,
/// reports each result, checks the namespaces of the tunnels it attached
/// for netfilter rules every NETFILTER_CHECK (detaching them where some
/// appeared), and holds the links (closing them detaches the programs)
/// until it ends.
fn attacher(
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
fn go_home(home: &File) -> bool {
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
fn recheck(
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
fn attach(
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

impl crate::dataplane::demux::End for Tunnel {
    fn checksum(&self) -> bool {
        self.end.checksum
    }
    fn sequence(&self) -> bool {
        self.end.sequence
    }
    fn last_sequence(&mut self) -> &mut Option<u32> {
        &mut self.rx_seq
    }
}

/// Checks one received GRE packet against the tunnels (`demux`): returns
/// its tunnel and where in `bytes` its payload starts, or counts why it is
/// dropped.
#[allow(clippy::too_many_arguments)]
fn accept(
    tunnels: &mut [Tunnel],
    stats: &mut Stats,
    routes: &HashMap<Route, usize>,
    pairs: &HashMap<(usize, IpAddr, IpAddr), usize>,
    sock: usize,
    src: IpAddr,
    dst: IpAddr,
    bytes: &[u8],
) -> Option<(usize, usize)> {
    use crate::dataplane::demux::{Drop, Table, classify};
    let mut table = Table {
        routes,
        pairs,
        ends: tunnels,
    };
    let drop = match classify(&mut table, sock, src, dst, bytes) {
        // A dead tunnel's device is closed: nothing to deliver, nothing to count.
        Ok(a) => {
            return tunnels[a.tunnel]
                .alive
                .then_some((a.tunnel, a.payload_offset));
        }
        Err(drop) => drop,
    };
    let st = &mut stats.tunnels;
    match drop {
        Drop::Malformed => stats.malformed += 1,
        Drop::Unmatched => stats.unmatched += 1,
        Drop::Key { tunnel } => st[tunnel].drop_key += 1,
        Drop::Protocol { tunnel } => st[tunnel].drop_protocol += 1,
        Drop::Checksum { tunnel } => st[tunnel].drop_checksum += 1,
        Drop::Sequence { tunnel } => st[tunnel].drop_sequence += 1,
        Drop::Empty { tunnel } if tunnels[tunnel].alive => st[tunnel].rx_errors += 1,
        Drop::Empty { .. } => {}
    }
    None
}

/// Sends messages 0..n of `msgs`, setting `ok` for each.
fn send_batch(fd: RawFd, msgs: &mut [libc::mmsghdr], ok: &mut [bool], n: usize) {
    let mut i = 0;
    while i < n {
        // SAFETY: messages i..n point at buffers their owner keeps alive.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                msgs[i..].as_mut_ptr(),
                (n - i) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            ok[i..i + r as usize].fill(true);
            i += r as usize;
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // A full socket buffer: wait for the receivers to drain it, as
            // a NIC's full ring holds the queue, rather than lose segments.
            Some(libc::EAGAIN) if writable(fd) => continue,
            // Still full, or a full queue further on: the rest is lost too.
            Some(libc::EAGAIN | libc::ENOBUFS) => {
                ok[i..n].fill(false);
                return;
            }
            // This message failed (no route, too big): skip it.
            _ => {
                ok[i] = false;
                i += 1;
            }
        }
    }
}

/// Outer TTL, TOS and DF for `inner`, as ip_gre does: TTL 0 inherits the
/// inner TTL (64 for non-IP), an odd TOS inherits the inner DSCP, the ECN
/// bits follow the inner packet's (RFC 6040, CE sent as ECT(0)), and DF is
/// set with pmtudisc, else copied from an IPv4 inner packet.
fn outer_fields(end: &TunnelEnd, l2: bool, inner: &[u8]) -> (u8, u8, bool) {
    let ip = if l2 {
        match inner.get(12..14) {
            Some([0x08, 0x00] | [0x86, 0xdd]) => &inner[14..],
            _ => &[][..],
        }
    } else {
        inner
    };
    let (inner_ttl, inner_tos, inner_df) = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => (ip[8], ip[1], ip[6] & 0x40 != 0),
        Some(6) if ip.len() >= 40 => (ip[7], (ip[0] << 4) | (ip[1] >> 4), false),
        _ => (64, 0, false),
    };
    let ttl = if end.ttl == 0 { inner_ttl } else { end.ttl };
    let base = if end.tos & 1 == 1 { inner_tos } else { end.tos };
    let ecn = match inner_tos & 3 {
        3 => 2,
        e => e,
    };
    (ttl, (base & !3) | ecn, end.pmtudisc || inner_df)
}

/// RFC 6040's decapsulation, as ip_tunnel_rcv does it: the outer ECN
/// field `outer` (the low bits of the TOS or traffic class) onto the
/// inner packet of GRE type `protocol` (for gretap, IP in an untagged
/// frame): outer CE marks an ECN-capable packet CE (fixing an IPv4
/// checksum), outer ECT(1) makes ECT(0) ECT(1), the rest stays. False for
/// CE over a Not-ECT packet, to be dropped. The fast path does the same.
fn ecn_decapsulate(outer: u8, protocol: u16, inner: &mut [u8]) -> bool {
    let outer = outer & 3;
    if outer == 0 || outer == 2 {
        return true;
    }
    let (kind, ip) = if protocol == gre::ETHERTYPE_TEB {
        match inner.get(12..14) {
            Some(&[a, b]) => (u16::from_be_bytes([a, b]), &mut inner[14..]),
            _ => return true,
        }
    } else {
        (protocol, inner)
    };
    let v4 = match kind {
        gre::ETHERTYPE_IPV4 => true,
        gre::ETHERTYPE_IPV6 => false,
        _ => return true,
    };
    // As far as the fast path reads: 12 bytes.
    if ip.len() < 12 {
        return true;
    }
    let byte = ip[1];
    let ecn = if v4 { byte & 3 } else { (byte >> 4) & 3 };
    let new = match (outer, ecn) {
        (3, 0) => return false,
        (3, 1 | 2) => 3,
        (1, 2) => 1,
        _ => return true,
    };
    if v4 {
        let old = u16::from_be_bytes([ip[0], ip[1]]);
        ip[1] = (byte & !3) | new;
        let word = u16::from_be_bytes([ip[0], ip[1]]);
        // RFC 1624: HC' = ~(~HC + ~m + m').
        let hc = u16::from_be_bytes([ip[10], ip[11]]);
        let sum = u64::from(!hc) + u64::from(!old) + u64::from(word);
        ip[10..12].copy_from_slice(&(!offload::csum_fold(sum)).to_be_bytes());
    } else {
        ip[1] = (byte & 0xcf) | (new << 4);
    }
    true
}

/// A random 16-bit number, to start a counter of IPv4 IDs as the kernel's
/// do (0 if the kernel gives none).
fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most the 2 bytes of `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, libc::GRND_NONBLOCK) };
    if n == 2 { u16::from_ne_bytes(b) } else { 0 }
}

/// Writes an outer IPv4 header for GRE, ID 0; the kernel fills the
/// checksum (and a zero ID).
fn ipv4_header(
    h: &mut [u8],
    total: usize,
    tos: u8,
    ttl: u8,
    df: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].fill(0);
    h[6..8].copy_from_slice(&if df { 0x4000u16 } else { 0 }.to_be_bytes());
    h[8] = ttl;
    h[9] = IPPROTO_GRE as u8;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
}

/// Devices of a setup in progress: dropped (setup failed) while their
/// descriptors are still open, it makes them non-persistent, so they go
/// with the descriptors.
struct Transient(Vec<std::os::fd::RawFd>);

impl Drop for Transient {
    fn drop(&mut self) {
        for fd in &self.0 {
            let _ = tun::set_persist(*fd, false);
        }
    }
}

/// Outer source, destination and where the GRE bytes are in a received
/// IPv4 packet.
fn parse_ipv4(p: &[u8]) -> Option<(IpAddr, IpAddr, std::ops::Range<usize>)> {
    let ihl = usize::from(*p.first()? & 0x0f) * 4;
    if p[0] >> 4 != 4 || ihl < 20 || p.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).clamp(ihl, p.len());
    let addr = |i: usize| IpAddr::V4(Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]));
    Some((addr(12), addr(16), ihl..total))
}

/// Fills `buf` with IPV6_PKTINFO (source), IPV6_HOPLIMIT and IPV6_TCLASS
/// control messages; returns their length.
fn ipv6_control(buf: &mut [u64; CTRL_WORDS], src: Ipv6Addr, hops: u8, tclass: u8) -> usize {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: 0,
    };
    let mut at = 0;
    // SAFETY: the three messages take 88 of the buffer's 128 bytes; the
    // buffer is 8-byte aligned and each message starts aligned.
    unsafe {
        let base = buf.as_mut_ptr().cast::<u8>();
        let mut put = |kind: libc::c_int, data: *const u8, len: usize| {
            let h = base.add(at).cast::<libc::cmsghdr>();
            (*h).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
            (*h).cmsg_level = libc::IPPROTO_IPV6;
            (*h).cmsg_type = kind;
            std::ptr::copy_nonoverlapping(data, libc::CMSG_DATA(h), len);
            at += libc::CMSG_SPACE(len as u32) as usize;
        };
        put(
            libc::IPV6_PKTINFO,
            std::ptr::addr_of!(info).cast(),
            size_of::<libc::in6_pktinfo>(),
        );
        let hops = libc::c_int::from(hops);
        put(
            libc::IPV6_HOPLIMIT,
            std::ptr::addr_of!(hops).cast(),
            size_of::<libc::c_int>(),
        );
        let tclass = libc::c_int::from(tclass);
        put(
            libc::IPV6_TCLASS,
            std::ptr::addr_of!(tclass).cast(),
            size_of::<libc::c_int>(),
        );
    }
    at
}

/// The destination address (IPV6_PKTINFO) and traffic class (IPV6_TCLASS,
/// 0 if missing) of a received message.
///
/// # Safety
/// `h` must describe a control buffer the kernel filled.
unsafe fn ipv6_received(h: &libc::msghdr) -> (Option<Ipv6Addr>, u8) {
    let (mut dst, mut tclass) = (None, 0);
    // SAFETY: walking kernel-written control messages within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_TCLASS {
                tclass = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()) as u8;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (dst, tclass)
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, big and aligned enough for
    // either address type.
    unsafe {
        let mut ss: libc::sockaddr_storage = zeroed();
        match ip {
            IpAddr::V4(a) => {
                let sa = std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>();
                (*sa).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sa).sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                (ss, size_of::<libc::sockaddr_in>() as u32)
            }
            IpAddr::V6(a) => {
                let sa = std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>();
                (*sa).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sa).sin6_addr.s6_addr = a.octets();
                (ss, size_of::<libc::sockaddr_in6>() as u32)
            }
        }
    }
}

/// Waits up to SEND_WAIT_MS for room to send on `fd`.
fn writable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, owned here.
    let n = unsafe { libc::poll(&mut p, 1, SEND_WAIT_MS) };
    n > 0 && p.revents & libc::POLLOUT != 0
}

/// A non-blocking raw GRE socket in the calling thread's namespace: IPv4
/// with IP_HDRINCL (we write the outer header), or IPv6 reporting each
/// packet's destination and traffic class.
fn raw_socket(v6: bool) -> Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_GRE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context(format!(
            "opening a raw GRE socket (IPv{}): it needs root (CAP_NET_RAW)",
            if v6 { 6 } else { 4 }
        ));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_HDRINCL)
    };
    setsockopt(&fd, level, name, 1).context("configuring the raw GRE socket")?;
    if v6 {
        // The outer traffic class, for RFC 6040's decapsulation.
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1)
            .context("configuring the raw GRE socket")?;
    }
    // A bigger receive buffer absorbs bursts for hubs (FORCE: root passes rmem_max).
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
    Ok(fd)
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn epoll_create() -> Result<OwnedFd> {
    // SAFETY: plain epoll_create1; the result is checked.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("creating an epoll instance");
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn epoll_add(epoll: &OwnedFd, fd: RawFd, token: u64) -> Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error()).context("adding a descriptor to epoll");
    }
    Ok(())
}

fn epoll_del(epoll: &OwnedFd, fd: RawFd) {
    // SAFETY: EPOLL_CTL_DEL ignores the event argument.
    unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            std::ptr::null_mut(),
        )
    };
}

/// Raises the soft open-file limit to the hard one: a hub lab has one
/// device per tunnel end.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Packet surgery for device offloads, allocation-free and testable alone:
/// the virtio_net_hdr, splitting TCP super-packets read from a device into
/// MTU-sized segments (the kernel's TSO, done here), finishing checksums
/// the kernel left to the device, and joining consecutive TCP segments of
/// one flow into a super-packet for the device (GRO).
mod offload {
    use std::ops::Range;

    /// virtio_net_hdr flag: the checksum from `csum_start` is left to us.
    pub const NEEDS_CSUM: u8 = 1;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_TCPV6: u8 = 4;
    /// Flag bit of `gso_type`: the super-packet has CWR set (TSO_ECN).
    pub const GSO_ECN: u8 = 0x80;
    const TCP_FIN: u8 = 0x01;
    const TCP_PSH: u8 = 0x08;
    const TCP_ACK: u8 = 0x10;
    const TCP_CWR: u8 = 0x80;
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;

    /// The `virtio_net_hdr` in front of every packet on a device (fields in
    /// host byte order, as TUN uses them without TUNSETVNETBE/LE).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct VnetHdr {
        pub flags: u8,
        pub gso_type: u8,
        pub hdr_len: u16,
        pub gso_size: u16,
        pub csum_start: u16,
        pub csum_offset: u16,
    }

    impl VnetHdr {
        pub fn parse(b: &[u8]) -> VnetHdr {
            let w = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
            VnetHdr {
                flags: b[0],
                gso_type: b[1],
                hdr_len: w(2),
                gso_size: w(4),
                csum_start: w(6),
                csum_offset: w(8),
            }
        }

        pub fn emit(&self, b: &mut [u8]) {
            b[0] = self.flags;
            b[1] = self.gso_type;
            for (i, w) in [
                self.hdr_len,
                self.gso_size,
                self.csum_start,
                self.csum_offset,
            ]
            .into_iter()
            .enumerate()
            {
                b[2 + 2 * i..4 + 2 * i].copy_from_slice(&w.to_ne_bytes());
            }
        }
    }

    /// Adds the 16-bit big-endian words of `data` to a one's-complement
    /// accumulator. Pieces summed into one accumulator must have even
    /// lengths, but for the last.
    pub fn csum_add(mut acc: u64, data: &[u8]) -> u64 {
        // 32-bit halves into 64 bits: no carry is lost (2^32 words needed),
        // and a 32-bit word is congruent to the sum of its 16-bit halves.
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            acc += (v >> 32) + (v & 0xffff_ffff);
        }
        let mut pairs = chunks.remainder().chunks_exact(2);
        for p in &mut pairs {
            acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
        }
        if let [b] = pairs.remainder() {
            acc += u64::from(*b) << 8;
        }
        acc
    }

    /// The accumulator folded to 16 bits (not complemented).
    pub fn csum_fold(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Completes a checksum the kernel left to the device: the one's
    /// complement of the sum from `start` to the end, written at
    /// `start + offset` (which holds the pseudo-header sum). A result of 0 is
    /// sent as 0xffff, as the kernel's `skb_checksum_help` does (UDP's "no
    /// checksum" is 0). False if the offsets lie outside the packet.
    pub fn finish_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
        let at = start + offset;
        if start >= pkt.len() || at + 2 > pkt.len() {
            return false;
        }
        let sum = !csum_fold(csum_add(0, &pkt[start..]));
        let sum = if sum == 0 { 0xffff } else { sum };
        pkt[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        true
    }

    /// Where the IP header starts and its version: at 0 on a TUN device;
    /// after the Ethernet header (and one VLAN tag) on a TAP device.
    fn l3(pkt: &[u8], l2: bool) -> Option<(usize, u8)> {
        let at = if !l2 {
            0
        } else {
            match pkt.get(12..14)? {
                [0x81, 0x00] => match pkt.get(16..18)? {
                    [0x08, 0x00] | [0x86, 0xdd] => 18,
                    _ => return None,
                },
                [0x08, 0x00] | [0x86, 0xdd] => 14,
                _ => return None,
            }
        };
        Some((at, pkt.get(at)? >> 4))
    }

    /// Offsets of a TCP packet's IP header, TCP header and payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tcp {
        pub l3: usize,
        pub l4: usize,
        /// End of the headers: where the payload starts.
        pub end: usize,
        pub v6: bool,
    }

    /// The pseudo-header sum of a `proto` packet of `len` bytes after the
    /// IP header at `l3`.
    fn pseudo(pkt: &[u8], l3: usize, v6: bool, proto: u8, len: usize) -> u64 {
        let addrs = if v6 {
            &pkt[l3 + 8..l3 + 40]
        } else {
            &pkt[l3 + 12..l3 + 20]
        };
        csum_add(u64::from(proto) + len as u64, addrs)
    }

    impl Tcp {
        /// The pseudo-header sum for a TCP segment of `tcp_len` bytes.
        fn pseudo(&self, pkt: &[u8], tcp_len: usize) -> u64 {
            pseudo(pkt, self.l3, self.v6, IPPROTO_TCP, tcp_len)
        }

        fn flags(&self, pkt: &[u8]) -> u8 {
            pkt[self.l4 + 13]
        }

        fn seq(&self, pkt: &[u8]) -> u32 {
            let b = &pkt[self.l4 + 4..self.l4 + 8];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        }

        /// Sets the IP length fields for a packet of `len` bytes in all.
        fn set_ip_len(&self, pkt: &mut [u8], len: usize) {
            let l3 = self.l3;
            if self.v6 {
                let plen = (len - l3 - 40) as u16;
                pkt[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            } else {
                pkt[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                pkt[l3 + 10..l3 + 12].fill(0);
                let sum = !csum_fold(csum_add(0, &pkt[l3..self.l4]));
                pkt[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            }
        }
    }

    /// Where the IP and transport headers start, the protocol, whether
    /// IPv6, and the IP packet's length as its header gives it: IPv4 (no
    /// fragment) or IPv6 (no extension header) only.
    fn transport(pkt: &[u8], l2: bool) -> Option<(usize, usize, u8, bool, usize)> {
        let (l3, version) = l3(pkt, l2)?;
        let len = |at: usize| usize::from(u16::from_be_bytes([pkt[at], pkt[at + 1]]));
        match version {
            4 => {
                let h = pkt.get(l3..l3 + 20)?;
                let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
                if frag != 0 || h[0] & 0x0f < 5 {
                    return None;
                }
                Some((
                    l3,
                    l3 + usize::from(h[0] & 0x0f) * 4,
                    h[9],
                    false,
                    len(l3 + 2),
                ))
            }
            6 => Some((
                l3,
                l3 + 40,
                pkt.get(l3..l3 + 40)?[6],
                true,
                40 + len(l3 + 4),
            )),
            _ => None,
        }
    }

    /// The layout of a TCP packet over IPv4 (no fragment) or IPv6 (no
    /// extension header) whose headers fit `pkt`; None for anything else.
    pub fn tcp_layout(pkt: &[u8], l2: bool) -> Option<Tcp> {
        let (l3, l4, proto, v6, _) = transport(pkt, l2)?;
        if proto != IPPROTO_TCP {
            return None;
        }
        let end = l4 + usize::from(*pkt.get(l4 + 12)? >> 4) * 4;
        if end < l4 + 20 || end > pkt.len() {
            return None;
        }
        Some(Tcp { l3, l4, end, v6 })
    }

    /// A TCP super-packet from a device, ready to be cut into `segs`
    /// segments of `mss` payload bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Gso {
        pub tcp: Tcp,
        pub mss: usize,
        pub segs: usize,
    }

    /// Checks a super-packet against its virtio header: TCP over the IP
    /// version the header announces, headers within `max_hdr` bytes.
    pub fn gso_layout(pkt: &[u8], l2: bool, vh: &VnetHdr, max_hdr: usize) -> Option<Gso> {
        let (l3, version) = l3(pkt, l2)?;
        let tcp = match (vh.gso_type & !GSO_ECN, version) {
            (GSO_TCPV4, 4) => tcp_layout(pkt, l2)?,
            // Extension headers are allowed: the kernel says where TCP is.
            (GSO_TCPV6, 6) => {
                let l4 = usize::from(vh.csum_start);
                let end = l4 + usize::from(*pkt.get(l4 + 12)? >> 4) * 4;
                if l4 < l3 + 40 || end < l4 + 20 || end > pkt.len() {
                    return None;
                }
                Tcp {
                    l3,
                    l4,
                    end,
                    v6: true,
                }
            }
            _ => return None,
        };
        let mss = usize::from(vh.gso_size);
        if mss == 0 || tcp.end > max_hdr {
            return None;
        }
        let segs = (pkt.len() - tcp.end).div_ceil(mss).max(1);
        Some(Gso { tcp, mss, segs })
    }

    /// Writes the headers of segment `i` of super-packet `pkt` into `out`
    /// (`g.tcp.end` bytes) and returns the range of its payload in `pkt`:
    /// lengths, IPv4 id (+i) and checksum, sequence number, flags (FIN and
    /// PSH on the last segment only, CWR on the first only) and the full
    /// TCP checksum, as the kernel's software TSO does.
    pub fn segment(pkt: &[u8], g: &Gso, i: usize, out: &mut [u8]) -> Range<usize> {
        let t = &g.tcp;
        let start = t.end + i * g.mss;
        let stop = (start + g.mss).min(pkt.len());
        let hdr = &mut out[..t.end];
        hdr.copy_from_slice(&pkt[..t.end]);
        if !t.v6 {
            let id = u16::from_be_bytes([pkt[t.l3 + 4], pkt[t.l3 + 5]]).wrapping_add(i as u16);
            hdr[t.l3 + 4..t.l3 + 6].copy_from_slice(&id.to_be_bytes());
        }
        t.set_ip_len(hdr, t.end + stop - start);
        let seq = t.seq(pkt).wrapping_add((i * g.mss) as u32);
        hdr[t.l4 + 4..t.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < g.segs {
            hdr[t.l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            hdr[t.l4 + 13] &= !TCP_CWR;
        }
        hdr[t.l4 + 16..t.l4 + 18].fill(0);
        let tcp_len = t.end - t.l4 + stop - start;
        let sum = csum_add(t.pseudo(hdr, tcp_len), &hdr[t.l4..]);
        let sum = !csum_fold(csum_add(sum, &pkt[start..stop]));
        hdr[t.l4 + 16..t.l4 + 18].copy_from_slice(&sum.to_be_bytes());
        start..stop
    }

    /// Whether a received TCP packet may join a super-packet: payload, ACK
    /// and at most PSH among the flags, no IPv4 options, DF set (so its id
    /// need not be kept), and valid IPv4 header and TCP checksums (a joined
    /// packet is trusted by the kernel, so the checks happen here).
    pub fn mergeable(pkt: &[u8], t: &Tcp) -> bool {
        let ip_len = if t.v6 {
            usize::from(u16::from_be_bytes([pkt[t.l3 + 4], pkt[t.l3 + 5]])) + 40
        } else {
            usize::from(u16::from_be_bytes([pkt[t.l3 + 2], pkt[t.l3 + 3]]))
        };
        if t.flags(pkt) & !TCP_PSH != TCP_ACK || pkt.len() <= t.end || t.l3 + ip_len != pkt.len() {
            return false;
        }
        if !t.v6
            && (t.l4 != t.l3 + 20
                || pkt[t.l3 + 6] & 0x40 == 0
                || csum_fold(csum_add(0, &pkt[t.l3..t.l4])) != 0xffff)
        {
            return false;
        }
        let sum = csum_add(t.pseudo(pkt, pkt.len() - t.l4), &pkt[t.l4..]);
        csum_fold(sum) == 0xffff
    }

    /// Whether TCP packets `a` and `b` belong to one connection in one
    /// direction.
    pub fn same_flow(a: &[u8], ta: &Tcp, b: &[u8], tb: &Tcp) -> bool {
        let addrs = |t: &Tcp| {
            if t.v6 {
                t.l3 + 8..t.l3 + 40
            } else {
                t.l3 + 12..t.l3 + 20
            }
        };
        ta.v6 == tb.v6
            && ta.l3 == tb.l3
            && a[addrs(ta)] == b[addrs(tb)]
            && a[ta.l4..ta.l4 + 4] == b[tb.l4..tb.l4 + 4]
    }

    /// Whether mergeable `next` directly follows mergeable `prev` (same
    /// layout and flow) in a super-packet: identical headers but for
    /// lengths, IPv4 id and checksum, sequence number (which must follow on),
    /// PSH and TCP checksum.
    pub fn continues(prev: &[u8], next: &[u8], t: &Tcp) -> bool {
        let (l3, l4) = (t.l3, t.l4);
        let ip_same = if t.v6 {
            prev[l3..l3 + 4] == next[l3..l3 + 4] && prev[l3 + 6..l3 + 8] == next[l3 + 6..l3 + 8]
        } else {
            prev[l3..l3 + 2] == next[l3..l3 + 2] && prev[l3 + 6..l3 + 10] == next[l3 + 6..l3 + 10]
        };
        let seq_follows = t.seq(prev).wrapping_add((prev.len() - t.end) as u32) == t.seq(next);
        ip_same
            && seq_follows
            && prev[..l3] == next[..l3]
            && prev[l4 + 8..l4 + 13] == next[l4 + 8..l4 + 13]
            && prev[l4 + 13] & TCP_PSH == 0
            && prev[l4 + 14..l4 + 16] == next[l4 + 14..l4 + 16]
            && prev[l4 + 18..t.end] == next[l4 + 18..t.end]
    }

    /// Turns the headers of the first of joined segments, in `first`, into
    /// those of a super-packet of `len` bytes whose segments carry `mss`
    /// payload bytes (and PSH if `psh`), and returns its virtio header: the
    /// TCP checksum is left to the kernel, which trusts it (CHECKSUM_PARTIAL).
    pub fn seal(first: &mut [u8], t: &Tcp, len: usize, mss: usize, psh: bool) -> VnetHdr {
        t.set_ip_len(first, len);
        if psh {
            first[t.l4 + 13] |= TCP_PSH;
        }
        let pseudo = csum_fold(t.pseudo(first, len - t.l4));
        first[t.l4 + 16..t.l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        VnetHdr {
            flags: NEEDS_CSUM,
            gso_type: if t.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: t.end as u16,
            gso_size: mss as u16,
            csum_start: t.l4 as u16,
            csum_offset: 16,
        }
    }

    /// The virtio header that hands the device a received packet as a
    /// kernel on this machine left it, which a veth passes on and a raw
    /// socket too: a TCP or UDP checksum holding the pseudo-header sum only
    /// (CHECKSUM_PARTIAL: the kernel takes it as such), and TCP longer than
    /// the device's `mtu` (a super-packet, to be cut where the MTU allows).
    /// None for a finished packet.
    pub fn unfinished(pkt: &[u8], l2: bool, mtu: usize) -> Option<VnetHdr> {
        let (l3, l4, proto, v6, ip_len) = transport(pkt, l2)?;
        let offset = match proto {
            IPPROTO_TCP => 16,
            IPPROTO_UDP => 6,
            _ => return None,
        };
        let l4_bytes = pkt.get(l4..l3 + ip_len)?;
        let field = l4_bytes.get(offset..offset + 2)?;
        let sum = pseudo(pkt, l3, v6, proto, l4_bytes.len());
        // One's complement: 0 and 0xffff are both zero.
        let same = |a: u16, b: u16| a % 0xffff == b % 0xffff;
        if !same(u16::from_be_bytes([field[0], field[1]]), csum_fold(sum))
            || csum_fold(csum_add(sum, l4_bytes)) == 0xffff
        {
            return None;
        }
        let mut vh = VnetHdr {
            flags: NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: offset as u16,
            ..VnetHdr::default()
        };
        if proto == IPPROTO_TCP && ip_len > mtu {
            let t = tcp_layout(pkt, l2)?;
            let ecn = if t.flags(pkt) & TCP_CWR != 0 {
                GSO_ECN
            } else {
                0
            };
            vh.gso_type = ecn | if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            vh.hdr_len = t.end as u16;
            let mss = mtu.checked_sub(t.end - l3).filter(|&m| m > 0)?;
            vh.gso_size = u16::try_from(mss).ok()?;
        }
        Some(vh)
    }

    /// Whether a joined super-packet's PSH must be set: the last segment's.
    pub fn has_psh(pkt: &[u8], t: &Tcp) -> bool {
        t.flags(pkt) & TCP_PSH != 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::wire::gre::internet_checksum;
        use proptest::prelude::*;

        /// Bytes from a xorshift generator: payloads that differ everywhere.
        fn noise(seed: u64, len: usize) -> Vec<u8> {
            let mut x = seed | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }

        const ACK_PSH: u8 = TCP_ACK | TCP_PSH;

        /// A TCP packet (IPv4 with DF, or IPv6) with a 12-byte timestamp
        /// option, behind an Ethernet header if `l2`; checksums valid
        /// unless `partial`, which leaves the pseudo-header sum in the TCP
        /// checksum field as the kernel hands it to a device.
        fn tcp_packet(v6: bool, l2: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
            tcp_packet_from(40000, v6, l2, seq, flags, payload)
        }

        fn tcp_packet_from(
            port: u16,
            v6: bool,
            l2: bool,
            seq: u32,
            flags: u8,
            payload: &[u8],
        ) -> Vec<u8> {
            let mut p = Vec::new();
            if l2 {
                p.extend([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
                p.extend(if v6 { [0x86, 0xdd] } else { [0x08, 0x00] });
            }
            let l3 = p.len();
            let tcp_len = 32 + payload.len();
            if v6 {
                p.extend([0x60, 0, 0, 0]);
                p.extend((tcp_len as u16).to_be_bytes());
                p.extend([IPPROTO_TCP, 64]);
                p.extend([0xfd, 0, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                p.extend([0xfd, 0, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            } else {
                p.extend([0x45, 0]);
                p.extend(((20 + tcp_len) as u16).to_be_bytes());
                p.extend([0x12, 0x34, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
                p.extend([192, 168, 50, 1, 192, 168, 50, 2]);
                let sum = internet_checksum(&p[l3..]);
                p[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            }
            let l4 = p.len();
            p.extend(port.to_be_bytes());
            p.extend([0x13, 0x89]);
            p.extend(seq.to_be_bytes());
            p.extend(0x0102_0304u32.to_be_bytes());
            p.extend([0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
            p.extend([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
            p.extend(payload);
            let t = tcp_layout(&p, l2).expect("a TCP packet");
            let sum = !csum_fold(csum_add(t.pseudo(&p, tcp_len), &p[l4..]));
            p[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
            p
        }

        /// Checks every header field of `seg` as segment `i` of `whole`
        /// (cut at `mss`), and its payload.
        fn check_segment(whole: &[u8], l2: bool, mss: usize, segs: usize, i: usize, seg: &[u8]) {
            let t = tcp_layout(seg, l2).expect("segment is TCP");
            let w = tcp_layout(whole, l2).unwrap();
            let payload = &whole[w.end..][i * mss..((i + 1) * mss).min(whole.len() - w.end)];
            assert_eq!(&seg[t.end..], payload, "segment {i} payload");
            assert_eq!(seg[..t.l3], whole[..t.l3], "link header");
            if t.v6 {
                let plen = u16::from_be_bytes([seg[t.l3 + 4], seg[t.l3 + 5]]);
                assert_eq!(usize::from(plen), seg.len() - t.l3 - 40);
            } else {
                let h = &seg[t.l3..t.l4];
                assert_eq!(internet_checksum(h), 0, "segment {i} IPv4 header checksum");
                assert_eq!(
                    usize::from(u16::from_be_bytes([h[2], h[3]])),
                    seg.len() - t.l3
                );
                assert_eq!(u16::from_be_bytes([h[4], h[5]]), 0x1234 + i as u16, "ip id");
            }
            let seq0 = t.seq(whole);
            assert_eq!(
                t.seq(seg),
                seq0.wrapping_add((i * mss) as u32),
                "seq of {i}"
            );
            let (f, f0) = (seg[t.l4 + 13], whole[t.l4 + 13]);
            let last = i + 1 == segs;
            assert_eq!(
                f & (TCP_FIN | TCP_PSH),
                if last { f0 & (TCP_FIN | TCP_PSH) } else { 0 }
            );
            assert_eq!(f & TCP_CWR, if i == 0 { f0 & TCP_CWR } else { 0 });
            assert_eq!(f & TCP_ACK, f0 & TCP_ACK);
            assert_eq!(
                seg[t.l4 + 14..t.l4 + 16],
                whole[t.l4 + 14..t.l4 + 16],
                "window"
            );
            assert_eq!(seg[t.l4 + 18..t.end], whole[t.l4 + 18..w.end], "options");
            // The TCP checksum, verified from scratch over the pseudo-header.
            let mut pseudo = Vec::new();
            if t.v6 {
                pseudo.extend(&seg[t.l3 + 8..t.l3 + 40]);
                pseudo.extend(((seg.len() - t.l4) as u32).to_be_bytes());
                pseudo.extend([0, 0, 0, IPPROTO_TCP]);
            } else {
                pseudo.extend(&seg[t.l3 + 12..t.l3 + 20]);
                pseudo.extend([0, IPPROTO_TCP]);
                pseudo.extend(((seg.len() - t.l4) as u16).to_be_bytes());
            }
            pseudo.extend(&seg[t.l4..]);
            assert_eq!(internet_checksum(&pseudo), 0, "segment {i} TCP checksum");
        }

        /// Cuts `whole` as the dataplane does; each segment made contiguous.
        fn cut(whole: &[u8], l2: bool, vh: &VnetHdr) -> Vec<Vec<u8>> {
            let g = gso_layout(whole, l2, vh, 220).expect("a valid super-packet");
            (0..g.segs)
                .map(|i| {
                    let mut hdr = [0u8; 220];
                    let r = segment(whole, &g, i, &mut hdr);
                    let mut seg = hdr[..g.tcp.end].to_vec();
                    seg.extend(&whole[r]);
                    seg
                })
                .collect()
        }

        fn tso_hdr(v6: bool, l2: bool, mss: u16) -> VnetHdr {
            let l4 = if l2 { 14 } else { 0 } + if v6 { 40 } else { 20 };
            VnetHdr {
                flags: NEEDS_CSUM,
                gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: (l4 + 32) as u16,
                gso_size: mss,
                csum_start: l4 as u16,
                csum_offset: 16,
            }
        }

        #[test]
        fn vnet_header_round_trip() {
            let vh = tso_hdr(true, false, 1400);
            let mut b = [0u8; 10];
            vh.emit(&mut b);
            assert_eq!(b[..2], [NEEDS_CSUM, GSO_TCPV6]);
            assert_eq!(VnetHdr::parse(&b), vh);
        }

        #[test]
        fn segments_of_ipv4_ipv6_and_ethernet_super_packets() {
            let payload = noise(7, 3500);
            for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
                // The sequence number wraps within the packet.
                let flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR;
                let whole = tcp_packet(v6, l2, 0xffff_fc00, flags, &payload);
                let segs = cut(&whole, l2, &tso_hdr(v6, l2, 1000));
                assert_eq!(segs.len(), 4, "v6 {v6} l2 {l2}");
                for (i, seg) in segs.iter().enumerate() {
                    check_segment(&whole, l2, 1000, 4, i, seg);
                }
                assert_eq!(segs[3].len() - tcp_layout(&segs[3], l2).unwrap().end, 500);
            }
        }

        #[test]
        fn super_packets_that_cannot_be_cut_are_refused() {
            let whole = tcp_packet(false, false, 1, TCP_ACK, &noise(1, 3000));
            let vh = tso_hdr(false, false, 1000);
            assert!(gso_layout(&whole, false, &vh, 220).is_some());
            assert!(gso_layout(&whole, false, &VnetHdr { gso_size: 0, ..vh }, 220).is_none());
            assert!(
                gso_layout(&whole, false, &tso_hdr(true, false, 1000), 220).is_none(),
                "v6 type, v4 packet"
            );
            assert!(
                gso_layout(&whole, false, &VnetHdr { gso_type: 3, ..vh }, 220).is_none(),
                "UDP"
            );
            assert!(
                gso_layout(&whole, false, &vh, 40).is_none(),
                "headers beyond the room"
            );
            assert!(
                gso_layout(&whole[..45], false, &vh, 220).is_none(),
                "cut short"
            );
            let mut udp = whole.clone();
            udp[9] = 17;
            assert!(gso_layout(&udp, false, &vh, 220).is_none());
        }

        #[test]
        fn partial_checksums_are_finished() {
            // A UDP datagram as the kernel leaves it: the pseudo-header sum
            // (length 12, protocol 17) in the checksum field.
            let mut p = vec![
                0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            p.extend([0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'h', b'e', b'l', b'o']);
            let pseudo = csum_fold(csum_add(17 + 12, &p[12..20]));
            p[26..28].copy_from_slice(&pseudo.to_be_bytes());
            assert!(finish_checksum(&mut p, 20, 6));
            let mut check = p[12..20].to_vec();
            check.extend([0, 17, 0, 12]);
            check.extend(&p[20..]);
            assert_eq!(internet_checksum(&check), 0);
            assert!(
                !finish_checksum(&mut p, 20, 11),
                "checksum field beyond the end"
            );
            assert!(!finish_checksum(&mut p, 32, 0), "start beyond the end");
        }

        #[test]
        fn joined_segments_cut_again_give_the_same_segments() {
            for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
                let whole = tcp_packet(v6, l2, 77, ACK_PSH, &noise(3, 5000));
                let segs = cut(&whole, l2, &tso_hdr(v6, l2, 1400));
                let t = tcp_layout(&segs[0], l2).unwrap();
                for s in &segs {
                    assert!(mergeable(s, &t), "v6 {v6} l2 {l2}");
                }
                for w in segs.windows(2) {
                    assert!(same_flow(&w[0], &t, &w[1], &t) && continues(&w[0], &w[1], &t));
                }
                // Join as the receive side does: first packet whole, then payloads.
                let mut joined = segs[0].clone();
                for s in &segs[1..] {
                    joined.extend(&s[t.end..]);
                }
                let len = joined.len();
                let psh = has_psh(segs.last().unwrap(), &t);
                let vh = seal(&mut joined, &t, len, 1400, psh);
                assert_eq!(
                    (vh.gso_type, vh.gso_size, usize::from(vh.hdr_len)),
                    (if v6 { GSO_TCPV6 } else { GSO_TCPV4 }, 1400, t.end)
                );
                // The kernel finishes a partial checksum: do it here.
                let mut whole_again = joined.clone();
                assert!(finish_checksum(&mut whole_again, t.l4, 16));
                let mut again = whole_again.clone();
                again[t.l4 + 13] = ACK_PSH;
                assert_eq!(
                    &again[t.l3..],
                    &whole[t.l3..],
                    "the joined packet is the original"
                );
                assert_eq!(cut(&joined, l2, &vh), segs, "v6 {v6} l2 {l2}");
            }
        }

        #[test]
        fn segments_that_must_not_be_joined() {
            let segs = cut(
                &tcp_packet(false, false, 5, TCP_ACK, &noise(4, 3000)),
                false,
                &tso_hdr(false, false, 1000),
            );
            let t = tcp_layout(&segs[0], false).unwrap();
            assert!(!continues(&segs[0], &segs[2], &t), "a gap in the sequence");
            assert!(!continues(&segs[1], &segs[0], &t), "going back");
            let mut bad = segs[1].clone();
            bad[t.end + 5] ^= 1;
            assert!(!mergeable(&bad, &t), "corrupt payload");
            let mut ttl = segs[1].clone();
            ttl[8] = 63;
            ttl[10..12].fill(0);
            let sum = internet_checksum(&ttl[..20]);
            ttl[10..12].copy_from_slice(&sum.to_be_bytes());
            assert!(!continues(&segs[0], &ttl, &t), "another TTL");
            let fin = tcp_packet(false, false, 5, TCP_ACK | TCP_FIN, b"bye");
            assert!(!mergeable(&fin, &tcp_layout(&fin, false).unwrap()), "FIN");
            let ack = tcp_packet(false, false, 5, TCP_ACK, b"");
            assert!(
                !mergeable(&ack, &tcp_layout(&ack, false).unwrap()),
                "no payload"
            );
            let mut no_df = segs[1].clone();
            no_df[6] = 0;
            assert!(!mergeable(&no_df, &t), "no DF (checksum now wrong too)");
            let mut other = segs[1].clone();
            other[t.l4] ^= 1;
            assert!(!same_flow(&segs[0], &t, &other, &t), "another port");
        }

        #[test]
        fn received_segments_join_per_flow_in_order() {
            let vh = tso_hdr(false, false, 1400);
            let a = cut(
                &tcp_packet(false, false, 100, ACK_PSH, &noise(1, 4200)),
                false,
                &vh,
            );
            let b = cut(
                &tcp_packet_from(40001, false, false, 9, TCP_ACK, &noise(2, 4200)),
                false,
                &vh,
            );
            let a4 = tcp_packet(false, false, 4300, TCP_ACK, &noise(5, 1400));
            let b4 = tcp_packet_from(40001, false, false, 9 + 4200, TCP_ACK, &noise(6, 1400));
            let icmp = [
                0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 192, 168, 50, 1, 192, 168, 50, 2,
            ];
            // a1 b1 a2 b2 a3(PSH) a4 icmp b4 (b3 lost): runs a1-a3, b1-b2, a4, icmp, b4.
            let order: [&[u8]; 8] = [&a[0], &b[0], &a[1], &b[1], &a[2], &a4, &icmp, &b4];
            for gro in [true, false] {
                let mut rx = super::super::Rx::new(2048);
                for (k, pkt) in order.iter().enumerate() {
                    let start = k * 2048 + 16;
                    rx.data[start..start + pkt.len()].copy_from_slice(pkt);
                }
                for (k, pkt) in order.iter().enumerate() {
                    rx.add(
                        0,
                        false,
                        1500,
                        k * 2048 + 16,
                        k * 2048 + 16 + pkt.len(),
                        gro,
                    );
                }
                let runs: Vec<(usize, usize)> = rx.runs.iter().map(|r| (r.head, r.count)).collect();
                if gro {
                    assert_eq!(runs, [(0, 3), (1, 2), (5, 1), (6, 1), (7, 1)]);
                    let r = rx.runs[0];
                    assert_eq!((r.len, r.mss), (a[0].len() + 2800, 1400));
                } else {
                    assert_eq!(runs, (0..8).map(|k| (k, 1)).collect::<Vec<_>>());
                }
            }
        }

        /// `pkt` (TCP) with the pseudo-header sum in its checksum field,
        /// as a kernel leaves it for the device.
        fn partial(mut pkt: Vec<u8>, l2: bool) -> Vec<u8> {
            let t = tcp_layout(&pkt, l2).unwrap();
            let sum = csum_fold(t.pseudo(&pkt, pkt.len() - t.l4));
            pkt[t.l4 + 16..t.l4 + 18].copy_from_slice(&sum.to_be_bytes());
            pkt
        }

        #[test]
        fn received_packets_left_unfinished_get_their_virtio_header() {
            for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
                let what = format!("v6 {v6} l2 {l2}");
                let whole = tcp_packet(v6, l2, 9, TCP_ACK, &noise(8, 1000));
                let t = tcp_layout(&whole, l2).unwrap();
                assert_eq!(unfinished(&whole, l2, 1476), None, "{what}: finished");
                let mut corrupt = whole.clone();
                corrupt[t.end] ^= 1;
                assert_eq!(unfinished(&corrupt, l2, 1476), None, "{what}: corrupt");
                let mut p = partial(whole.clone(), l2);
                let vh = unfinished(&p, l2, 1476).expect("a partial checksum");
                assert_eq!(
                    vh,
                    VnetHdr {
                        flags: NEEDS_CSUM,
                        csum_start: t.l4 as u16,
                        csum_offset: 16,
                        ..VnetHdr::default()
                    },
                    "{what}"
                );
                // What the kernel does with it: the packet as it was sent.
                assert!(finish_checksum(&mut p, t.l4, 16));
                assert_eq!(p, whole, "{what}");

                // A super-packet, cut where the MTU allows, CWR kept.
                let flags = TCP_ACK | TCP_PSH | TCP_CWR;
                let big = partial(tcp_packet(v6, l2, 9, flags, &noise(9, 5000)), l2);
                let vh = unfinished(&big, l2, 1476).expect("a super-packet");
                let ty = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
                let mss = 1476 - (t.end - t.l3);
                assert_eq!(vh.gso_type, ty | GSO_ECN, "{what}");
                assert_eq!(usize::from(vh.gso_size), mss, "{what}");
                assert_eq!(usize::from(vh.hdr_len), t.end, "{what}");
                let segs = cut(&big, l2, &vh);
                assert_eq!(segs.len(), 5000_usize.div_ceil(mss), "{what}");
                for (i, seg) in segs.iter().enumerate() {
                    assert!(seg.len() - t.l3 <= 1476, "{what}: segment {i} fits the MTU");
                    check_segment(&big, l2, mss, segs.len(), i, seg);
                }
            }
            // UDP: the checksum is 6 bytes into its header.
            let mut udp = vec![
                0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            udp.extend([0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'h', b'e', b'l', b'o']);
            let pseudo = csum_fold(csum_add(17 + 12, &udp[12..20]));
            udp[26..28].copy_from_slice(&pseudo.to_be_bytes());
            let vh = unfinished(&udp, false, 1476).expect("a partial UDP checksum");
            assert_eq!(
                (vh.flags, vh.csum_start, vh.csum_offset, vh.gso_type),
                (NEEDS_CSUM, 20, 6, GSO_NONE)
            );
            assert!(finish_checksum(&mut udp, 20, 6));
            assert_eq!(unfinished(&udp, false, 1476), None, "finished UDP");
            let mut icmp = udp.clone();
            icmp[9] = 1;
            assert_eq!(unfinished(&icmp, false, 1476), None, "not TCP or UDP");

            // The receive path writes such a packet with that header.
            let big = partial(tcp_packet(false, false, 9, TCP_ACK, &noise(9, 5000)), false);
            let mut rx = super::super::Rx::new(8192);
            rx.data[16..16 + big.len()].copy_from_slice(&big);
            rx.add(0, false, 1476, 16, 16 + big.len(), true);
            assert_eq!(rx.runs[0].count, 1);
            assert_eq!(Some(rx.runs[0].vh), unfinished(&big, false, 1476));
        }

        proptest! {
            #[test]
            fn pieces_sum_like_the_whole(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
                let cut = (cut * 2).min(data.len() & !1);
                let sum = csum_add(csum_add(0, &data[..cut]), &data[cut..]);
                prop_assert_eq!(!csum_fold(sum), internet_checksum(&data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use super::*;
    use crate::plan::TunnelKind;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (network namespaces, TUN/TAP, raw sockets): run it as root, as CI does"
        );
    }

    /// Runs a command, failing the test with its output if it fails.
    fn sh(args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn ip(ns: &str, args: &str) -> String {
        let mut v = vec!["ip", "-n", ns];
        v.extend(args.split_whitespace());
        sh(&v)
    }

    /// Pings `to` from namespace `ns`; returns the output if all replies came.
    fn ping(ns: &str, to: &str, count: u32) -> Result<String, String> {
        let count = count.to_string();
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", to,
            ])
            .output()
            .expect("running ping (Debian package iputils-ping)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && text.contains(" 0% packet loss") {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// The average RTT in ms from ping's summary line.
    fn avg_rtt(out: &str) -> f64 {
        let line = out
            .lines()
            .find(|l| l.starts_with("rtt "))
            .expect("ping printed no rtt line");
        line.split(" = ")
            .nth(1)
            .and_then(|v| v.split('/').nth(1))
            .and_then(|v| v.parse().ok())
            .expect("parsing rtt")
    }

    static SERIAL: AtomicUsize = AtomicUsize::new(0);

    /// Namespaces `a` - `r` (a router) - `b` joined by veths, with IPv4
    /// (172.16.10.0/24, 152.16.10.0/24) and IPv6 (fd00:a::/64, fd00:b::/64)
    /// underlays; deleted on drop, even when the test fails.
    struct Lab {
        a: String,
        r: String,
        b: String,
        dir: PathBuf,
        made: Vec<String>,
    }

    impl Lab {
        fn new(tag: &str) -> Lab {
            require_root();
            let base = format!(
                "gl-dp-{}-{}-{tag}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(&base);
            let mut lab = Lab {
                a: format!("{base}-a"),
                r: format!("{base}-r"),
                b: format!("{base}-b"),
                dir,
                made: vec![],
            };
            fs::create_dir_all(&lab.dir).unwrap();
            for n in [lab.a.clone(), lab.r.clone(), lab.b.clone()] {
                netns::create(&n).unwrap();
                lab.made.push(n);
            }
            let (a, r, b) = (&lab.a, &lab.r, &lab.b);
            ip(
                a,
                &format!("link add veth0 type veth peer name veth1 netns {r}"),
            );
            ip(
                r,
                &format!("link add veth2 type veth peer name veth3 netns {b}"),
            );
            for (ns, dev, v4, v6) in [
                (a, "veth0", "172.16.10.2/24", "fd00:a::2/64"),
                (r, "veth1", "172.16.10.1/24", "fd00:a::1/64"),
                (r, "veth2", "152.16.10.1/24", "fd00:b::1/64"),
                (b, "veth3", "152.16.10.2/24", "fd00:b::2/64"),
            ] {
                ip(ns, &format!("addr add {v4} dev {dev}"));
                ip(ns, &format!("addr add {v6} dev {dev} nodad"));
                // Link-local usable at once: a router sends neighbour
                // solicitations from it, and DAD would hold them ~2 s.
                let dad = format!("net.ipv6.conf.{dev}.accept_dad=0");
                let ok = Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-qw", &dad])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "setting {dad} in {ns}");
                ip(ns, &format!("link set {dev} up"));
                ip(ns, "link set lo up");
            }
            ip(a, "route add default via 172.16.10.1");
            ip(b, "route add default via 152.16.10.1");
            ip(a, "-6 route add default via fd00:a::1");
            ip(b, "-6 route add default via fd00:b::1");
            netns::run_in(r, || {
                fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
                fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
                Ok(())
            })
            .unwrap();
            lab
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            for n in &self.made {
                if let Err(e) = netns::delete(n) {
                    eprintln!("cleanup: deleting namespace {n}: {e:#}");
                }
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// A dataplane running `run` on a thread; stopped and joined on drop.
    struct Dp {
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<Result<()>>>,
        stats: PathBuf,
    }

    impl Dp {
        /// A dataplane without the fast path: these tests are about the
        /// userspace path.
        fn start(lab: &Lab, tunnels: Vec<TunnelEnd>) -> Dp {
            Dp::start_with(lab, tunnels, true, false)
        }

        /// A dataplane with device offloads and the fast path on or off.
        fn start_with(lab: &Lab, tunnels: Vec<TunnelEnd>, offload: bool, fast: bool) -> Dp {
            let spec = Spec {
                lab: "test".into(),
                tunnels,
            };
            // A file of its own: a test may run two dataplanes.
            let n = SERIAL.fetch_add(1, Ordering::Relaxed);
            let stats = lab.dir.join(format!("stats-{n}.json"));
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = mpsc::channel();
            let (s, p) = (stop.clone(), stats.clone());
            let handle = std::thread::spawn(move || {
                run_with(&spec, &p, || tx.send(()).unwrap(), &s, offload, fast)
            });
            if rx.recv_timeout(Duration::from_secs(10)).is_err() {
                stop.store(true, Ordering::Relaxed);
                panic!("the dataplane did not become ready: {:?}", handle.join());
            }
            Dp {
                stop,
                handle: Some(handle),
                stats,
            }
        }

        /// Waits (up to 5 s) for stats that satisfy `ok`, and returns them.
        fn wait_for(&self, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let s = read_stats(&self.stats).unwrap();
                if ok(&s) {
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "stats never showed {what}: {s:#?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn finish(mut self) -> Stats {
            self.stop.store(true, Ordering::Relaxed);
            self.handle
                .take()
                .unwrap()
                .join()
                .unwrap()
                .expect("the dataplane loop failed");
            read_stats(&self.stats).unwrap()
        }
    }

    impl Drop for Dp {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn end(name: &str, ns: &str, kind: TunnelKind, local: &str, remote: &str) -> TunnelEnd {
        TunnelEnd {
            name: name.into(),
            netns: ns.into(),
            kind,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            ttl: 0,
            tos: 0,
            ikey: None,
            okey: None,
            checksum: false,
            sequence: false,
            pmtudisc: true,
            mtu: 1400,
        }
    }

    /// Both ends of a tunnel between the lab's `a` and `b` over IPv4 (or IPv6).
    fn pair(lab: &Lab, name: &str, kind: TunnelKind) -> (TunnelEnd, TunnelEnd) {
        let (la, lb) = if kind.is_ipv6() {
            ("fd00:a::2", "fd00:b::2")
        } else {
            ("172.16.10.2", "152.16.10.2")
        };
        (
            end(name, &lab.a, kind, la, lb),
            end(name, &lab.b, kind, lb, la),
        )
    }

    fn stat<'a>(s: &'a Stats, ns: &str, name: &str) -> &'a TunnelStats {
        s.tunnels
            .iter()
            .find(|t| t.netns == ns && t.name == name)
            .expect("no stats for the tunnel")
    }

    /// An AF_PACKET socket in namespace `ns` seeing the L3 packets of
    /// `dev` with EtherType `proto`.
    fn tap_packets(ns: &str, dev: &'static str, proto: u16) -> OwnedFd {
        netns::run_in(ns, move || {
            // SAFETY: plain socket/bind/setsockopt calls on a fresh fd.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    i32::from(proto.to_be()),
                );
                assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(fd);
                let mut sll: libc::sockaddr_ll = zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto.to_be();
                let name = std::ffi::CString::new(dev).unwrap();
                sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                let r = libc::bind(
                    fd.as_raw_fd(),
                    std::ptr::addr_of!(sll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                assert!(r == 0, "binding AF_PACKET: {}", io::Error::last_os_error());
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 200_000,
                };
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    std::ptr::addr_of!(tv).cast(),
                    size_of::<libc::timeval>() as u32,
                );
                Ok(fd)
            }
        })
        .unwrap()
    }

    /// What a's end puts on the wire for a ping to `to`, seen at the
    /// router: the first GRE packet from a whose GRE header starts with
    /// `gre` (flags and protocol).
    fn echo_on_the_wire(lab: &Lab, to: &'static str, gre: [u8; 4]) -> Vec<u8> {
        let cap = tap_packets(&lab.r, "veth1", libc::ETH_P_IP as u16);
        let pinger = std::thread::spawn({
            let a = lab.a.clone();
            move || ping(&a, to, 3)
        });
        let p = first_packet(&cap, |p| {
            p.len() > 24 && p[9] == 47 && p[12..16] == [172, 16, 10, 2] && p[20..24] == gre
        });
        pinger.join().unwrap().unwrap();
        p
    }

    /// The first packet on `fd` (within 5 s) that `want` accepts.
    fn first_packet(fd: &OwnedFd, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: reads into `buf`, whose length is passed.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 && want(&buf[..n as usize]) {
                return buf[..n as usize].to_vec();
            }
        }
        panic!("no matching packet captured within 5 s");
    }

    #[test]
    fn gre_ping_outer_header_and_rtt() {
        let lab = Lab::new("gre");
        let (mut a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        (a.ttl, a.tos) = (255, 0x20);
        let dp = Dp::start(&lab, vec![a, b]);
        ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
        let tunnel = ping(&lab.a, "192.168.50.2", 10)
            .unwrap_or_else(|o| panic!("ping over gre failed:\n{o}"));
        let plain =
            ping(&lab.a, "152.16.10.2", 10).unwrap_or_else(|o| panic!("plain ping failed:\n{o}"));
        eprintln!(
            "RTT avg: over the userspace gre tunnel {:.3} ms, plain underlay {:.3} ms",
            avg_rtt(&tunnel),
            avg_rtt(&plain)
        );

        // What host1 puts on the wire, seen at the router.
        let p = echo_on_the_wire(&lab, "192.168.50.2", [0, 0, 8, 0]);
        assert_eq!(p[8], 255, "outer TTL");
        assert_eq!(
            u16::from_be_bytes([p[6], p[7]]) & 0x4000,
            0x4000,
            "outer DF (pmtudisc)"
        );
        assert_eq!(p[1], 0x20, "outer TOS");
        assert_eq!(p[16..20], [152, 16, 10, 2], "outer destination");
        assert_eq!(
            p[20..24],
            [0, 0, 0x08, 0x00],
            "a plain 4-byte GRE header carrying IPv4"
        );
        assert_eq!(p[24] >> 4, 4, "the inner IPv4 packet follows");

        let s = dp.finish();
        for ns in [&lab.a, &lab.b] {
            let t = stat(&s, ns, "tun0");
            assert!(t.tx_packets >= 13 && t.rx_packets >= 13, "{t:?}");
            assert_eq!(
                (
                    t.drop_key,
                    t.drop_checksum,
                    t.drop_sequence,
                    t.drop_protocol,
                    t.tx_errors
                ),
                (0, 0, 0, 0, 0),
                "{t:?}"
            );
        }
    }

    /// Bytes from a xorshift generator, the same for sender and receiver.
    struct Noise(u64);

    impl Noise {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *b = self.0 as u8;
            }
        }
    }

    /// Sends `len` bytes of noise over TCP from namespace `from` to `to`
    /// (in namespace `to_ns`) in writes of many sizes, and checks that every
    /// byte arrived, in order, within 30 s (retransmissions alone would get
    /// packets with bad checksums through, slowly). Returns how long the
    /// transfer took.
    fn tcp_transfer(from: &str, to_ns: &str, to: IpAddr, len: usize) -> Duration {
        use std::net::{TcpListener, TcpStream};
        let listener = netns::run_in(to_ns, move || Ok(TcpListener::bind((to, 0))?)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let server = std::thread::spawn(move || -> Result<usize> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        anyhow::ensure!(Instant::now() < deadline, "no connection within 10 s");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let (mut expect, mut buf, mut want) =
                (Noise(42), vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                anyhow::ensure!(Instant::now() < deadline, "only {got} bytes within 30 s");
                let n = s.read(&mut buf).context("receiving")?;
                if n == 0 {
                    return Ok(got);
                }
                expect.fill(&mut want[..n]);
                if let Some(i) = (0..n).find(|&i| buf[i] != want[i]) {
                    anyhow::bail!("byte {} of the stream differs", got + i);
                }
                got += n;
            }
        });
        let start = Instant::now();
        let sent = netns::run_in(from, move || {
            let mut s = TcpStream::connect_timeout(&(to, port).into(), Duration::from_secs(5))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            let (mut noise, mut buf) = (Noise(42), vec![0u8; 200_000]);
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(30);
            // Small, odd and large writes: short segments, PSH, super-packets.
            for size in [1, 1448, 7, 65536, 200_000, 100, 3000].into_iter().cycle() {
                let n = size.min(len - sent);
                noise.fill(&mut buf[..n]);
                s.write_all(&buf[..n]).context("sending")?;
                anyhow::ensure!(Instant::now() < deadline, "only {sent} bytes within 30 s");
                sent += n;
                if sent == len {
                    return Ok(sent);
                }
            }
            unreachable!("the cycle ends the loop")
        });
        let received = server.join().expect("the receiving thread panicked");
        let elapsed = start.elapsed();
        let sent = sent.unwrap_or_else(|e| panic!("sending to {to}: {e:#}"));
        let received = received.unwrap_or_else(|e| panic!("receiving at {to}: {e:#}"));
        assert_eq!((sent, received), (len, len), "bytes sent and received");
        elapsed
    }

    #[test]
    fn tcp_streams_arrive_intact_through_gre_and_gretap() {
        let lab = Lab::new("tcp");
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let (mut ka, mut kb) = pair(&lab, "kcs0", TunnelKind::Gre);
        for e in [&mut ka, &mut kb] {
            (e.ikey, e.okey, e.checksum, e.sequence) = (Some(5), Some(5), true, true);
        }
        let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
        let dp = Dp::start(&lab, vec![a, b, ka, kb, ta, tb]);
        for (dev, net) in [("tun0", "50"), ("kcs0", "51"), ("tap0", "52")] {
            ip(&lab.a, &format!("addr add 192.168.{net}.1/24 dev {dev}"));
            ip(&lab.b, &format!("addr add 192.168.{net}.2/24 dev {dev}"));
        }
        ip(&lab.a, "addr add fd00:51::1/64 dev kcs0 nodad");
        ip(&lab.b, "addr add fd00:51::2/64 dev kcs0 nodad");
        const LEN: usize = 8 << 20;
        for (dev, to) in [
            ("tun0", "192.168.50.2"),
            ("kcs0 (key, checksum, sequence; inner IPv6)", "fd00:51::2"),
            ("tap0", "192.168.52.2"),
        ] {
            let took = tcp_transfer(&lab.a, &lab.b, to.parse().unwrap(), LEN);
            eprintln!("{dev}: 8 MiB in {took:?}");
        }
        // And back: the other end cuts and the first joins.
        tcp_transfer(&lab.b, &lab.a, "192.168.52.1".parse().unwrap(), LEN);
        let s = dp.finish();
        for t in &s.tunnels {
            assert_eq!(
                (t.tx_errors, t.rx_errors, t.drop_checksum, t.drop_sequence),
                (0, 0, 0, 0),
                "{t:?}"
            );
            // Both ends send data on tap0; on the others, a sends and b receives.
            if t.netns == lab.a || t.name == "tap0" {
                assert!(
                    t.tx_gso > 0,
                    "the device handed over no super-packet: {t:?}"
                );
            }
            if t.netns == lab.b || t.name == "tap0" {
                assert!(t.rx_bytes >= LEN as u64, "{t:?}");
                assert!(t.rx_gro > 0, "no received segments were joined: {t:?}");
            }
        }
    }

    #[test]
    fn tcp_stream_arrives_intact_without_offloads() {
        let lab = Lab::new("tcpoff");
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let dp = Dp::start_with(&lab, vec![a, b], false, false);
        ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
        tcp_transfer(&lab.a, &lab.b, "192.168.50.2".parse().unwrap(), 4 << 20);
        let s = dp.finish();
        for t in &s.tunnels {
            assert_eq!(
                (t.tx_gso, t.rx_gro, t.tx_errors, t.rx_errors),
                (0, 0, 0, 0),
                "{t:?}"
            );
        }
        assert!(stat(&s, &lab.b, "tun0").rx_bytes >= 4 << 20);
    }

    #[test]
    fn gretap_resolves_arp_and_pings() {
        let lab = Lab::new("tap");
        let (a, b) = pair(&lab, "tap0", TunnelKind::Gretap);
        let dp = Dp::start(&lab, vec![a, b]);
        ip(&lab.a, "addr add 192.168.50.1/30 dev tap0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tap0");
        ping(&lab.a, "192.168.50.2", 3).unwrap_or_else(|o| panic!("ping over gretap failed:\n{o}"));
        let neigh = ip(&lab.a, "neigh show 192.168.50.2 dev tap0");
        assert!(
            neigh.contains("lladdr"),
            "ARP did not resolve over gretap: {neigh}"
        );
        let s = dp.finish();
        assert!(stat(&s, &lab.b, "tap0").rx_packets >= 4, "{s:?}");
    }

    #[test]
    fn keys_separate_tunnels_between_the_same_pair() {
        let lab = Lab::new("key");
        let mut ends = vec![];
        for (name, ka, kb) in [("k1", 1, 1), ("k2", 2, 2), ("k3", 3, 4)] {
            let (mut a, mut b) = pair(&lab, name, TunnelKind::Gre);
            (a.ikey, a.okey, b.ikey, b.okey) = (Some(ka), Some(ka), Some(kb), Some(kb));
            ends.extend([a, b]);
        }
        let dp = Dp::start(&lab, ends);
        for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
            ip(
                &lab.a,
                &format!("addr add 192.168.5{}.1/30 dev {name}", i + 1),
            );
            ip(
                &lab.b,
                &format!("addr add 192.168.5{}.2/30 dev {name}", i + 1),
            );
        }
        ping(&lab.a, "192.168.51.2", 3).unwrap_or_else(|o| panic!("ping over key 1 failed:\n{o}"));
        ping(&lab.a, "192.168.52.2", 3).unwrap_or_else(|o| panic!("ping over key 2 failed:\n{o}"));
        assert!(
            ping(&lab.a, "192.168.53.2", 2).is_err(),
            "a tunnel with mismatched keys must not pass traffic"
        );
        let s = dp.finish();
        for name in ["k1", "k2"] {
            let (ta, tb) = (stat(&s, &lab.a, name), stat(&s, &lab.b, name));
            assert!(ta.rx_packets >= 3 && tb.rx_packets >= 3, "{ta:?} {tb:?}");
        }
        assert_eq!(stat(&s, &lab.b, "k3").rx_packets, 0);
        let b_wrong_keys: u64 = s
            .tunnels
            .iter()
            .filter(|t| t.netns == lab.b)
            .map(|t| t.drop_key)
            .sum();
        assert!(
            b_wrong_keys >= 2,
            "key 3 packets at b must count as wrong keys: {s:#?}"
        );
    }

    #[test]
    fn ip6gre_and_ip6gretap_over_an_ipv6_underlay() {
        let lab = Lab::new("v6");
        let (mut a, b) = pair(&lab, "g6", TunnelKind::Ip6gre);
        (a.ttl, a.tos) = (200, 0x20);
        let (ta, tb) = pair(&lab, "t6", TunnelKind::Ip6gretap);
        let dp = Dp::start(&lab, vec![a, b, ta, tb]);
        ip(&lab.a, "addr add 192.168.60.1/30 dev g6");
        ip(&lab.b, "addr add 192.168.60.2/30 dev g6");
        ip(&lab.a, "addr add fd00:60::1/64 dev g6 nodad");
        ip(&lab.b, "addr add fd00:60::2/64 dev g6 nodad");
        // A fresh IPv6 underlay loses its first packets (neighbour
        // discovery while link-local addresses are tentative): wait for it.
        let ready = (0..5).any(|_| ping(&lab.a, "fd00:b::2", 1).is_ok());
        assert!(ready, "the IPv6 underlay never answered a ping");
        ip(&lab.a, "addr add 192.168.61.1/30 dev t6");
        ip(&lab.b, "addr add 192.168.61.2/30 dev t6");
        ping(&lab.a, "192.168.60.2", 3)
            .unwrap_or_else(|o| panic!("IPv4 ping over ip6gre failed:\n{o}"));
        ping(&lab.a, "fd00:60::2", 3)
            .unwrap_or_else(|o| panic!("IPv6 ping over ip6gre failed:\n{o}"));
        ping(&lab.a, "192.168.61.2", 3)
            .unwrap_or_else(|o| panic!("ping over ip6gretap failed:\n{o}"));

        // Hop limit, traffic class and source come from per-packet cmsgs.
        let cap = tap_packets(&lab.r, "veth1", libc::ETH_P_IPV6 as u16);
        let pinger = std::thread::spawn({
            let a = lab.a.clone();
            move || ping(&a, "192.168.60.2", 3)
        });
        let src: [u8; 16] = "fd00:a::2".parse::<Ipv6Addr>().unwrap().octets();
        // g6 packets only: t6 (ip6gretap, TTL inherited) shares the addresses.
        let p = first_packet(&cap, |p| {
            p.len() > 44 && p[6] == 47 && p[8..24] == src && p[42..44] != [0x65, 0x58]
        });
        pinger.join().unwrap().unwrap();
        assert_eq!(p[7], 200, "outer hop limit");
        assert_eq!(
            ((p[0] & 0x0f) << 4) | (p[1] >> 4),
            0x20,
            "outer traffic class"
        );
        assert!(
            matches!(p[40..44], [0, 0, 0x08, 0x00] | [0, 0, 0x86, 0xdd]),
            "GRE right after the IPv6 header"
        );
        let s = dp.finish();
        assert!(stat(&s, &lab.b, "t6").rx_packets >= 3, "{s:?}");
    }

    /// A GRE packet by hand: flags from the options, a checksum over it all.
    /// Sends GRE packets with any outer source from a namespace.
    struct Forger(OwnedFd);

    impl Forger {
        fn new(ns: &str) -> Forger {
            Forger(
                netns::run_in(ns, || {
                    // SAFETY: plain socket(2), checked.
                    let fd = unsafe {
                        libc::socket(
                            libc::AF_INET,
                            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                            libc::IPPROTO_RAW,
                        )
                    };
                    anyhow::ensure!(fd >= 0, "raw socket: {}", io::Error::last_os_error());
                    // SAFETY: a fresh descriptor.
                    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
                })
                .unwrap(),
            )
        }

        fn send(&self, src: Ipv4Addr, dst: Ipv4Addr, gre: &[u8]) {
            self.send_tos(src, dst, 0, gre);
        }

        fn send_tos(&self, src: Ipv4Addr, dst: Ipv4Addr, tos: u8, gre: &[u8]) {
            let mut pkt = vec![0u8; 20];
            pkt.extend(gre);
            let total = pkt.len();
            ipv4_header(&mut pkt[..20], total, tos, 64, false, src, dst);
            let (sa, len) = sockaddr(IpAddr::V4(dst));
            // SAFETY: sends `pkt` to a valid sockaddr.
            let r = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    std::ptr::addr_of!(sa).cast(),
                    len,
                )
            };
            assert_eq!(
                r,
                pkt.len() as isize,
                "forging: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// The in-kernel fast path at one end, the userspace path at the other:
    /// the same wire format both ways, IPv4 and IPv6 inside and outside,
    /// keys, gretap, TCP streams, and forged packets still left to
    /// userspace to drop.
    #[test]
    fn fast_path_interworks_with_the_userspace_path() {
        let lab = Lab::new("fast");
        let (mut a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        (a.ttl, a.tos) = (255, 0x20);
        let (mut ka, mut kb) = pair(&lab, "k7", TunnelKind::Gre);
        for e in [&mut ka, &mut kb] {
            (e.ikey, e.okey) = (Some(7), Some(7));
        }
        let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
        // Over the IPv6 underlay: ip6gre, and ip6gretap with a key.
        let (sa, sb) = pair(&lab, "six0", TunnelKind::Ip6gre);
        let (mut xa, mut xb) = pair(&lab, "six1", TunnelKind::Ip6gretap);
        for e in [&mut xa, &mut xb] {
            (e.ikey, e.okey) = (Some(9), Some(9));
        }
        let fast = Dp::start_with(&lab, vec![a, ka, ta, sa, xa], true, true);
        let user = Dp::start(&lab, vec![b, kb, tb, sb, xb]);
        for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
            ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
            ip(ns, &format!("addr add fd00:50::{n}/64 dev tun0 nodad"));
            ip(ns, &format!("addr add 192.168.57.{n}/30 dev k7"));
            ip(ns, &format!("addr add 192.168.52.{n}/30 dev tap0"));
            ip(ns, &format!("addr add 192.168.66.{n}/30 dev six0"));
            ip(ns, &format!("addr add 192.168.67.{n}/30 dev six1"));
        }
        // A few packets stay in userspace; a flow gets the fast path.
        ping(&lab.a, "192.168.50.2", 3).unwrap_or_else(|o| panic!("ping failed:\n{o}"));
        assert!(!read_stats(&fast.stats).unwrap().tunnels[0].fast_path);
        const LEN: usize = 8 << 20;
        let streams = || {
            tcp_transfer(&lab.a, &lab.b, "192.168.50.2".parse().unwrap(), LEN);
            tcp_transfer(&lab.b, &lab.a, "192.168.57.1".parse().unwrap(), LEN);
            tcp_transfer(&lab.a, &lab.b, "192.168.52.2".parse().unwrap(), LEN);
            tcp_transfer(&lab.b, &lab.a, "192.168.52.1".parse().unwrap(), LEN);
            tcp_transfer(&lab.a, &lab.b, "192.168.66.2".parse().unwrap(), LEN);
            tcp_transfer(&lab.b, &lab.a, "192.168.66.1".parse().unwrap(), LEN);
            tcp_transfer(&lab.a, &lab.b, "192.168.67.2".parse().unwrap(), LEN);
            tcp_transfer(&lab.b, &lab.a, "192.168.67.1".parse().unwrap(), LEN);
        };
        streams();
        fast.wait_for("the fast path on every tunnel", |s| {
            s.tunnels.iter().all(|t| t.fast_path)
        });
        let p = echo_on_the_wire(&lab, "192.168.50.2", [0, 0, 8, 0]);
        assert_eq!(gre::internet_checksum(&p[..20]), 0, "outer header checksum");
        assert_eq!((p[0], p[1], p[8]), (0x45, 0x20, 255), "version, TOS, TTL");
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), 0x4000, "DF, no fragment");
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(p[16..20], [152, 16, 10, 2], "outer destination");
        assert_eq!(p[20..24], [0, 0, 0x08, 0x00], "plain GRE carrying IPv4");
        // k7 inherits the TTL (0): its echo requests go out with the inner one.
        let k = echo_on_the_wire(&lab, "192.168.57.2", [0x20, 0, 8, 0]);
        assert_eq!(k[24..28], 7u32.to_be_bytes(), "the key");
        assert_eq!((k[8], k[28] >> 4), (k[28 + 8], 4), "outer TTL = inner TTL");
        assert_eq!(gre::internet_checksum(&k[..20]), 0, "outer header checksum");
        // ARP, not IP: gretap's slow path still carries it.
        ip(&lab.a, "neigh flush dev tap0");
        for to in [
            "192.168.57.2",
            "fd00:50::2",
            "192.168.52.2",
            "192.168.66.2",
            "192.168.67.2",
        ] {
            ping(&lab.a, to, 3).unwrap_or_else(|o| panic!("ping {to} failed:\n{o}"));
        }
        streams();

        // Forged at a's fast path: a wrong key, a wrong source.
        let forger = Forger::new(&lab.b);
        let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
        let echo = [
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 57, 2, 192, 168, 57, 1,
        ];
        forger.send(
            peer,
            me,
            &gre_packet(gre::ETHERTYPE_IPV4, false, Some(8), None, &echo),
        );
        forger.send(
            Ipv4Addr::new(152, 16, 10, 9),
            me,
            &gre_packet(gre::ETHERTYPE_IPV4, false, Some(7), None, &echo),
        );
        let s = fast.wait_for("both forgeries dropped", |s| {
            s.unmatched >= 1 && s.tunnels.iter().any(|t| t.drop_key >= 1)
        });
        for name in ["tun0", "k7", "tap0", "six0", "six1"] {
            let t = stat(&s, &lab.a, name);
            assert!(t.fast_tx_packets >= 3 && t.fast_rx_packets >= 3, "{t:?}");
            assert_eq!((t.tx_errors, t.rx_errors), (0, 0), "{t:?}");
        }
        assert!(
            stat(&s, &lab.a, "tun0").fast_tx_bytes >= LEN as u64,
            "{s:?}"
        );
        assert!(stat(&s, &lab.a, "k7").fast_rx_bytes >= LEN as u64, "{s:?}");
        for name in ["tap0", "six0", "six1"] {
            let t = stat(&s, &lab.a, name);
            assert!(
                t.fast_tx_bytes >= LEN as u64 && t.fast_rx_bytes >= LEN as u64,
                "{t:?}"
            );
        }
        let u = user.finish();
        for t in &u.tunnels {
            assert!(!t.fast_path && t.fast_tx_packets == 0, "{t:?}");
        }
        for name in ["tun0", "tap0", "six0", "six1"] {
            assert!(stat(&u, &lab.b, name).rx_bytes >= LEN as u64, "{u:?}");
        }
    }

    /// 100 quick pings from `ns` to `to`, answered or not: enough traffic
    /// for the fast path.
    fn flood(ns: &str, to: &str) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-q", "-c", "100", "-i", "0.002",
            ])
            .args(["-W", "1", to])
            .output()
            .expect("running ping");
    }

    /// The MAC address of `dev` in namespace `ns`.
    fn mac(ns: &str, dev: &str) -> [u8; 6] {
        let out = ip(ns, &format!("-o link show dev {dev}"));
        let hex = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC address for {dev}: {out}"));
        let mut m = [0u8; 6];
        for (b, h) in m.iter_mut().zip(hex.split(':')) {
            *b = u8::from_str_radix(h, 16).unwrap();
        }
        m
    }

    /// Sends the Ethernet frame `frame` out of `dev` in namespace `ns`, as
    /// it is (AF_PACKET).
    fn inject(ns: &str, dev: &'static str, frame: Vec<u8>) {
        netns::run_in(ns, move || {
            // SAFETY: plain socket/sendto calls on a fresh fd and local buffers.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
                anyhow::ensure!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(fd);
                let mut sll: libc::sockaddr_ll = zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                let name = std::ffi::CString::new(dev).unwrap();
                sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                sll.sll_halen = 6;
                let r = libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    std::ptr::addr_of!(sll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                anyhow::ensure!(
                    r == frame.len() as isize,
                    "injecting a frame: {}",
                    io::Error::last_os_error()
                );
                Ok(())
            }
        })
        .unwrap()
    }

    /// Every packet on `fd` within `limit` that `want` accepts.
    fn packets(fd: &OwnedFd, limit: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while Instant::now() < deadline {
            // SAFETY: reads into `buf`, whose length is passed.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 && want(&buf[..n as usize]) {
                got.push(buf[..n as usize].to_vec());
            }
        }
        got
    }

    /// An IPv4 packet with a valid header checksum.
    fn ipv4_packet(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        tos: u8,
        id: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0x45, tos];
        p.extend(((20 + payload.len()) as u16).to_be_bytes());
        p.extend(id.to_be_bytes());
        p.extend([0, 0, 64, proto, 0, 0]);
        p.extend(src);
        p.extend(dst);
        let sum = gre::internet_checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend(payload);
        p
    }

    /// An ICMP echo request from `src` to `dst` in IPv4 with TOS `tos`,
    /// its IP ID `id` telling it apart.
    fn echo4(src: [u8; 4], dst: [u8; 4], tos: u8, id: u16) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let sum = gre::internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        ipv4_packet(src, dst, 1, tos, id, &icmp)
    }

    /// The inner packets the forged frames carry: 192.168.50.2 -> .1 with
    /// IDs 0x7700 + n.
    fn marked(p: &[u8]) -> Option<u16> {
        (p.len() >= 20 && p[9] == 1 && p[12..16] == [192, 168, 50, 2] && p[4] == 0x77)
            .then(|| u16::from(p[5]))
    }

    /// What ip_gre refuses, the fast path leaves to the stack (which drops
    /// it, as with kernel GRE): frames for another MAC, 802.1Q-tagged
    /// frames, IPv4 with a bad header checksum. A good frame beside them is
    /// carried.
    #[test]
    fn the_fast_path_leaves_what_ip_gre_refuses_to_the_stack() {
        let lab = Lab::new("refuse");
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let fast = Dp::start_with(&lab, vec![a], true, true);
        let _peer = Dp::start(&lab, vec![b]);
        ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
        flood(&lab.a, "192.168.50.2");
        fast.wait_for("the fast path", |s| s.tunnels[0].fast_path);
        let (to_a, from_r) = (mac(&lab.a, "veth0"), mac(&lab.r, "veth1"));
        let frame = |dst: [u8; 6], vlan: Option<u16>, bad_sum: bool, n: u16| {
            let mut gre = vec![0, 0, 8, 0];
            gre.extend(echo4([192, 168, 50, 2], [192, 168, 50, 1], 0, 0x7700 + n));
            let mut ip = ipv4_packet([152, 16, 10, 2], [172, 16, 10, 2], 47, 0, 9, &gre);
            if bad_sum {
                ip[10] ^= 0x5a;
            }
            let mut f = dst.to_vec();
            f.extend(from_r);
            if let Some(vid) = vlan {
                f.extend([0x81, 0x00]);
                f.extend(vid.to_be_bytes());
            }
            f.extend([0x08, 0x00]);
            f.extend(ip);
            f
        };
        let cap = tap_packets(&lab.a, "tun0", libc::ETH_P_IP as u16);
        let before = read_stats(&fast.stats).unwrap();
        inject(
            &lab.r,
            "veth1",
            frame([0x02, 0, 0, 0, 0, 0x99], None, false, 1),
        );
        inject(&lab.r, "veth1", frame(to_a, Some(5), false, 2));
        inject(&lab.r, "veth1", frame(to_a, None, true, 3));
        inject(&lab.r, "veth1", frame(to_a, None, false, 4));
        let seen: Vec<u16> = packets(&cap, Duration::from_millis(1500), |p| marked(p).is_some())
            .iter()
            .filter_map(|p| marked(p))
            .collect();
        assert_eq!(seen, [4], "the inner packets that reached tun0");
        let s = fast.wait_for("the good frame carried by the fast path", |s| {
            s.tunnels[0].fast_rx_packets > before.tunnels[0].fast_rx_packets
        });
        let (t, t0) = (&s.tunnels[0], &before.tunnels[0]);
        assert!(t.fast_path, "{t:?}");
        assert_eq!(
            (t.rx_packets, s.malformed, s.unmatched),
            (t0.rx_packets, before.malformed, before.unmatched),
            "the stack dropped the refused frames before userspace saw them: {s:#?}"
        );
    }

    /// IPv6 GRE packets from namespace `ns` with any traffic class.
    struct Forger6(OwnedFd);

    impl Forger6 {
        fn new(ns: &str) -> Forger6 {
            Forger6(netns::run_in(ns, || raw_socket(true)).unwrap())
        }

        fn send(&self, dst: Ipv6Addr, tclass: u8, gre: &[u8]) {
            setsockopt(
                &self.0,
                libc::IPPROTO_IPV6,
                libc::IPV6_TCLASS,
                tclass.into(),
            )
            .unwrap();
            let (sa, len) = sockaddr(IpAddr::V6(dst));
            // SAFETY: sends `gre` to a valid sockaddr.
            let r = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    gre.as_ptr().cast(),
                    gre.len(),
                    0,
                    std::ptr::addr_of!(sa).cast(),
                    len,
                )
            };
            assert_eq!(
                r,
                gre.len() as isize,
                "forging: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// RFC 6040 on receipt: outer CE marks an ECN-capable inner packet CE,
    /// outer ECT(1) makes ECT(0) ECT(1), CE over Not-ECT is dropped and
    /// counted; for IPv4 inside IPv4 (gre), IPv6 inside IPv6 (ip6gre) and
    /// IPv4 in Ethernet (gretap), received by the userspace path or the
    /// fast path.
    fn ecn_marks_arrive(fast: bool) {
        let lab = Lab::new(if fast { "ecnf" } else { "ecnu" });
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let (sa, sb) = pair(&lab, "six0", TunnelKind::Ip6gre);
        let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
        let dp = Dp::start_with(&lab, vec![a, sa, ta], true, fast);
        let _peer = Dp::start(&lab, vec![b, sb, tb]);
        for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
            ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
            ip(ns, &format!("addr add fd00:66::{n}/64 dev six0 nodad"));
            ip(ns, &format!("addr add 192.168.52.{n}/30 dev tap0"));
        }
        let ready = (0..5).any(|_| ping(&lab.a, "fd00:b::2", 1).is_ok());
        assert!(ready, "the IPv6 underlay never answered a ping");
        if fast {
            for to in ["192.168.50.2", "fd00:66::2", "192.168.52.2"] {
                flood(&lab.a, to);
            }
            dp.wait_for("the fast path on every tunnel", |s| {
                s.tunnels.iter().all(|t| t.fast_path)
            });
        }
        let caps = [
            tap_packets(&lab.a, "tun0", libc::ETH_P_IP as u16),
            tap_packets(&lab.a, "six0", libc::ETH_P_IPV6 as u16),
            tap_packets(&lab.a, "tap0", libc::ETH_P_IP as u16),
        ];
        let before = read_stats(&dp.stats).unwrap();
        let (forger, forger6) = (Forger::new(&lab.b), Forger6::new(&lab.b));
        let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
        let gre = |proto: u16, inner: &[u8]| gre_packet(proto, false, None, None, inner);
        let v4 =
            |ecn: u8, n: u16| echo4([192, 168, 50, 2], [192, 168, 50, 1], 0xb8 | ecn, 0x7700 + n);
        // (outer ECN, inner ECN, marker): carried to tun0 but for 3.
        for (outer, inner, n) in [(3, 2, 1), (1, 2, 2), (3, 0, 3), (3, 3, 4), (0, 2, 5)] {
            forger.send_tos(peer, me, outer, &gre(gre::ETHERTYPE_IPV4, &v4(inner, n)));
        }
        // IPv6 inside, ECT(1) under an outer CE; flow label 0x66 tells it apart.
        let mut v6 = vec![0x6b, 0x80 | (1 << 4), 0, 0x66, 0, 0, 59, 64];
        v6.extend("fd00:66::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend("fd00:66::1".parse::<Ipv6Addr>().unwrap().octets());
        forger6.send(
            "fd00:a::2".parse().unwrap(),
            0xb8 | 3,
            &gre(gre::ETHERTYPE_IPV6, &v6),
        );
        // IPv4 ECT(0) in a broadcast frame, under an outer CE.
        let mut frame = vec![0xff; 6];
        frame.extend([0x02, 0, 0, 0, 0, 0x52, 0x08, 0x00]);
        frame.extend(echo4([192, 168, 52, 2], [192, 168, 52, 1], 2, 0x7752));
        forger.send_tos(peer, me, 3, &gre(gre::ETHERTYPE_TEB, &frame));

        let wait = Duration::from_millis(1500);
        let tun0: Vec<(u16, u8)> = packets(&caps[0], wait, |p| marked(p).is_some())
            .iter()
            .inspect(|p| assert_eq!(gre::internet_checksum(&p[..20]), 0, "inner checksum"))
            .map(|p| (marked(p).unwrap(), p[1]))
            .collect();
        assert_eq!(
            tun0,
            [(1, 0xb8 | 3), (2, 0xb8 | 1), (4, 0xb8 | 3), (5, 0xb8 | 2)],
            "(marker, TOS) of what reached tun0"
        );
        let six0 = packets(&caps[1], wait, |p| p.len() >= 40 && p[2..4] == [0, 0x66]);
        assert_eq!(six0.len(), 1, "the IPv6 packet reached six0");
        assert_eq!(
            (six0[0][0], six0[0][1]),
            (0x6b, 0x80 | (3 << 4)),
            "CE in its traffic class"
        );
        let tap0 = packets(&caps[2], wait, |p| p.len() >= 20 && p[4..6] == [0x77, 0x52]);
        assert_eq!(tap0.len(), 1, "the frame's IPv4 packet reached tap0");
        assert_eq!(tap0[0][1] & 3, 3, "CE inside the frame");
        assert_eq!(gre::internet_checksum(&tap0[0][..20]), 0, "its checksum");

        let s = dp.wait_for("the CE-marked Not-ECT packet dropped and counted", |s| {
            stat(s, &lab.a, "tun0").drop_ecn == 1
        });
        if fast {
            // The fast path marked them: userspace saw only the dropped one.
            let s = dp.wait_for("the fast path's counts", |s| {
                stat(s, &lab.a, "tun0").fast_rx_packets
                    >= stat(&before, &lab.a, "tun0").fast_rx_packets + 4
                    && stat(s, &lab.a, "six0").fast_rx_packets
                        > stat(&before, &lab.a, "six0").fast_rx_packets
                    && stat(s, &lab.a, "tap0").fast_rx_packets
                        > stat(&before, &lab.a, "tap0").fast_rx_packets
            });
            for name in ["tun0", "six0"] {
                assert_eq!(
                    stat(&s, &lab.a, name).rx_packets,
                    stat(&before, &lab.a, name).rx_packets,
                    "{name}: {s:#?}"
                );
            }
        } else {
            let (now, then) = (stat(&s, &lab.a, "tun0"), stat(&before, &lab.a, "tun0"));
            assert!(now.rx_packets >= then.rx_packets + 4, "{now:?}");
        }
    }

    #[test]
    fn ecn_marks_arrive_through_the_userspace_path() {
        ecn_marks_arrive(false);
    }

    #[test]
    fn ecn_marks_arrive_through_the_fast_path() {
        ecn_marks_arrive(true);
    }

    /// The GRE packets from a (seen at the router) for `count` pings to
    /// `to` with `ping -M pmtu`, whose GRE header starts with `gre`.
    fn echoes_on_the_wire(
        lab: &Lab,
        to: &'static str,
        pmtu: &'static str,
        gre: [u8; 4],
    ) -> Vec<Vec<u8>> {
        let cap = tap_packets(&lab.r, "veth1", libc::ETH_P_IP as u16);
        let a = lab.a.clone();
        let pinger = std::thread::spawn(move || {
            Command::new("ip")
                .args([
                    "netns", "exec", &a, "ping", "-n", "-c", "4", "-i", "0.1", "-M", pmtu, to,
                ])
                .output()
                .expect("running ping")
        });
        // ICMP echo requests inside, after GRE with or without a key.
        let inner = 20 + if gre[0] & 0x20 != 0 { 8 } else { 4 };
        let p = packets(&cap, Duration::from_millis(1500), |p| {
            p.len() > inner + 20
                && p[9] == 47
                && p[12..16] == [172, 16, 10, 2]
                && p[20..24] == gre
                && (p[inner + 9], p[inner + 20]) == (1, 8)
        });
        let out = pinger.join().unwrap();
        assert!(out.status.success(), "{out:?}");
        p
    }

    /// The outer IPv4 header as ip_gre writes it: DF always with pmtudisc,
    /// else the inner packet's; an ID from a counter, never a constant 0.
    fn outer_id_and_df(fast: bool) {
        let lab = Lab::new(if fast { "idf" } else { "idu" });
        let (mut a, mut b) = pair(&lab, "tun0", TunnelKind::Gre);
        (a.pmtudisc, b.pmtudisc) = (false, false);
        let (mut ka, mut kb) = pair(&lab, "k7", TunnelKind::Gre);
        for e in [&mut ka, &mut kb] {
            (e.ikey, e.okey) = (Some(7), Some(7));
        }
        let dp = Dp::start_with(&lab, vec![a, ka], true, fast);
        let _peer = Dp::start(&lab, vec![b, kb]);
        for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
            ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
            ip(ns, &format!("addr add 192.168.57.{n}/30 dev k7"));
        }
        if fast {
            flood(&lab.a, "192.168.50.2");
            flood(&lab.a, "192.168.57.2");
            dp.wait_for("the fast path", |s| s.tunnels.iter().all(|t| t.fast_path));
        }
        // (tunnel, its GRE header, ping's DF, the outer DF)
        for (to, gre, pmtu, df) in [
            ("192.168.50.2", [0, 0, 8, 0], "do", true),
            ("192.168.50.2", [0, 0, 8, 0], "dont", false),
            ("192.168.57.2", [0x20, 0, 8, 0], "dont", true),
        ] {
            let what = format!("{to}, ping -M {pmtu}");
            let ps = echoes_on_the_wire(&lab, to, pmtu, gre);
            assert_eq!(ps.len(), 4, "{what}: the echo requests");
            let mut ids = Vec::new();
            for p in &ps {
                assert_eq!(gre::internet_checksum(&p[..20]), 0, "{what}: checksum");
                let inner = 20 + if gre[0] & 0x20 != 0 { 8 } else { 4 };
                assert_eq!(
                    p[inner + 6] & 0x40 != 0,
                    pmtu == "do",
                    "{what}: the inner DF"
                );
                let flags = u16::from_be_bytes([p[6], p[7]]);
                assert_eq!(
                    flags,
                    if df { 0x4000 } else { 0 },
                    "{what}: DF, no fragment"
                );
                ids.push(u16::from_be_bytes([p[4], p[5]]));
            }
            // One tunnel's packets, one counter: each ID a little past the last.
            for w in ids.windows(2) {
                let step = w[1].wrapping_sub(w[0]);
                assert!((1..16).contains(&step), "{what}: outer IDs {ids:?}");
            }
        }
        let s = read_stats(&dp.stats).unwrap();
        for t in &s.tunnels {
            assert_eq!(t.fast_path, fast, "{t:?}");
        }
    }

    #[test]
    fn outer_id_and_df_as_ip_gre_on_the_userspace_path() {
        outer_id_and_df(false);
    }

    #[test]
    fn outer_id_and_df_as_ip_gre_on_the_fast_path() {
        outer_id_and_df(true);
    }

    /// Why a tunnel end is not on the fast path, in its stats.
    #[test]
    fn the_stats_say_why_the_fast_path_does_not_carry_an_end() {
        let lab = Lab::new("why");
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let (mut ca, _) = pair(&lab, "sum0", TunnelKind::Gre);
        (ca.ikey, ca.okey, ca.checksum) = (Some(3), Some(3), true);
        let fast = Dp::start_with(&lab, vec![a, ca], true, true);
        let checksums = "GRE checksums or sequence numbers are configured (userspace keeps them)";
        let s = fast.wait_for("the reasons", |s| {
            s.tunnels[1].fast_path_off.as_deref() == Some(checksums)
        });
        assert_eq!(
            s.tunnels[0].fast_path_off.as_deref(),
            Some("waits for 64 packets through userspace")
        );
        let off = Dp::start_with(&lab, vec![b], true, false);
        let s = read_stats(&off.stats).unwrap();
        assert_eq!(
            s.tunnels[0].fast_path_off.as_deref(),
            Some("disabled by GRELAB_DP_FASTPATH=0")
        );
        // Once on it, no reason.
        ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
        flood(&lab.a, "192.168.50.2");
        let s = fast.wait_for("the fast path", |s| s.tunnels[0].fast_path);
        assert_eq!(s.tunnels[0].fast_path_off, None);
    }

    fn gre_packet(
        proto: u16,
        csum: bool,
        key: Option<u32>,
        seq: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![
            (u8::from(csum) << 7) | (u8::from(key.is_some()) << 5) | (u8::from(seq.is_some()) << 4),
            0,
        ];
        p.extend(proto.to_be_bytes());
        if csum {
            p.extend([0; 4]);
        }
        for word in [key, seq].into_iter().flatten() {
            p.extend(word.to_be_bytes());
        }
        p.extend(payload);
        if csum {
            let sum = gre::internet_checksum(&p);
            p[4..6].copy_from_slice(&sum.to_be_bytes());
        }
        p
    }

    #[test]
    fn forged_packets_are_dropped_and_counted() {
        let lab = Lab::new("spoof");
        // Only host a's end runs: host b forges everything a receives.
        let (mut a, _) = pair(&lab, "tun0", TunnelKind::Gre);
        (a.ikey, a.okey, a.checksum, a.sequence) = (Some(7), Some(7), true, true);
        let dp = Dp::start(&lab, vec![a]);
        let forger = Forger::new(&lab.b);
        let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
        let send = |src: Ipv4Addr, gre: Vec<u8>| forger.send(src, me, &gre);
        // An inner IPv4 echo request 192.168.50.2 -> 192.168.50.1.
        let mut inner = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 50, 2, 192, 168, 50, 1, 8, 0, 0xf7,
            0xff, 0, 0, 0, 0,
        ];
        let sum = gre::internet_checksum(&inner[..20]);
        inner[10..12].copy_from_slice(&sum.to_be_bytes());
        let ip4 = gre::ETHERTYPE_IPV4;
        let good = |seq| gre_packet(ip4, true, Some(7), Some(seq), &inner);

        send(peer, good(100));
        send(Ipv4Addr::new(152, 16, 10, 99), good(101)); // unmatched
        send(peer, gre_packet(ip4, true, Some(8), Some(101), &inner)); // drop_key
        send(peer, gre_packet(ip4, true, None, Some(101), &inner)); // drop_key
        let mut bad_sum = good(101);
        bad_sum[4] ^= 0xff;
        send(peer, bad_sum); // drop_checksum
        send(peer, gre_packet(ip4, false, Some(7), Some(101), &inner)); // drop_checksum
        send(peer, good(50)); // drop_sequence
        send(peer, good(100)); // drop_sequence (replay)
        send(peer, gre_packet(ip4, true, Some(7), None, &inner)); // drop_sequence
        send(
            peer,
            gre_packet(gre::ETHERTYPE_TEB, true, Some(7), Some(101), &inner),
        ); // drop_protocol
        send(peer, gre_packet(0x0806, true, Some(7), Some(101), &inner)); // drop_protocol
        let mut v1 = good(101);
        v1[1] = 1;
        send(peer, v1); // malformed
        send(peer, vec![0x20, 0, 8, 0, 0]); // malformed: key flagged, cut short
        send(peer, good(101));

        let s = dp.wait_for("both genuine packets", |s| {
            s.tunnels[0].rx_packets >= 2 && s.malformed >= 2
        });
        std::thread::sleep(Duration::from_millis(300));
        let s2 = read_stats(&dp.stats).unwrap();
        assert_eq!(s, s2, "counters moved after the last forged packet");
        let t = &s.tunnels[0];
        assert_eq!(t.rx_packets, 2, "only the two genuine packets pass: {s:#?}");
        assert_eq!(t.rx_bytes, 2 * inner.len() as u64);
        assert_eq!((s.unmatched, s.malformed), (1, 2), "{s:#?}");
        assert_eq!(
            (
                t.drop_key,
                t.drop_checksum,
                t.drop_sequence,
                t.drop_protocol
            ),
            (2, 2, 3, 2),
            "{s:#?}"
        );
    }

    #[test]
    fn a_setup_error_leaves_nothing_behind() {
        let lab = Lab::new("fail");
        let (a, _) = pair(&lab, "tun0", TunnelKind::Gre);
        let mut missing = a.clone();
        (missing.name, missing.netns) = ("tun1".into(), format!("{}-missing", lab.a));
        let spec = Spec {
            lab: "test".into(),
            tunnels: vec![a.clone(), missing],
        };
        let stop = AtomicBool::new(false);
        let mut ready = false;
        let err = run(&spec, &lab.dir.join("s.json"), || ready = true, &stop).unwrap_err();
        assert!(!ready);
        assert!(format!("{err:#}").contains("-missing"), "{err:#}");
        // A fork by a parallel test may hold a copy of the fd until it execs.
        let deadline = Instant::now() + Duration::from_secs(2);
        while ip(&lab.a, "-o link show").contains("tun0") {
            assert!(Instant::now() < deadline, "tun0 outlived the failed setup");
            std::thread::sleep(Duration::from_millis(20));
        }

        let spec = Spec {
            lab: "test".into(),
            tunnels: vec![a.clone(), a],
        };
        let err = run(&spec, &lab.dir.join("s.json"), || ready = true, &stop).unwrap_err();
        assert!(!ready);
        assert!(format!("{err:#}").contains("tun0"), "{err:#}");
    }

    #[test]
    fn one_socket_per_namespace_and_family() {
        let lab = Lab::new("socks");
        let mut ends = vec![];
        for i in 0..10 {
            let (mut a, mut b) = pair(&lab, &format!("k{i}"), TunnelKind::Gre);
            (a.ikey, a.okey, b.ikey, b.okey) = (Some(i), Some(i), Some(i), Some(i));
            ends.extend([a, b]);
        }
        let (a, b) = pair(&lab, "g6", TunnelKind::Ip6gre);
        ends.extend([a, b]);
        let engine = Engine::new(
            &Spec {
                lab: "test".into(),
                tunnels: ends,
            },
            true,
        )
        .unwrap();
        assert_eq!(engine.tunnels.len(), 22);
        let v6: Vec<bool> = engine.socks.iter().map(|s| s.v6).collect();
        assert_eq!(
            v6,
            [false, false, true, true],
            "a, b over IPv4, then a, b over IPv6"
        );
    }

    #[test]
    #[ignore = "entry point of the child process that start_serve_stop_as_a_process spawns"]
    fn child_serve() {
        let spec = std::env::var_os("GRELAB_DP_SPEC").expect("GRELAB_DP_SPEC");
        let stats = std::env::var_os("GRELAB_DP_STATS").expect("GRELAB_DP_STATS");
        serve(Path::new(&spec), Path::new(&stats), Some(3)).unwrap();
    }

    /// `launch` with this test binary running `child_serve` in place of
    /// `grelab dataplane`.
    fn launch_test_child(lab: &Lab, spec: &Spec) -> Result<Identity> {
        let exe = std::env::current_exe().unwrap();
        launch(&lab.dir, spec, |spec_path, stats_path| {
            let mut cmd = Command::new(exe);
            cmd.args([
                "--exact",
                "dataplane::tests::child_serve",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ]);
            cmd.env("GRELAB_DP_SPEC", spec_path)
                .env("GRELAB_DP_STATS", stats_path);
            cmd
        })
    }

    #[test]
    fn start_serve_stop_as_a_process() {
        let lab = Lab::new("proc");
        let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
        let spec = Spec {
            lab: "test".into(),
            tunnels: vec![a.clone(), b],
        };
        let id = launch_test_child(&lab, &spec).unwrap();
        struct Kill(Identity);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = stop(&self.0);
            }
        }
        let _guard = Kill(id);
        let pid = id.pid;
        assert!(is_running(&id));
        assert_eq!(
            find(&lab.dir, None),
            [id],
            "found by the identity left beside the spec"
        );
        ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
        ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
        ping(&lab.a, "192.168.50.2", 3)
            .unwrap_or_else(|o| panic!("ping through the dataplane process failed:\n{o}"));
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("VmRSS: ?");
        eprintln!("dataplane process serving the basic lab (2 ends, in the test binary): {rss}");
        assert!(stop(&id).unwrap());
        assert!(!is_running(&id));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "stopped and reaped"
        );
        assert!(!stop(&id).unwrap(), "nothing left to stop");
        let s = read_stats(&stats_path(&lab.dir)).unwrap();
        // The first packet attaches the fast path, which carries the rest.
        let b = stat(&s, &lab.b, "tun0");
        assert!(
            b.rx_packets >= 1 && b.rx_packets + b.fast_rx_packets >= 3,
            "stats written at exit: {s:?}"
        );
        // Devices are persistent: they outlive the process (deleting the
        // lab's namespaces removes them in one batch).
        assert!(
            ip(&lab.a, "-o link show").contains("tun0"),
            "the persistent device must outlive the process"
        );
        ip(&lab.a, "link del tun0");

        let mut bad = a;
        bad.netns = format!("{}-missing", lab.a);
        let err = launch_test_child(
            &lab,
            &Spec {
                lab: "test".into(),
                tunnels: vec![bad],
            },
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("failed to start") && msg.contains("-missing"),
            "{msg}"
        );
        assert!(!is_running(&Identity {
            pid: u32::MAX / 2,
            ..id
        }));
    }

    #[test]
    fn outer_fields_follow_ip_gre() {
        let mut t = end("t", "n", TunnelKind::Gre, "10.0.0.1", "10.0.0.2");
        let mut v4 = [0u8; 20];
        (v4[0], v4[1], v4[8]) = (0x45, 0xb8 | 1, 17); // DSCP EF, ECT(1), TTL 17
        assert_eq!(
            outer_fields(&t, false, &v4),
            (17, 1, true),
            "TTL inherited, fixed TOS 0 keeps inner ECN, DF with pmtudisc"
        );
        (t.ttl, t.tos) = (255, 1);
        assert_eq!(outer_fields(&t, false, &v4).1, 0xb9, "TOS inherited");
        v4[1] = 0x03; // CE
        assert_eq!(
            outer_fields(&t, false, &v4).1,
            0x02,
            "CE goes out as ECT(0)"
        );
        t.pmtudisc = false;
        assert!(
            !outer_fields(&t, false, &v4).2,
            "no DF inside, none outside"
        );
        v4[6] = 0x40;
        assert!(outer_fields(&t, false, &v4).2, "the inner DF copied");
        let mut v6 = [0u8; 40];
        (v6[0], v6[1], v6[7]) = (0x6b, 0x80, 9); // traffic class 0xb8
        t.ttl = 0;
        assert_eq!(outer_fields(&t, false, &v6), (9, 0xb8, false));
        let mut frame = [0u8; 54];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14..34].copy_from_slice(&v4);
        assert_eq!(
            outer_fields(&t, true, &frame),
            (17, 0x02, true),
            "gretap looks inside the frame, for the DF too"
        );
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            outer_fields(&t, true, &frame),
            (64, 0, false),
            "ARP: default TTL"
        );
    }

    /// RFC 6040's table (the kernel's INET_ECN_decapsulate), for IPv4,
    /// IPv6 and IP in Ethernet.
    #[test]
    fn ecn_decapsulation_follows_rfc_6040() {
        let mut v4 = vec![
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let v6 = |ecn: u8| {
            let mut p = vec![0u8; 40];
            (p[0], p[1]) = (0x6b, 0x80 | (ecn << 4)); // DSCP EF
            p
        };
        // (outer, inner) -> the inner ECN after, or None for a drop.
        let table = [
            (0, 0, Some(0)),
            (0, 1, Some(1)),
            (0, 2, Some(2)),
            (0, 3, Some(3)),
            (2, 0, Some(0)),
            (2, 1, Some(1)),
            (2, 2, Some(2)),
            (2, 3, Some(3)),
            (1, 0, Some(0)),
            (1, 1, Some(1)),
            (1, 2, Some(1)),
            (1, 3, Some(3)),
            (3, 0, None),
            (3, 1, Some(3)),
            (3, 2, Some(3)),
            (3, 3, Some(3)),
        ];
        for (outer, inner, want) in table {
            let what = format!("outer {outer}, inner {inner}");
            v4[1] = 0xb8 | inner;
            v4[10..12].fill(0);
            let sum = gre::internet_checksum(&v4);
            v4[10..12].copy_from_slice(&sum.to_be_bytes());
            let mut p = v4.clone();
            let kept = ecn_decapsulate(0xfc | outer, gre::ETHERTYPE_IPV4, &mut p);
            assert_eq!(kept, want.is_some(), "IPv4, {what}");
            if let Some(e) = want {
                assert_eq!(p[1], 0xb8 | e, "IPv4, {what}");
                assert_eq!(gre::internet_checksum(&p), 0, "IPv4 checksum, {what}");
                assert_eq!(
                    (&p[..1], &p[2..10], &p[12..]),
                    (&v4[..1], &v4[2..10], &v4[12..])
                );
            }
            let mut p = v6(inner);
            let kept = ecn_decapsulate(outer, gre::ETHERTYPE_IPV6, &mut p);
            assert_eq!(kept, want.is_some(), "IPv6, {what}");
            if let Some(e) = want {
                assert_eq!(p, v6(e), "IPv6, {what}");
            }
            let mut frame = vec![0u8; 12];
            frame.extend([0x86, 0xdd]);
            frame.extend(v6(inner));
            let kept = ecn_decapsulate(outer, gre::ETHERTYPE_TEB, &mut frame);
            assert_eq!(kept, want.is_some(), "IPv6 in Ethernet, {what}");
            if let Some(e) = want {
                assert_eq!(frame[14..], v6(e), "IPv6 in Ethernet, {what}");
            }
        }
        // Not IP, a tagged frame, a stump: as they are.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut tagged = vec![0u8; 60];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        tagged[16..18].copy_from_slice(&[0x08, 0x00]);
        for mut p in [arp, tagged] {
            let before = p.clone();
            assert!(ecn_decapsulate(3, gre::ETHERTYPE_TEB, &mut p));
            assert_eq!(p, before);
        }
        assert!(ecn_decapsulate(3, gre::ETHERTYPE_IPV4, &mut [0x45, 0]));
    }

    #[test]
    fn a_full_send_buffer_delays_a_batch_instead_of_losing_it() {
        let mut fds = [0; 2];
        let kind = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socketpair fills the two descriptors.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) },
            0
        );
        // SAFETY: both are fresh descriptors nothing else owns.
        let (tx, rx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut payload = [7u8; 1000];
        // SAFETY (both sends): `payload` outlives the calls.
        let send = || unsafe { libc::send(tx.as_raw_fd(), payload.as_ptr().cast(), 1000, 0) };
        let mut queued = 0;
        while send() > 0 {
            queued += 1;
        }
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN),
            "the send buffer is full"
        );
        const N: usize = 64;
        let mut iov = [libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        }; N];
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: plain data; zero is valid.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // The receiver drains the queue while the batch is sent.
        let want = queued + N;
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 2000];
            let mut got = 0;
            while got < want {
                let mut p = libc::pollfd {
                    fd: rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd; `buf` is as long as passed.
                let n = unsafe {
                    libc::poll(&mut p, 1, 2000);
                    libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                if n <= 0 {
                    break;
                }
                got += 1;
            }
            got
        });
        let mut ok = [false; N];
        send_batch(tx.as_raw_fd(), &mut msgs, &mut ok, N);
        assert_eq!(ok, [true; N], "every message of the batch was sent");
        assert_eq!(reader.join().unwrap(), want);
    }

    #[test]
    fn ipv4_parsing_bounds() {
        assert!(parse_ipv4(&[]).is_none());
        assert!(parse_ipv4(&[0x45; 19]).is_none());
        assert!(
            parse_ipv4(&[0x46; 22]).is_none(),
            "options beyond the packet"
        );
        let mut p = [0u8; 30];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[12..16].copy_from_slice(&[1, 2, 3, 4]);
        let (src, _, gre) = parse_ipv4(&p).unwrap();
        assert_eq!(
            (src, gre.len()),
            ("1.2.3.4".parse().unwrap(), 8),
            "trailing padding is cut"
        );
    }
}
