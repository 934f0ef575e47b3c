//! The kernel's floor for a userspace GRE dataplane of grelab's design, for
//! benches/dataplane.sh: the best rate at which raw IPPROTO_GRE sockets can
//! move MTU-sized GRE packets from host1 through the router namespace to
//! host2, with no other per-packet work.
//!
//! `grefloor [--secs S] [--batch N] [--mode split|single|both] HOST1_NS HOST2_NS SRC DST`
//!
//! Each packet is what a full TCP segment through the userspace tunnel is on
//! the wire, 1500 bytes: outer IPv4 (20, written by us with IP_HDRINCL, as
//! the dataplane does), GRE (4) and a fake inner IPv4/TCP packet (1476),
//! sent SRC -> DST by sendmmsg in HOST1_NS and counted by recvmmsg in
//! HOST2_NS. Modes: `split`, one thread sending and one receiving; `single`,
//! one thread doing both alternately, as the dataplane's one thread does.
//! Run it on a lab without tunnels: a dataplane's raw socket in HOST2_NS
//! would get (and pay for) a copy of every packet too.
//!
//! Prints one line per mode: key=value pairs, rates as received; gbps is
//! the inner TCP payload (1436 bytes a packet); cpu_us_per_pkt the CPU time
//! of each thread per packet received (the kernel's softirq work runs in
//! them, on the sending side).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use grelab::sys::netns;
use grelab::wire::gre;

type Result<T> = std::result::Result<T, String>;

const IPPROTO_GRE: i32 = 47;
/// Outer IPv4 + GRE + inner packet: one full-MTU packet on the underlay.
const WIRE: usize = 1500;
const OUTER: usize = 20;
const GRE_LEN: usize = gre::header_len(false, false, false);
const INNER: usize = WIRE - OUTER - GRE_LEN;
/// Inner TCP payload per packet (inner IPv4 20 + TCP 20 without options).
const PAYLOAD: usize = INNER - 40;
/// Receive slots are bigger than a packet, so a longer one would show.
const SLOT: usize = 2048;
/// How long the receiver waits for stragglers once the sender has stopped.
const DRAIN: Duration = Duration::from_millis(200);

struct Args {
    secs: f64,
    batch: usize,
    modes: Vec<&'static str>,
    h1: String,
    h2: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

const USAGE: &str = "usage: grefloor [--secs S] [--batch N] [--mode split|single|both] HOST1_NS HOST2_NS SRC DST\n\
     (SRC: host1's underlay address, DST: host2's; a lab without tunnels)";

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut secs, mut batch, mut modes) = (5.0, 64, vec!["split", "single"]);
    let mut pos = Vec::new();
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{what} needs a value\n{USAGE}"));
        match a.as_str() {
            "--secs" => {
                secs = value("--secs")?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s <= 3600.0)
                    .ok_or("--secs: a number of seconds in (0, 3600]")?
            }
            "--batch" => {
                batch = value("--batch")?
                    .parse()
                    .ok()
                    .filter(|b| (1..=1024).contains(b))
                    .ok_or("--batch: a number of packets in 1..=1024")?
            }
            "--mode" => {
                modes = match value("--mode")?.as_str() {
                    "split" => vec!["split"],
                    "single" => vec!["single"],
                    "both" => vec!["split", "single"],
                    m => return Err(format!("--mode {m}: not split, single or both")),
                }
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}\n{USAGE}")),
            _ => pos.push(a),
        }
    }
    let [h1, h2, src, dst] = <[String; 4]>::try_from(pos).map_err(|_| USAGE.to_owned())?;
    let addr = |s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| format!("{s}: not an IPv4 address\n{USAGE}"))
    };
    Ok(Args {
        secs,
        batch,
        modes,
        src: addr(&src)?,
        dst: addr(&dst)?,
        h1,
        h2,
    })
}

