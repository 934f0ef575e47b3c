//! The kernel floor for benches/run.sh: builds the lab of a plan
//! (`grelab plan --format json`) with only the syscalls and netlink messages
//! it needs, and removes it, so grelab's cost can be told from the kernel's.
//!
//! `floor up PLAN.json`: /run/netns prepared once; per namespace a file,
//! unshare(CLONE_NEWNET) on one worker thread, a bind mount, a netlink socket
//! opened right there (so no setns is ever needed) and the namespace's
//! sysctls; then per namespace its veths (peer created in place, ifindex
//! chosen by us so no lookups are needed), then its addresses, links up,
//! neighbours and routes, sent many messages per write.
//! `floor down PLAN.json`: umount + unlink of each namespace.
//! FLOOR_TIMINGS=1 prints phase times; FLOOR_ONE_QUEUE=1 see [`one_queue`].
//! No ownership marks, no state, no rollback: a measuring tool, not grelab.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use grelab::plan::{Plan, Step};
use grelab::topology::Destination;

type Result<T> = std::result::Result<T, String>;

const NETNS_DIR: &str = "/run/netns";
/// Messages per write: their acks must fit the socket's receive buffer.
const CHUNK: usize = 64;
/// First ifindex we give a veth in each namespace (lo is 1; leaves room for
/// fallback devices such as tunl0 that some kernels add to every namespace).
const FIRST_INDEX: i32 = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, file] if cmd == "up" || cmd == "down" => {
            read_plan(file).and_then(|plan| if cmd == "up" { up(&plan) } else { down(&plan) })
        }
        _ => Err("usage: floor up|down PLAN.json (from `grelab plan FILE --format json`)".into()),
    };
    if let Err(e) = result {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}

fn read_plan(file: &str) -> Result<Plan> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing plan {file}: {e}"))
}

