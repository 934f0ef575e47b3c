//! The namespace lab the root tests build (a - r - b joined by veths, IPv4
//! and IPv6 underlays), a dataplane on a thread, and packet helpers.

use std::fs;
use std::io::{self, Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::dataplane::engine::run_with;
use crate::dataplane::sock::sockaddr;
pub(super) use crate::dataplane::testing::end;
use crate::dataplane::tx::ipv4_header;
use crate::dataplane::{Spec, Stats, TunnelStats, read_stats};
use crate::model::{TunnelEnd, TunnelKind};
use crate::sys::netns;
use crate::sys::testns::TestNs;
use crate::wire::gre;

pub(super) use crate::sys::testns::{ip, sh};

/// Pings `to` from namespace `ns`; returns the output if all replies came.
pub(super) fn ping(ns: &str, to: &str, count: u32) -> Result<String, String> {
    let count = count.to_string();
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", to,
        ])
        .output()
        .expect("running ping (Debian package iputils-ping)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains(" 0% packet loss") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The average RTT in ms from ping's summary line.
pub(super) fn avg_rtt(out: &str) -> f64 {
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
pub(super) struct Lab {
    pub(super) a: String,
    pub(super) r: String,
    pub(super) b: String,
    pub(super) dir: PathBuf,
    _made: [TestNs; 3],
}

impl Lab {
    pub(super) fn new(tag: &str) -> Lab {
        let made = TestNs::group(&format!("dp-{tag}"), ["a", "r", "b"]);
        let [a, r, b] = &made;
        let dir = std::env::temp_dir().join(&r.0);
        fs::create_dir_all(&dir).unwrap();
        a.veth("veth0", r, "veth1");
        r.veth("veth2", b, "veth3");
        for (ns, dev, v4, v6) in [
            (a, "veth0", "172.16.10.2/24", "fd00:a::2/64"),
            (r, "veth1", "172.16.10.1/24", "fd00:a::1/64"),
            (r, "veth2", "152.16.10.1/24", "fd00:b::1/64"),
            (b, "veth3", "152.16.10.2/24", "fd00:b::2/64"),
        ] {
            ns.ip(&format!("addr add {v4} dev {dev}"));
            ns.ip(&format!("addr add {v6} dev {dev} nodad"));
            // Link-local usable at once: a router sends neighbour
            // solicitations from it, and DAD would hold them ~2 s.
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns.0,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.accept_dad=0"),
            ]);
            ns.ip(&format!("link set {dev} up"));
            ns.ip("link set lo up");
        }
        a.ip("route add default via 172.16.10.1");
        b.ip("route add default via 152.16.10.1");
        a.ip("-6 route add default via fd00:a::1");
        b.ip("-6 route add default via fd00:b::1");
        netns::run_in(&r.0, || {
            fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
            Ok(())
        })
        .unwrap();
        Lab {
            a: a.0.clone(),
            r: r.0.clone(),
            b: b.0.clone(),
            dir,
            _made: made,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The namespaces go with `_made`.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A dataplane running `run` on a thread; stopped and joined on drop.
pub(super) struct Dp {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) handle: Option<JoinHandle<Result<()>>>,
    pub(super) stats: PathBuf,
}

impl Dp {
    /// A dataplane without the fast path: these tests are about the
    /// userspace path.
    pub(super) fn start(lab: &Lab, tunnels: Vec<TunnelEnd>) -> Dp {
        Dp::start_with(lab, tunnels, true, false)
    }

    /// A dataplane with device offloads and the fast path on or off.
    pub(super) fn start_with(lab: &Lab, tunnels: Vec<TunnelEnd>, offload: bool, fast: bool) -> Dp {
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
    pub(super) fn wait_for(&self, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
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

    pub(super) fn finish(mut self) -> Stats {
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

/// Both ends of a tunnel between the lab's `a` and `b` over IPv4 (or IPv6).
pub(super) fn pair(lab: &Lab, name: &str, kind: TunnelKind) -> (TunnelEnd, TunnelEnd) {
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

pub(super) fn stat<'a>(s: &'a Stats, ns: &str, name: &str) -> &'a TunnelStats {
    s.tunnels
        .iter()
        .find(|t| t.netns == ns && t.name == name)
        .expect("no stats for the tunnel")
}

/// An AF_PACKET socket in namespace `ns` seeing the L3 packets of
/// `dev` with EtherType `proto`.
pub(super) fn tap_packets(ns: &str, dev: &'static str, proto: u16) -> OwnedFd {
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
pub(super) fn echo_on_the_wire(lab: &Lab, to: &'static str, gre: [u8; 4]) -> Vec<u8> {
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
pub(super) fn first_packet(fd: &OwnedFd, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
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

/// Sends `len` bytes of noise over TCP from namespace `from` to `to`
/// (in namespace `to_ns`) in writes of many sizes, and checks that every
/// byte arrived, in order, within 30 s (retransmissions alone would get
/// packets with bad checksums through, slowly). Returns how long the
/// transfer took.
pub(super) fn tcp_transfer(from: &str, to_ns: &str, to: IpAddr, len: usize) -> Duration {
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
        let (mut expect, mut buf, mut want) = (Noise(42), vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
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

/// 100 quick pings from `ns` to `to`, answered or not: enough traffic
/// for the fast path.
pub(super) fn flood(ns: &str, to: &str) {
    let _ = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-q", "-c", "100", "-i", "0.002",
        ])
        .args(["-W", "1", to])
        .output()
        .expect("running ping");
}

/// The MAC address of `dev` in namespace `ns`.
pub(super) fn mac(ns: &str, dev: &str) -> [u8; 6] {
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
pub(super) fn inject(ns: &str, dev: &'static str, frame: Vec<u8>) {
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
pub(super) fn packets(fd: &OwnedFd, limit: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
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
pub(super) fn ipv4_packet(
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
pub(super) fn echo4(src: [u8; 4], dst: [u8; 4], tos: u8, id: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    let sum = gre::internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4_packet(src, dst, 1, tos, id, &icmp)
}

/// The inner packets the forged frames carry: 192.168.50.2 -> .1 with
/// IDs 0x7700 + n.
pub(super) fn marked(p: &[u8]) -> Option<u16> {
    (p.len() >= 20 && p[9] == 1 && p[12..16] == [192, 168, 50, 2] && p[4] == 0x77)
        .then(|| u16::from(p[5]))
}

/// A GRE packet by hand: flags from the options, a checksum over it all.
pub(super) fn gre_packet(
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

/// Bytes from a xorshift generator, the same for sender and receiver.
pub(super) struct Noise(u64);

impl Noise {
    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Sends GRE packets with any outer source from a namespace.
pub(super) struct Forger(OwnedFd);

impl Forger {
    pub(super) fn new(ns: &str) -> Forger {
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

    pub(super) fn send(&self, src: Ipv4Addr, dst: Ipv4Addr, gre: &[u8]) {
        self.send_tos(src, dst, 0, gre);
    }

    pub(super) fn send_tos(&self, src: Ipv4Addr, dst: Ipv4Addr, tos: u8, gre: &[u8]) {
        let mut pkt = vec![0u8; 20];
        pkt.extend(gre);
        let total = pkt.len();
        ipv4_header(&mut pkt[..20], total, tos, 64, false, src, dst);
        send_to(&self.0, IpAddr::V4(dst), &pkt);
    }
}

/// Sends `bytes` to `dst` on the raw socket `fd`, all of them.
pub(super) fn send_to(fd: &OwnedFd, dst: IpAddr, bytes: &[u8]) {
    let (sa, len) = sockaddr(dst);
    // SAFETY: sends `bytes` (its length given) to a valid sockaddr of `len`.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            std::ptr::addr_of!(sa).cast(),
            len,
        )
    };
    assert_eq!(
        r,
        bytes.len() as isize,
        "forging: {}",
        io::Error::last_os_error()
    );
}