fn main() {
    let result = parse_args().and_then(|a| {
        for mode in &a.modes {
            let r = if *mode == "split" {
                split(&a)
            } else {
                single(&a)
            }?;
            r.print(mode, &a);
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("grefloor: {e}");
        std::process::exit(1);
    }
}

fn errno(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Moves the calling thread (never the process) into namespace `name`.
fn enter(name: &str) -> Result<()> {
    netns::open(name)
        .and_then(|ns| netns::enter(&ns))
        .map_err(|e| format!("entering namespace {name}: {e:#} (is the lab up?)"))
}

/// A raw GRE socket in the calling thread's namespace.
fn raw_socket(sender: bool, nonblocking: bool) -> Result<OwnedFd> {
    let flags = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2), checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | flags, IPPROTO_GRE) };
    if fd < 0 {
        return Err(errno("opening a raw GRE socket (needs root)"));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, name, value: i32| {
        // SAFETY: an int option of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                size_of::<i32>() as u32,
            )
        };
        if r != 0 {
            return Err(errno("configuring the raw GRE socket"));
        }
        Ok(())
    };
    if sender {
        set(libc::IPPROTO_IP, libc::IP_HDRINCL, 1)?;
    } else {
        // The dataplane's receive buffer, so bursts are absorbed alike.
        set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)?;
        if !nonblocking {
            // A blocked receiver wakes up to see that the sender has stopped.
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            // SAFETY: a timeval of the size given.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            if r != 0 {
                return Err(errno("setting the receive timeout"));
            }
        }
    }
    Ok(fd)
}

/// One full-size GRE packet SRC -> DST carrying a TCP segment 192.168.50.1
/// -> 192.168.50.2 (what the basic lab's tunnel would carry).
fn packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; WIRE];
    let ipv4 = |h: &mut [u8], total: usize, proto: u8, ttl: u8, s: [u8; 4], d: [u8; 4]| {
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[6] = 0x40; // DF, as the dataplane sets for an inner DF packet
        h[8] = ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&s);
        h[16..20].copy_from_slice(&d);
    };
    // Outer: id and checksum left 0 for the kernel to fill, as the dataplane does.
    ipv4(
        &mut p[..OUTER],
        WIRE,
        IPPROTO_GRE as u8,
        255,
        src.octets(),
        dst.octets(),
    );
    let inner = &mut p[OUTER + GRE_LEN..];
    ipv4(inner, INNER, 6, 64, [192, 168, 50, 1], [192, 168, 50, 2]);
    let sum = gre::internet_checksum(&inner[..20]);
    inner[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut inner[20..40];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let repr = gre::Repr {
        protocol: gre::ETHERTYPE_IPV4,
        checksum: false,
        key: None,
        sequence: None,
    };
    // The GRE header fits: WIRE leaves room for it.
    let _ = repr.emit(&mut p[OUTER..]);
    p
}

/// `batch` messages all pointing at `pkt`, addressed to `dst`.
struct Tx {
    msgs: Vec<libc::mmsghdr>,
    _iov: Box<libc::iovec>,
    _name: Box<libc::sockaddr_in>,
}

impl Tx {
    fn new(pkt: &mut [u8], dst: Ipv4Addr, batch: usize) -> Tx {
        let mut iov = Box::new(libc::iovec {
            iov_base: pkt.as_mut_ptr().cast(),
            iov_len: pkt.len(),
        });
        // SAFETY: all-zero is a valid sockaddr_in and mmsghdr.
        let mut name: Box<libc::sockaddr_in> = Box::new(unsafe { std::mem::zeroed() });
        name.sin_family = libc::AF_INET as u16;
        name.sin_addr.s_addr = u32::from(dst).to_be();
        // SAFETY: as above.
        let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        msg.msg_hdr.msg_name = (&mut *name as *mut libc::sockaddr_in).cast();
        msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_hdr.msg_iov = &mut *iov;
        msg.msg_hdr.msg_iovlen = 1;
        Tx {
            msgs: vec![msg; batch],
            _iov: iov,
            _name: name,
        }
    }