fn errno(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// /run/netns as a shared mount point, as iproute2 makes it.
fn prepare_dir() -> Result<()> {
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| format!("creating {NETNS_DIR}: {e}"))?;
    let dir = cstr(NETNS_DIR);
    let shared = || unsafe {
        libc::mount(
            std::ptr::null(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if shared() == 0 {
        return Ok(());
    }
    let bind = unsafe {
        libc::mount(
            dir.as_ptr(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if bind != 0 || shared() != 0 {
        return Err(errno(format!("making {NETNS_DIR} a shared mount")));
    }
    Ok(())
}

/// A namespace made by `up`: its netlink socket and a descriptor of it.
struct Ns {
    sock: OwnedFd,
    fd: OwnedFd,
}

/// Creates namespace `name` on the calling thread, which stays in it.
fn create_ns(name: &str, sysctls: &[(&str, &str)]) -> Result<Ns> {
    let path = format!("{NETNS_DIR}/{name}");
    File::create_new(&path).map_err(|e| format!("creating {path}: {e}"))?;
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(errno("unshare(CLONE_NEWNET)"));
    }
    let (src, dst) = (cstr("/proc/thread-self/ns/net"), cstr(&path));
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(errno(format!("bind-mounting {path}")));
    }
    let fd = File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("opening namespace {name}: {e}"))?
        .into();
    let sock = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if sock < 0 {
        return Err(errno("opening a netlink socket"));
    }
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    for (key, value) in sysctls {
        let p = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| format!("setting {key}={value} in {name}: {e}"))?;
    }
    Ok(Ns { sock, fd })
}

/// A netlink message under construction.
struct Msg(Vec<u8>);

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_F_NODAD: u8 = 0x02;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const NLA_F_NESTED: u16 = 0x8000;

impl Msg {
    fn new(ty: u16, flags: u16, header: &[u8]) -> Msg {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(header);
        Msg(b)
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    fn begin(&mut self, ty: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The finished message (its sequence number is set when sent).
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut h = vec![0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// FLOOR_ONE_QUEUE=1: veths with one queue each way. Without it the kernel
/// gives a veth a queue per CPU, then cuts it to one, waiting for an RCU
/// grace period, at each end (veth_init_queues): the lab works the same,
/// only `ip -d link` shows numtxqueues 1.
fn one_queue() -> bool {
    std::env::var_os("FLOOR_ONE_QUEUE").is_some()
}

fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn name_attr(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// Interface indexes: lo is 1, veths get ours.
struct Indexes {
    map: HashMap<(String, String), i32>,
    next: HashMap<String, i32>,
}

impl Indexes {
    fn assign(&mut self, ns: &str, dev: &str) -> i32 {
        let n = self.next.entry(ns.to_owned()).or_insert(FIRST_INDEX);
        let i = *n;
        *n += 1;
        self.map.insert((ns.to_owned(), dev.to_owned()), i);
        i
    }

    fn get(&self, ns: &str, dev: &str) -> Result<i32> {
        if dev == "lo" {
            return Ok(1);
        }
        self.map
            .get(&(ns.to_owned(), dev.to_owned()))
            .copied()
            .ok_or_else(|| format!("no interface {dev} in {ns} (tunnels are not supported)"))
    }
}

/// The message of one step, or None for steps made elsewhere.
fn message(step: &Step, idx: &mut Indexes, nss: &HashMap<&str, Ns>) -> Result<Option<Msg>> {
    Ok(Some(match step {
        Step::Namespace { .. } | Step::Sysctl { .. } => return Ok(None),
        Step::Tunnel { .. } | Step::Multicast { .. } => {
            return Err("tunnels are not part of the floor".into());
        }
        Step::Bridge { .. } | Step::Master { .. } => {
            return Err("bridges are not part of the floor".into());
        }
        Step::Impair { .. } => return Err("impairments are not part of the floor".into()),
        Step::Veth {
            ns,
            name,
            peer_ns,
            peer,
            mtu,
            mac,
            peer_mac,
        } => {
            let (i, pi) = (idx.assign(ns, name), idx.assign(peer_ns, peer));
            let peer_fd = nss
                .get(peer_ns.as_str())
                .ok_or_else(|| format!("no namespace {peer_ns}"))?
                .fd
                .as_raw_fd();
            let mut m = Msg::new(
                libc::RTM_NEWLINK,
                NLM_F_CREATE | NLM_F_EXCL,
                &ifinfomsg(i, 0, 0),
            );
            m.attr(IFLA_IFNAME, &name_attr(name))
                .attr(IFLA_MTU, &mtu.to_ne_bytes())
                .attr(IFLA_ADDRESS, &mac.0);
            if one_queue() {
                m.attr(IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes())
                    .attr(IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
            }
            let info = m.begin(IFLA_LINKINFO);
            m.attr(IFLA_INFO_KIND, b"veth\0");
            let data = m.begin(IFLA_INFO_DATA);
            let p = m.begin(VETH_INFO_PEER);
            m.0.extend_from_slice(&ifinfomsg(pi, 0, 0));
            m.attr(IFLA_IFNAME, &name_attr(peer))
                .attr(IFLA_MTU, &mtu.to_ne_bytes())
                .attr(IFLA_ADDRESS, &peer_mac.0)
                .attr(IFLA_NET_NS_FD, &(peer_fd as u32).to_ne_bytes());
            if one_queue() {
                m.attr(IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes())
                    .attr(IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
            }
            m.end(p);
            m.end(data);
            m.end(info);
            m
        }
        Step::Address { ns, dev, addr } => {
            let a = &addr.addr;
            let flags = if a.is_ipv6() { IFA_F_NODAD } else { 0 };
            let mut h = vec![family(a), addr.prefix, flags, 0];
            h.extend_from_slice(&idx.get(ns, dev)?.to_ne_bytes());
            let mut m = Msg::new(libc::RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &h);
            m.attr(IFA_LOCAL, &octets(a)).attr(IFA_ADDRESS, &octets(a));
            // The broadcast address grelab sets, as `ip addr add ... brd +`.
            if let IpAddr::V4(v4) = a
                && addr.prefix < 31
            {
                let host = u32::MAX >> addr.prefix;
                m.attr(IFA_BROADCAST, &(u32::from(*v4) | host).to_be_bytes());
            }
            m
        }
        Step::Up { ns, dev } => {
            let up = libc::IFF_UP as u32;
            Msg::new(libc::RTM_NEWLINK, 0, &ifinfomsg(idx.get(ns, dev)?, up, up))
        }
        Step::Neighbor { ns, dev, addr, mac } => {
            let mut h = vec![family(addr), 0, 0, 0];
            h.extend_from_slice(&idx.get(ns, dev)?.to_ne_bytes());
            h.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
            h.extend_from_slice(&[0, 0]);
            let mut m = Msg::new(libc::RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &h);
            m.attr(NDA_DST, &octets(addr)).attr(NDA_LLADDR, &mac.0);
            m
        }
        Step::Route { to, via, .. } => {
            let dst = match to {
                Destination::Default(_) => None,
                Destination::Net(n) => Some(n),
            };
            if dst.is_some_and(|d| d.addr.is_ipv4() != via.is_ipv4()) {
                return Err(format!("route to {to:?} via {via}: mixed families"));
            }
            let h = [
                family(via),
                dst.map_or(0, |d| d.prefix),
                0,
                0,
                libc::RT_TABLE_MAIN,
                libc::RTPROT_STATIC,
                libc::RT_SCOPE_UNIVERSE,
                libc::RTN_UNICAST,
                0,
                0,
                0,
                0,
            ];
            let mut m = Msg::new(libc::RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &h);
            if let Some(d) = dst {
                m.attr(RTA_DST, &octets(&d.addr));
            }
            m.attr(RTA_GATEWAY, &octets(via));
            m
        }
    }))
}

/// A finished message and the step it came from.
type Sent<'a> = (Vec<u8>, &'a Step);

/// Sends `msgs` (with the steps they came from) on `sock`, many per write,
/// and reads every ack; the first error names its step.
fn send_all(sock: &OwnedFd, msgs: &[Sent]) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    for (c, chunk) in msgs.chunks(CHUNK).enumerate() {
        let mut out = Vec::new();
        for (i, (m, _)) in chunk.iter().enumerate() {
            let at = out.len();
            out.extend_from_slice(m);
            out[at + 8..at + 12].copy_from_slice(&((c * CHUNK + i) as u32).to_ne_bytes());
        }
        let sent = unsafe { libc::send(sock.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
        if sent != out.len() as isize {
            return Err(errno("sending netlink messages"));
        }
        let mut acked = 0;
        while acked < chunk.len() {
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(errno("reading netlink acks"));
            }
            let mut at = 0;
            while at + 20 <= n as usize {
                let word = |o: usize| {
                    u32::from_ne_bytes(buf[at + o..at + o + 4].try_into().unwrap_or_default())
                };
                let (len, ty) = (
                    word(0) as usize,
                    u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
                );
                if ty == libc::NLMSG_ERROR as u16 {
                    acked += 1;
                    let err = word(16) as i32;
                    if err != 0 {
                        let step = msgs.get(word(8) as usize).map(|(_, s)| *s);
                        return Err(format!(
                            "{step:?}: {}",
                            std::io::Error::from_raw_os_error(-err)
                        ));
                    }
                }
                at += len.max(16).next_multiple_of(4);
            }
        }
    }
    Ok(())
}

/// With FLOOR_TIMINGS set, prints the time since the last lap, like
/// GRELAB_TIMINGS does for grelab.
fn lap(what: &str) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    if std::env::var_os("FLOOR_TIMINGS").is_none() {
        return;
    }
    if let Ok(mut last) = LAST.lock() {
        if let Some(t) = *last {
            eprintln!("timing: {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        }
        *last = Some(Instant::now());
    }
}

fn up(plan: &Plan) -> Result<()> {
    lap("start");
    // Two descriptors per namespace stay open.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    prepare_dir()?;
    let worker = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            let mut nss = HashMap::new();
            for ns in plan.namespaces() {
                let sysctls: Vec<(&str, &str)> = plan
                    .steps
                    .iter()
                    .filter_map(|s| match s {
                        Step::Sysctl { ns: n, key, value } if n == ns => {
                            Some((key.as_str(), value.as_str()))
                        }
                        _ => None,
                    })
                    .collect();
                nss.insert(ns, create_ns(ns, &sysctls)?);
            }
            lap("namespaces");
            let mut idx = Indexes {
                map: HashMap::new(),
                next: HashMap::new(),
            };
            // Veths of every namespace first, then each namespace's own work.
            let veth = |s: &&Step| matches!(s, Step::Veth { .. });
            let mut phases: [HashMap<&str, Vec<Sent>>; 2] = Default::default();
            for (p, phase) in phases.iter_mut().enumerate() {
                for s in plan.steps.iter().filter(|s| veth(s) == (p == 0)) {
                    if let Some(m) = message(s, &mut idx, &nss)? {
                        phase.entry(s.ns()).or_default().push((m.done(), s));
                    }
                }
                for ns in plan.namespaces() {
                    if let Some(msgs) = phase.get(ns) {
                        send_all(&nss[ns].sock, msgs).map_err(|e| format!("in {ns}: {e}"))?;
                    }
                }
                lap(["veths", "configure"][p]);
            }
            Ok(())
        })
        .join()
    });
    worker.map_err(|_| "the worker thread panicked".to_owned())?
}

fn down(plan: &Plan) -> Result<()> {
    let mut failures = Vec::new();
    for ns in plan.namespaces() {
        let path = format!("{NETNS_DIR}/{ns}");
        let p = cstr(&path);
        if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
            failures.push(errno(format!("unmounting {path}")));
        }
        if let Err(e) = std::fs::remove_file(&path) {
            failures.push(format!("removing {path}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