    /// One sendmmsg; returns packets sent (0 on a full buffer or error).
    fn send(&mut self, fd: &OwnedFd, flags: i32) -> Result<u64> {
        // SAFETY: the messages point at buffers `self` and the caller keep alive.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as u32,
                flags,
            )
        };
        if n >= 0 {
            return Ok(n as u64);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => Ok(0),
            _ => Err(errno("sendmmsg")),
        }
    }
}

/// `batch` receive slots, counting the packets from `src` of our size.
struct Rx {
    msgs: Vec<libc::mmsghdr>,
    _iov: Vec<libc::iovec>,
    data: Vec<u8>,
    src: [u8; 4],
    packets: u64,
    others: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Rx {
    fn new(src: Ipv4Addr, batch: usize) -> Rx {
        let mut data = vec![0u8; batch * SLOT];
        let mut iov: Vec<libc::iovec> = data
            .chunks_mut(SLOT)
            .map(|s| libc::iovec {
                iov_base: s.as_mut_ptr().cast(),
                iov_len: SLOT,
            })
            .collect();
        let msgs = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: all-zero is a valid mmsghdr.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Rx {
            msgs,
            _iov: iov,
            data,
            src: src.octets(),
            packets: 0,
            others: 0,
            first: None,
            last: None,
        }
    }

    /// One recvmmsg; returns the number of messages read.
    fn receive(&mut self, fd: &OwnedFd, flags: i32) -> Result<usize> {
        // SAFETY: the messages point at slots of `self.data`.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(errno("recvmmsg")),
            };
        }
        let now = Instant::now();
        for (m, slot) in self.msgs[..n as usize].iter().zip(self.data.chunks(SLOT)) {
            let p = &slot[..m.msg_len as usize];
            if p.len() == WIRE && p[12..16] == self.src && p[9] == IPPROTO_GRE as u8 {
                self.packets += 1;
            } else {
                self.others += 1;
            }
        }
        if n > 0 {
            self.first.get_or_insert(now);
            self.last = Some(now);
        }
        Ok(n as usize)
    }

    /// What was received; packets per second between the first and the
    /// last batch.
    fn counts(&self) -> Counts {
        let pps = match (self.first, self.last) {
            (Some(f), Some(l)) if l > f => self.packets as f64 / (l - f).as_secs_f64(),
            _ => 0.0,
        };
        Counts {
            packets: self.packets,
            others: self.others,
            pps,
        }
    }
}

/// What a receiver counted (plain data: it crosses threads).
struct Counts {
    packets: u64,
    others: u64,
    pps: f64,
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: all-zero is a valid rusage, filled by the call.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

struct Outcome {
    sent: u64,
    send_secs: f64,
    rx: Counts,
    /// CPU time of the sending and the receiving thread, or of the one
    /// thread in `single`.
    cpu: Vec<Duration>,
}

impl Outcome {
    fn print(&self, mode: &str, a: &Args) {
        let sent_pps = self.sent as f64 / self.send_secs;
        let rx_pps = self.rx.pps;
        let lost =
            100.0 * (self.sent.saturating_sub(self.rx.packets)) as f64 / self.sent.max(1) as f64;
        let per_pkt = |d: &Duration| d.as_secs_f64() * 1e6 / self.rx.packets.max(1) as f64;
        let cpu: Vec<String> = self
            .cpu
            .iter()
            .map(|d| format!("{:.2}", per_pkt(d)))
            .collect();
        // The rate were the busiest thread alone on its core: less noisy
        // than rx_pps when the machine is shared.
        let busiest = self.cpu.iter().map(per_pkt).fold(0.0, f64::max);
        println!(
            "mode={mode} batch={} secs={:.1} sent_pps={sent_pps:.0} rx_pps={rx_pps:.0} lost_pct={lost:.1} gbps={:.2} cpu_us_per_pkt={} cpu_limit_pps={:.0} other_pkts={}",
            a.batch,
            self.send_secs,
            rx_pps * (PAYLOAD * 8) as f64 / 1e9,
            cpu.join("+"),
            1e6 / busiest.max(1e-3),
            self.rx.others,
        );
    }
}

/// One thread sends (in host1), another receives (in host2).
fn split(a: &Args) -> Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(2));
    let (h2, src, batch) = (a.h2.clone(), a.src, a.batch);
    let (stop2, ready2) = (stop.clone(), ready.clone());
    let receiver = std::thread::Builder::new()
        .name("gf-recv".into())
        .spawn(move || -> Result<(Counts, Duration)> {
            let sock = enter(&h2).and_then(|()| raw_socket(false, false));
            ready2.wait();
            let sock = sock?;
            let mut rx = Rx::new(src, batch);
            let mut idle_since = None;
            let cpu0 = thread_cpu();
            loop {
                let n = rx.receive(&sock, libc::MSG_WAITFORONE)?;
                if !stop2.load(Ordering::Relaxed) {
                    continue;
                }
                if n > 0 {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= DRAIN {
                    return Ok((rx.counts(), thread_cpu() - cpu0));
                }
            }
        })
        .map_err(|e| format!("spawning the receiver thread: {e}"))?;
    let (h1, dst, secs) = (a.h1.clone(), a.dst, a.secs);
    let sender = std::thread::Builder::new()
        .name("gf-send".into())
        .spawn(move || -> Result<(u64, f64, Duration)> {
            let sock = enter(&h1).and_then(|()| raw_socket(true, false));
            ready.wait();
            let sock = sock?;
            let mut pkt = packet(src, dst);
            let mut tx = Tx::new(&mut pkt, dst, batch);
            let (start, cpu0) = (Instant::now(), thread_cpu());
            let mut sent = 0;
            while start.elapsed().as_secs_f64() < secs {
                sent += tx.send(&sock, 0)?;
            }
            Ok((sent, start.elapsed().as_secs_f64(), thread_cpu() - cpu0))
        })
        .map_err(|e| format!("spawning the sender thread: {e}"))?;
    let sent = sender.join();
    stop.store(true, Ordering::Relaxed);
    let received = receiver.join();
    let (sent, send_secs, send_cpu) = sent.map_err(|_| "the sender thread panicked")??;
    let (rx, recv_cpu) = received.map_err(|_| "the receiver thread panicked")??;
    Ok(Outcome {
        sent,
        send_secs,
        rx,
        cpu: vec![send_cpu, recv_cpu],
    })
}

/// One thread holds both sockets and alternates: a batch out, then
/// everything waiting in, as the dataplane's loop does.
fn single(a: &Args) -> Result<Outcome> {
    let (h1, h2, src, dst, secs, batch) =
        (a.h1.clone(), a.h2.clone(), a.src, a.dst, a.secs, a.batch);
    std::thread::Builder::new()
        .name("gf-both".into())
        .spawn(move || -> Result<Outcome> {
            // A socket stays in the namespace it was made in.
            enter(&h1)?;
            let tx_sock = raw_socket(true, true)?;
            enter(&h2)?;
            let rx_sock = raw_socket(false, true)?;
            let mut pkt = packet(src, dst);
            let mut tx = Tx::new(&mut pkt, dst, batch);
            let mut rx = Rx::new(src, batch);
            let (start, cpu0) = (Instant::now(), thread_cpu());
            let mut sent = 0;
            while start.elapsed().as_secs_f64() < secs {
                sent += tx.send(&tx_sock, libc::MSG_DONTWAIT)?;
                while rx.receive(&rx_sock, libc::MSG_DONTWAIT)? == batch {}
            }
            let send_secs = start.elapsed().as_secs_f64();
            let cpu = thread_cpu() - cpu0;
            let end = Instant::now();
            while end.elapsed() < DRAIN {
                if rx.receive(&rx_sock, libc::MSG_DONTWAIT)? == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(Outcome {
                sent,
                send_secs,
                rx: rx.counts(),
                cpu: vec![cpu],
            })
        })
        .map_err(|e| format!("spawning the worker thread: {e}"))?
        .join()
        .map_err(|_| "the worker thread panicked")?
}
