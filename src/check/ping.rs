//! Ping without the `ping` binary: ICMP / ICMPv6 echo over raw sockets.
//!
//! A new network namespace refuses unprivileged ping sockets
//! (`net.ipv4.ping_group_range` is `1 0`), so this needs root (CAP_NET_RAW).
//! [`ping`] works in the calling thread's namespace; callers wrap it in
//! [`crate::sys::netns::run_in`]. Each call has its own socket and identifier, so
//! several pings may run at once in one namespace from different threads.

use crate::wire::checksum::internet_checksum as checksum;
use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrStorage, sockopt,
};
use nix::sys::time::TimeSpec;

/// How to ping.
#[derive(Debug, Clone)]
pub struct PingOptions {
    /// Echo requests to send, 1 to 65535.
    pub count: u32,
    /// Time between requests.
    pub interval: Duration,
    /// How long to wait for replies after the last request.
    pub timeout: Duration,
    /// ICMP payload bytes (iputils' `-s`).
    pub payload: usize,
    /// Forbid fragmentation (iputils' `-M do`), for MTU probes.
    pub dont_fragment: bool,
    /// IPv4 TTL / IPv6 hop limit; `None` keeps the kernel default.
    pub ttl: Option<u8>,
    /// The echo identifier; `None` picks a fresh one ([`next_id`]). A caller
    /// that captures its own probe on the wire sets it to recognise it.
    pub ident: Option<u16>,
}

impl Default for PingOptions {
    /// 3 requests 200 ms apart (lab links are local, so iputils' 1 s would only
    /// slow checks down), 1 s wait for the last reply, 56 payload bytes, DF off.
    fn default() -> Self {
        PingOptions {
            count: 3,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            payload: 56,
            dont_fragment: false,
            ttl: None,
            ident: None,
        }
    }
}

/// One echo reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// ICMP sequence number, from 1.
    pub seq: u16,
    /// ICMP bytes received (header + payload), as ping prints them.
    pub bytes: usize,
    /// TTL / hop limit of the reply.
    pub ttl: u8,
    /// Round-trip time.
    pub rtt: Duration,
    /// Who replied.
    pub from: IpAddr,
}

/// What one ping run saw.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// The address pinged.
    pub target: IpAddr,
    /// ICMP payload bytes per request.
    pub payload: usize,
    /// Requests sent.
    pub transmitted: u32,
    /// Replies, in order of arrival; duplicates are dropped.
    pub replies: Vec<Reply>,
    /// ICMP errors from the path and failed sends, as ping prints them.
    pub errors: Vec<String>,
    /// From the first request to the last, as iputils counts `time`.
    pub elapsed: Duration,
}

impl PingReport {
    /// Replies received.
    pub fn received(&self) -> u32 {
        self.replies.len() as u32
    }

    /// Lost requests in percent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        let lost = self.transmitted.saturating_sub(self.received());
        f64::from(lost) * 100.0 / f64::from(self.transmitted)
    }

    /// Round-trip min, avg, max and mdev, if any reply came.
    pub fn rtt_stats(&self) -> Option<(Duration, Duration, Duration, Duration)> {
        // Whole nanoseconds, so an average like 110 us stays exact.
        let ns: Vec<u128> = self.replies.iter().map(|r| r.rtt.as_nanos()).collect();
        let n = ns.len() as u128;
        let min = *ns.iter().min()?;
        let max = *ns.iter().max()?;
        let avg = ns.iter().sum::<u128>() / n;
        // mdev as iputils defines it: sqrt(E[rtt^2] - E[rtt]^2).
        let var = ns
            .iter()
            .map(|&x| (x as f64 - avg as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let d = |x: u128| Duration::from_nanos(u64::try_from(x).unwrap_or(u64::MAX));
        Some((
            d(min),
            d(avg),
            d(max),
            Duration::from_secs_f64(var.sqrt() / 1e9),
        ))
    }

    /// The run as iputils `ping` prints it (errors after the replies).
    pub fn lines(&self) -> Vec<String> {
        let t = self.target;
        let mut out = Vec::with_capacity(self.replies.len() + self.errors.len() + 4);
        out.push(match t {
            IpAddr::V4(_) => format!(
                "PING {t} ({t}) {}({}) bytes of data.",
                self.payload,
                self.payload + ICMP_HDR + 20
            ),
            IpAddr::V6(_) => format!("PING {t}({t}) {} data bytes", self.payload),
        });
        for r in &self.replies {
            out.push(format!(
                "{} bytes from {}: icmp_seq={} ttl={} time={} ms",
                r.bytes,
                r.from,
                r.seq,
                r.ttl,
                reply_ms(r.rtt)
            ));
        }
        out.extend(self.errors.iter().cloned());
        out.push(String::new());
        out.push(format!("--- {t} ping statistics ---"));
        let errors = match self.errors.len() {
            0 => String::new(),
            n => format!("+{n} errors, "),
        };
        out.push(format!(
            "{} packets transmitted, {} received, {errors}{}% packet loss, time {}ms",
            self.transmitted,
            self.received(),
            fmt_g(self.loss_percent()),
            self.elapsed.as_millis()
        ));
        if let Some((min, avg, max, mdev)) = self.rtt_stats() {
            out.push(format!(
                "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
                stat_ms(min),
                stat_ms(avg),
                stat_ms(max),
                stat_ms(mdev)
            ));
        }
        out
    }
}

/// A reply time as iputils prints it: whole microseconds, cut (not rounded)
/// to 3 significant decimals below 100 ms.
fn reply_ms(rtt: Duration) -> String {
    let us = rtt.as_micros();
    let (ms, frac) = (us / 1000, us % 1000);
    match ms {
        100.. => format!("{ms}"),
        10.. => format!("{ms}.{}", frac / 100),
        1.. => format!("{ms}.{:02}", frac / 10),
        _ => format!("0.{frac:03}"),
    }
}

/// Milliseconds with 3 decimals, cut to whole microseconds as iputils does.
fn stat_ms(d: Duration) -> String {
    let us = d.as_micros();
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// C's `%g`: 6 significant digits, trailing zeros dropped.
fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let decimals = (5 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}

/// Why a ping could not run.
#[derive(Debug)]
pub enum PingError {
    /// A request was bigger than the path allows with DF set (EMSGSIZE).
    MessageTooLong {
        /// The path MTU the kernel knows, when it could be read.
        mtu: Option<u32>,
    },
    /// A socket operation failed; the message says which, and for what.
    Io(io::Error),
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::MessageTooLong { mtu: Some(mtu) } => write!(
                f,
                "echo request too big to send unfragmented: the path MTU is {mtu} bytes; \
                 use a smaller payload or allow fragmentation"
            ),
            PingError::MessageTooLong { mtu: None } => f.write_str(
                "echo request too big to send unfragmented; use a smaller payload \
                 or allow fragmentation",
            ),
            PingError::Io(e) => e.fmt(f),
        }
    }
}

// The io::Error's text is already in the message; no separate source.
impl std::error::Error for PingError {}

const ICMP_HDR: usize = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Largest ICMP payload an IP packet can carry (IPv6 without jumbograms).
const MAX_PAYLOAD: usize = 65535 - ICMP_HDR;

/// Identifiers for this process's pings: start at the pid, one more per call.
static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// A fresh echo identifier for this process.
pub fn next_id() -> u16 {
    (std::process::id() as u16).wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Pings `target` from the calling thread's network namespace.
pub fn ping(target: IpAddr, opts: &PingOptions) -> Result<PingReport, PingError> {
    if opts.count == 0 || opts.count > u32::from(u16::MAX) {
        return Err(PingError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ping count {} is out of range: use 1 to 65535", opts.count),
        )));
    }
    if let IpAddr::V6(a) = target
        && a.is_unicast_link_local()
    {
        return Err(PingError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot ping link-local {target} without an interface: use a global or ULA address"
            ),
        )));
    }
    if opts.payload > MAX_PAYLOAD {
        return Err(PingError::MessageTooLong { mtu: None });
    }
    let id = opts.ident.unwrap_or_else(next_id);
    let sock = open(target, opts, id)?;
    let count = opts.count as usize;

    let mut packet = vec![0u8; ICMP_HDR + opts.payload];
    packet[0] = if target.is_ipv4() {
        ECHO_REQUEST_V4
    } else {
        ECHO_REQUEST_V6
    };
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    for (i, b) in packet[ICMP_HDR..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // Room for the biggest reply plus an IPv4 header with options; ICMP
    // errors are shorter than 1280 bytes.
    let mut buf = vec![0u8; (ICMP_HDR + opts.payload + 60).max(1500)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);

    // sent_at[seq - 1]: when that request left; taken when its reply comes.
    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let mut report = PingReport {
        target,
        payload: opts.payload,
        transmitted: 0,
        replies: Vec::with_capacity(count),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let start = Instant::now();
    let mut next_send = start;
    let mut deadline = start;
    let dest = SockaddrStorage::from(SocketAddr::new(target, 0));

    loop {
        let sent = report.transmitted as usize;
        if sent < count && Instant::now() >= next_send {
            let seq = sent as u16 + 1;
            packet[6..8].copy_from_slice(&seq.to_be_bytes());
            if target.is_ipv4() {
                packet[2..4].fill(0);
                let sum = checksum(&packet);
                packet[2..4].copy_from_slice(&sum.to_be_bytes());
            } // ICMPv6: the kernel always fills the checksum at offset 2.
            let when = Instant::now();
            report.transmitted += 1;
            report.elapsed = when - start;
            match socket::sendto(sock.as_raw_fd(), &packet, &dest, MsgFlags::empty()) {
                Ok(_) => sent_at[sent] = Some(when),
                Err(Errno::EMSGSIZE) => return Err(too_long(&sock, target)),
                // The path refused at once (no route, neighbour failed):
                // a lost request, as ping shows it, not a broken ping.
                Err(e @ (Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EHOSTDOWN)) => {
                    report.errors.push(format!(
                        "ping: sendmsg to {target} icmp_seq={seq}: {}",
                        e.desc()
                    ))
                }
                Err(e) => return Err(io_err(e, &format!("sending an echo request to {target}"))),
            }
            next_send += opts.interval;
            if report.transmitted as usize == count {
                deadline = when + opts.timeout;
            }
        }
        let sent = report.transmitted as usize;
        let now = Instant::now();
        if sent == count && (report.replies.len() == count || now >= deadline) {
            break;
        }
        // When the next request is due already (a short interval), this polls
        // without waiting: replies are read between requests, never left to
        // overflow the socket buffer.
        let wake = if sent < count { next_send } else { deadline };
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        let wait = TimeSpec::from_duration(wake.saturating_duration_since(now));
        match ppoll(&mut fds, Some(wait), None) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                return Err(io_err(
                    e,
                    &format!("waiting for echo replies from {target}"),
                ));
            }
        }
        // Drain everything queued, then go back to the clock.
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match socket::recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => m,
                Err(Errno::EAGAIN | Errno::EINTR) => break,
                Err(e) => return Err(io_err(e, &format!("receiving echo replies from {target}"))),
            };
            let arrived = Instant::now();
            let len = msg.bytes;
            let hop_limit = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::Ipv6HopLimit(h) => Some(h as u8),
                    _ => None,
                })
            });
            let from = msg.address.as_ref().and_then(source_ip);
            let Some(from) = from else { continue };
            let data = &buf[..len];
            let parsed = match target {
                IpAddr::V4(t) => parse_v4(data, t, id),
                IpAddr::V6(t) => parse_v6(data, t, id, hop_limit.unwrap_or(0)),
            };
            match parsed {
                Some(Seen::Reply { seq, bytes, ttl }) if from == target => {
                    let slot = sent_at.get_mut(usize::from(seq).wrapping_sub(1));
                    if let Some(t0) = slot.and_then(Option::take) {
                        report.replies.push(Reply {
                            seq,
                            bytes,
                            ttl,
                            rtt: arrived - t0,
                            from,
                        });
                    }
                }
                Some(Seen::Error { seq, what })
                    if seq >= 1 && u32::from(seq) <= report.transmitted =>
                {
                    report
                        .errors
                        .push(format!("From {from} icmp_seq={seq} {what}"));
                }
                _ => {}
            }
        }
    }
    Ok(report)
}

/// What a received packet means for this ping.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Reply { seq: u16, bytes: usize, ttl: u8 },
    Error { seq: u16, what: String },
}

/// Parses an IPv4 packet (raw ICMP sockets get the IP header too).
fn parse_v4(pkt: &[u8], target: Ipv4Addr, id: u16) -> Option<Seen> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    let ttl = *pkt.get(8)?;
    let icmp = pkt.get(ihl..)?;
    if icmp.len() < ICMP_HDR {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    if ty == ECHO_REPLY_V4 {
        if code != 0 || be16(icmp, 4)? != id || checksum(icmp) != 0 {
            return None;
        }
        return Some(Seen::Reply {
            seq: be16(icmp, 6)?,
            bytes: icmp.len(),
            ttl,
        });
    }
    // An error quotes our request: its IP header, then the first 8 ICMP bytes.
    let quoted = icmp.get(ICMP_HDR..)?;
    let qihl = usize::from(quoted.first()? & 0x0f) * 4;
    let qdst = Ipv4Addr::from(<[u8; 4]>::try_from(quoted.get(16..20)?).ok()?);
    let qicmp = quoted.get(qihl..qihl + ICMP_HDR)?;
    if quoted[9] != 1 || qdst != target || qicmp[0] != ECHO_REQUEST_V4 || be16(qicmp, 4)? != id {
        return None;
    }
    let what = match (ty, code) {
        (3, 0) => "Destination Net Unreachable".into(),
        (3, 1) => "Destination Host Unreachable".into(),
        (3, 2) => "Destination Protocol Unreachable".into(),
        (3, 3) => "Destination Port Unreachable".into(),
        (3, 4) => format!("Frag needed and DF set (mtu = {})", be16(icmp, 6)?),
        (3, 5) => "Source Route Failed".into(),
        (3, 6) => "Destination Net Unknown".into(),
        (3, 7) => "Destination Host Unknown".into(),
        (3, 9) => "Destination Net Prohibited".into(),
        (3, 10) => "Destination Host Prohibited".into(),
        (3, 13) => "Packet filtered".into(),
        (3, c) => format!("Dest Unreachable, Bad Code: {c}"),
        (11, 0) => "Time to live exceeded".into(),
        (11, _) => "Frag reassembly time exceeded".into(),
        (12, _) => format!("Parameter problem: pointer = {}", icmp[4]),
        _ => return None,
    };
    Some(Seen::Error {
        seq: be16(qicmp, 6)?,
        what,
    })
}

/// Parses an ICMPv6 message (raw ICMPv6 sockets get no IP header; the hop
/// limit comes as a control message).
fn parse_v6(icmp: &[u8], target: Ipv6Addr, id: u16, hop_limit: u8) -> Option<Seen> {
    if icmp.len() < ICMP_HDR {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    if ty == ECHO_REPLY_V6 {
        if code != 0 || be16(icmp, 4)? != id {
            return None;
        }
        return Some(Seen::Reply {
            seq: be16(icmp, 6)?,
            bytes: icmp.len(),
            ttl: hop_limit,
        });
    }
    // An error quotes our request: the 40-byte IPv6 header, then ICMPv6
    // (no extension headers: we send none).
    let quoted = icmp.get(ICMP_HDR..)?;
    let qdst = Ipv6Addr::from(<[u8; 16]>::try_from(quoted.get(24..40)?).ok()?);
    let qicmp = quoted.get(40..40 + ICMP_HDR)?;
    if quoted[6] != 58 || qdst != target || qicmp[0] != ECHO_REQUEST_V6 || be16(qicmp, 4)? != id {
        return None;
    }
    let what = match (ty, code) {
        (1, 0) => "Destination unreachable: No route".into(),
        (1, 1) => "Destination unreachable: Administratively prohibited".into(),
        (1, 2) => "Destination unreachable: Beyond scope of source address".into(),
        (1, 3) => "Destination unreachable: Address unreachable".into(),
        (1, 4) => "Destination unreachable: Port unreachable".into(),
        (1, c) => format!("Destination unreachable: Unknown code {c}"),
        (2, _) => format!(
            "Packet too big: mtu={}",
            u32::from_be_bytes(icmp[4..8].try_into().ok()?)
        ),
        (3, 0) => "Time exceeded: Hop limit".into(),
        (3, _) => "Time exceeded: Defrag".into(),
        (4, _) => format!("Parameter problem: code {code}"),
        _ => return None,
    };
    Some(Seen::Error {
        seq: be16(qicmp, 6)?,
        what,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn source_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Opens and sets up the raw socket for one ping run with identifier `id`.
fn open(target: IpAddr, opts: &PingOptions, id: u16) -> Result<OwnedFd, PingError> {
    let (family, proto) = match target {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let sock =
        socket::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto).map_err(|e| {
            let hint = if e == Errno::EPERM {
                ": run as root (CAP_NET_RAW)"
            } else {
                ""
            };
            io_err(
                e,
                &format!("opening a raw ICMP socket to ping {target}{hint}"),
            )
        })?;
    let ctx = |what: &str| format!("setting {what} on the socket to ping {target}");
    match target {
        IpAddr::V4(_) => {
            // Let through only echo replies and the errors that quote a request.
            let pass = [0u32, 3, 11, 12].iter().fold(0u32, |m, t| m | 1 << t);
            set_opt(&sock, libc::SOL_RAW, ICMP_FILTER, &!pass)
                .map_err(|e| io_ctx(e, &ctx("ICMP_FILTER")))?;
            let pmtu = if opts.dont_fragment {
                libc::IP_PMTUDISC_DO
            } else {
                libc::IP_PMTUDISC_DONT
            };
            set_int(&sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, pmtu)
                .map_err(|e| io_ctx(e, &ctx("IP_MTU_DISCOVER")))?;
            if let Some(ttl) = opts.ttl {
                socket::setsockopt(&sock, sockopt::Ipv4Ttl, &i32::from(ttl))
                    .map_err(|e| io_err(e, &ctx("IP_TTL")))?;
            }
        }
        IpAddr::V6(_) => {
            // struct icmp6_filter: a set bit blocks that type.
            let mut filter = [u32::MAX; 8];
            for t in [1u8, 2, 3, 4, ECHO_REPLY_V6] {
                filter[usize::from(t >> 5)] &= !(1 << (t & 31));
            }
            set_opt(&sock, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
                .map_err(|e| io_ctx(e, &ctx("ICMP6_FILTER")))?;
            socket::setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true)
                .map_err(|e| io_err(e, &ctx("IPV6_RECVHOPLIMIT")))?;
            if opts.dont_fragment {
                set_int(
                    &sock,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MTU_DISCOVER,
                    libc::IPV6_PMTUDISC_DO,
                )
                .map_err(|e| io_ctx(e, &ctx("IPV6_MTU_DISCOVER")))?;
                socket::setsockopt(&sock, sockopt::Ipv6DontFrag, &true)
                    .map_err(|e| io_err(e, &ctx("IPV6_DONTFRAG")))?;
            }
            if let Some(ttl) = opts.ttl {
                socket::setsockopt(&sock, sockopt::Ipv6Ttl, &i32::from(ttl))
                    .map_err(|e| io_err(e, &ctx("IPV6_UNICAST_HOPS")))?;
            }
        }
    }
    only_our_replies(&sock, target.is_ipv4(), id)
        .map_err(|e| io_ctx(e, &ctx("SO_ATTACH_FILTER")))?;
    Ok(sock)
}

/// Keeps other pings' echo replies off the socket (a raw socket gets every
/// ICMP packet of its namespace, and verify runs thousands of pings at once
/// in a hub, whose replies would otherwise fill every socket and wake every
/// thread). Errors pass, as ICMP_FILTER chose them.
fn only_our_replies(sock: &OwnedFd, v4: bool, id: u16) -> io::Result<()> {
    use libc::{BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_MSH};
    use libc::{BPF_RET, BPF_W};
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let reply = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    let prog = [
        // X: where ICMP starts (after the IPv4 header; IPv6 sockets get
        // no IP header).
        if v4 {
            op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0)
        } else {
            op(BPF_LDX | BPF_W | BPF_IMM, 0, 0, 0)
        },
        op(BPF_LD | BPF_B | BPF_IND, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, u32::from(reply)),
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 4),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(id)),
        op(BPF_RET | BPF_K, 0, 0, u32::MAX),
        op(BPF_RET | BPF_K, 0, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    set_opt(sock, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// ICMP_FILTER (linux/icmp.h), level SOL_RAW; libc does not export it.
const ICMP_FILTER: libc::c_int = 1;
/// ICMP6_FILTER (linux/icmpv6.h), level IPPROTO_ICMPV6.
const ICMP6_FILTER: libc::c_int = 1;

/// The error for a refused oversized send, with the path MTU the kernel
/// knows. IP_MTU / IPV6_MTU need a connected socket; this one is done with.
fn too_long(sock: &OwnedFd, target: IpAddr) -> PingError {
    let dest = SockaddrStorage::from(SocketAddr::new(target, 0));
    let mtu = socket::connect(sock.as_raw_fd(), &dest)
        .ok()
        .and_then(|()| {
            let (level, name) = match target {
                IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
                IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
            };
            get_int(sock, level, name)
                .ok()
                .and_then(|m| u32::try_from(m).ok())
        });
    PingError::MessageTooLong { mtu }
}

fn set_int(
    sock: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    set_opt(sock, level, name, &val)
}

fn set_opt<T>(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live, initialised T of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(sock: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw mut val).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(val)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn io_err(e: Errno, doing: &str) -> PingError {
    io_ctx(io::Error::from(e), doing)
}

fn io_ctx(e: io::Error, doing: &str) -> PingError {
    PingError::Io(io::Error::new(e.kind(), format!("{doing}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(target: &str, rtts_us: &[u64], transmitted: u32, errors: &[&str]) -> PingReport {
        let target: IpAddr = target.parse().unwrap();
        PingReport {
            target,
            payload: 56,
            transmitted,
            replies: rtts_us
                .iter()
                .enumerate()
                .map(|(i, us)| Reply {
                    seq: i as u16 + 1,
                    bytes: 64,
                    ttl: 64,
                    rtt: Duration::from_micros(*us),
                    from: target,
                })
                .collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            elapsed: Duration::from_micros(402_300),
        }
    }

    #[test]
    fn lines_match_iputils() {
        let r = report("192.168.50.2", &[94, 112, 124], 3, &[]);
        assert_eq!(
            r.lines(),
            [
                "PING 192.168.50.2 (192.168.50.2) 56(84) bytes of data.",
                "64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.094 ms",
                "64 bytes from 192.168.50.2: icmp_seq=2 ttl=64 time=0.112 ms",
                "64 bytes from 192.168.50.2: icmp_seq=3 ttl=64 time=0.124 ms",
                "",
                "--- 192.168.50.2 ping statistics ---",
                "3 packets transmitted, 3 received, 0% packet loss, time 402ms",
                "rtt min/avg/max/mdev = 0.094/0.110/0.124/0.012 ms",
            ]
        );
        assert_eq!(r.received(), 3);
        assert_eq!(r.loss_percent(), 0.0);
    }

    #[test]
    fn lines_with_loss_errors_and_v6() {
        let r = report(
            "fd00::2",
            &[1_234],
            3,
            &["From fd00::1 icmp_seq=2 Destination unreachable: Address unreachable"],
        );
        let lines = r.lines();
        assert_eq!(lines[0], "PING fd00::2(fd00::2) 56 data bytes");
        assert_eq!(
            lines[1],
            "64 bytes from fd00::2: icmp_seq=1 ttl=64 time=1.23 ms"
        );
        assert_eq!(
            lines[2],
            "From fd00::1 icmp_seq=2 Destination unreachable: Address unreachable"
        );
        assert_eq!(
            lines[5],
            "3 packets transmitted, 1 received, +1 errors, 66.6667% packet loss, time 402ms"
        );
        assert_eq!(
            lines[6],
            "rtt min/avg/max/mdev = 1.234/1.234/1.234/0.000 ms"
        );
        assert!((r.loss_percent() - 66.666_666).abs() < 1e-3);

        let none = report("192.0.2.9", &[], 3, &[]);
        assert_eq!(none.loss_percent(), 100.0);
        assert!(none.rtt_stats().is_none());
        let lines = none.lines();
        assert_eq!(
            lines.last().unwrap(),
            "3 packets transmitted, 0 received, 100% packet loss, time 402ms"
        );
    }

    #[test]
    fn reply_times_and_percentages_format_like_c() {
        let ms = |us| reply_ms(Duration::from_micros(us));
        assert_eq!(ms(94), "0.094");
        assert_eq!(ms(1_239), "1.23");
        assert_eq!(ms(12_345), "12.3");
        assert_eq!(ms(123_456), "123");
        assert_eq!(fmt_g(100.0), "100");
        assert_eq!(fmt_g(100.0 / 3.0), "33.3333");
        assert_eq!(fmt_g(50.0), "50");
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(100.0 / 7.0), "14.2857");
    }

    /// An IPv4 header (no options) from `src` to `dst` carrying `proto`.
    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, ttl, proto, 0, 0];
        h.extend(src);
        h.extend(dst);
        h
    }

    fn icmp4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0];
        m.extend(rest);
        m.extend(body);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn parses_v4_replies_and_quoted_errors() {
        let target = Ipv4Addr::new(192, 0, 2, 2);
        let mut pkt = ipv4([192, 0, 2, 2], [192, 0, 2, 1], 1, 63);
        pkt.extend(icmp4(0, 0, [0x12, 0x34, 0, 7], &[0u8; 56]));
        assert_eq!(
            parse_v4(&pkt, target, 0x1234),
            Some(Seen::Reply {
                seq: 7,
                bytes: 64,
                ttl: 63
            })
        );
        assert_eq!(
            parse_v4(&pkt, target, 0x1235),
            None,
            "another ping's identifier"
        );
        let last = pkt.len() - 1;
        pkt[last] ^= 1;
        assert_eq!(parse_v4(&pkt, target, 0x1234), None, "bad checksum");

        // Frag needed from a router, quoting our request to `target`.
        let mut quoted = ipv4([192, 0, 2, 1], [192, 0, 2, 2], 1, 64);
        quoted.extend(icmp4(8, 0, [0x12, 0x34, 0, 2], &[]));
        let mut err = ipv4([198, 51, 100, 1], [192, 0, 2, 1], 1, 64);
        err.extend(icmp4(3, 4, [0, 0, 0x05, 0x78], &quoted));
        assert_eq!(
            parse_v4(&err, target, 0x1234),
            Some(Seen::Error {
                seq: 2,
                what: "Frag needed and DF set (mtu = 1400)".into()
            })
        );
        assert_eq!(
            parse_v4(&err, Ipv4Addr::new(192, 0, 2, 3), 0x1234),
            None,
            "other target"
        );
        assert_eq!(parse_v4(&err[..30], target, 0x1234), None, "truncated");
        assert_eq!(parse_v4(&[], target, 0x1234), None);
        assert_eq!(
            parse_v4(&[0x4f; 10], target, 0x1234),
            None,
            "header longer than packet"
        );
    }

    #[test]
    fn parses_v6_replies_and_quoted_errors() {
        let target: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let reply = [129, 0, 0, 0, 0xab, 0xcd, 0, 3];
        assert_eq!(
            parse_v6(&reply, target, 0xabcd, 64),
            Some(Seen::Reply {
                seq: 3,
                bytes: 8,
                ttl: 64
            })
        );
        assert_eq!(parse_v6(&reply[..7], target, 0xabcd, 64), None);

        let mut err = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        ip6.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        ip6.extend(target.octets());
        err.extend(ip6);
        err.extend([128, 0, 0, 0, 0xab, 0xcd, 0, 1]);
        assert_eq!(
            parse_v6(&err, target, 0xabcd, 64),
            Some(Seen::Error {
                seq: 1,
                what: "Packet too big: mtu=1400".into()
            })
        );
        assert_eq!(parse_v6(&err, target, 0xabce, 64), None);
        // Neighbour discovery and the like are not ours.
        assert_eq!(
            parse_v6(&[135, 0, 0, 0, 0, 0, 0, 0, 1, 2], target, 0xabcd, 255),
            None
        );
    }

    #[test]
    fn each_call_gets_its_own_identifier() {
        let ids: std::collections::HashSet<u16> = (0..1000).map(|_| next_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn bad_options_are_errors_not_panics() {
        let t: IpAddr = "192.0.2.1".parse().unwrap();
        let zero = PingOptions {
            count: 0,
            ..Default::default()
        };
        assert!(
            matches!(ping(t, &zero), Err(PingError::Io(e)) if e.kind() == io::ErrorKind::InvalidInput)
        );
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert!(
            matches!(ping(ll, &PingOptions::default()), Err(PingError::Io(e)) if e.to_string().contains("link-local"))
        );
        let huge = PingOptions {
            payload: usize::MAX,
            ..Default::default()
        };
        assert!(matches!(
            ping(t, &huge),
            Err(PingError::MessageTooLong { mtu: None })
        ));
    }
}

/// Root tests: real pings between namespaces this test makes, joined by veth.
#[cfg(test)]
mod root_tests {
    use super::*;
    use crate::sys::netns;
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "icmp root tests need root (raw sockets, namespaces): run them with sudo"
        );
    }

    /// Namespaces `gl-icmp-<pid>-<tag>-<node>`, deleted on drop.
    struct Lab {
        names: Vec<String>,
    }

    impl Lab {
        fn new(tag: &str, nodes: &[&str]) -> Lab {
            require_root();
            let mut lab = Lab { names: Vec::new() };
            for n in nodes {
                let name = format!("gl-icmp-{}-{tag}-{n}", std::process::id());
                netns::create(&name).unwrap_or_else(|e| panic!("creating {name}: {e:#}"));
                lab.names.push(name);
            }
            lab
        }

        fn ns(&self, i: usize) -> &str {
            &self.names[i]
        }

        /// `ip -n NS ARGS...`, which must succeed.
        fn ip(&self, i: usize, args: &str) {
            let out = Command::new("ip")
                .arg("-n")
                .arg(self.ns(i))
                .args(args.split_whitespace())
                .output()
                .expect("running `ip` (iproute2 is needed for these tests)");
            assert!(
                out.status.success(),
                "ip -n {} {args}: {}",
                self.ns(i),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// A veth from node `a` (`dev_a`) to node `b` (`dev_b`), both up.
        fn link(&self, a: usize, dev_a: &str, b: usize, dev_b: &str, mtu: u32) {
            self.ip(
                a,
                &format!(
                    "link add {dev_a} mtu {mtu} type veth peer name {dev_b} mtu {mtu} netns {}",
                    self.ns(b)
                ),
            );
            self.ip(a, &format!("link set {dev_a} up"));
            self.ip(b, &format!("link set {dev_b} up"));
        }

        fn addr(&self, i: usize, dev: &str, cidr: &str) {
            let nodad = if cidr.contains(':') { " nodad" } else { "" };
            self.ip(i, &format!("addr add {cidr} dev {dev}{nodad}"));
        }

        fn sysctl(&self, i: usize, path: &'static str, value: &'static str) {
            netns::run_in(self.ns(i), move || Ok(std::fs::write(path, value)?))
                .unwrap_or_else(|e| panic!("writing {path}: {e:#}"));
        }

        fn ping(&self, i: usize, target: &str, opts: PingOptions) -> Result<PingReport, PingError> {
            let target: IpAddr = target.parse().unwrap();
            netns::run_in(self.ns(i), move || Ok(ping(target, &opts)))
                .expect("running in the namespace")
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            for n in &self.names {
                let _ = netns::delete(n);
            }
        }
    }

    /// Two nodes on one veth: 198.51.100.1/2 and 2001:db8:100::1/2 (documentation
    /// ranges, reachable only inside these namespaces).
    fn pair(tag: &str, mtu: u32) -> Lab {
        let lab = Lab::new(tag, &["a", "b"]);
        lab.link(0, "v0", 1, "v1", mtu);
        lab.addr(0, "v0", "198.51.100.1/24");
        lab.addr(1, "v1", "198.51.100.2/24");
        lab.addr(0, "v0", "2001:db8:100::1/64");
        lab.addr(1, "v1", "2001:db8:100::2/64");
        lab
    }

    fn assert_all_replies(r: &PingReport, count: u32) {
        let lines = r.lines().join("\n");
        assert_eq!(r.transmitted, count, "{lines}");
        assert_eq!(r.received(), count, "{lines}");
        assert_eq!(r.loss_percent(), 0.0);
        assert!(r.errors.is_empty(), "{lines}");
        let mut seqs: Vec<u16> = r.replies.iter().map(|x| x.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=count as u16).collect::<Vec<_>>(), "{lines}");
        for x in &r.replies {
            assert_eq!(x.from, r.target);
            assert_eq!(x.bytes, ICMP_HDR + r.payload);
            assert!(
                x.rtt > Duration::ZERO && x.rtt < Duration::from_secs(1),
                "{lines}"
            );
        }
        let (min, avg, max, _) = r.rtt_stats().unwrap();
        assert!(min <= avg && avg <= max);
    }

    #[test]
    fn replies_v4_and_v6_both_ways() {
        let lab = pair("ok", 1500);
        for (from, to) in [
            (0, "198.51.100.2"),
            (1, "198.51.100.1"),
            (0, "2001:db8:100::2"),
            (1, "2001:db8:100::1"),
        ] {
            let r = lab.ping(from, to, PingOptions::default()).unwrap();
            assert_all_replies(&r, 3);
            assert!(r.replies.iter().all(|x| x.ttl == 64), "{:?}", r.replies);
            // Three requests 200 ms apart: about 400 ms from first to last.
            assert!(
                r.elapsed >= Duration::from_millis(400) && r.elapsed < Duration::from_millis(900)
            );
            assert!(
                r.lines()[1].starts_with(&format!("64 bytes from {to}: icmp_seq=1 ttl=64 time="))
            );
        }
    }

    #[test]
    fn back_to_back_requests_lose_no_reply() {
        // With no interval, replies must be read between sends: left unread,
        // the socket buffer would hold only about 256 of them.
        let lab = pair("burst", 1500);
        let opts = PingOptions {
            count: 1000,
            interval: Duration::ZERO,
            ..Default::default()
        };
        assert_all_replies(&lab.ping(0, "198.51.100.2", opts).unwrap(), 1000);
    }

    #[test]
    fn missing_neighbour_gets_nothing() {
        let lab = pair("gone", 1500);
        let opts = PingOptions {
            timeout: Duration::from_millis(500),
            ..Default::default()
        };
        for to in ["198.51.100.99", "2001:db8:100::99"] {
            let t0 = Instant::now();
            let r = lab.ping(0, to, opts.clone()).unwrap();
            assert_eq!((r.transmitted, r.received()), (3, 0), "{:?}", r.lines());
            assert_eq!(r.loss_percent(), 100.0);
            assert!(r.rtt_stats().is_none());
            // 2 intervals + the wait for the last, not more.
            let took = t0.elapsed();
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
                "{took:?}"
            );
        }
    }

    #[test]
    fn dont_fragment_probe_finds_the_mtu() {
        let lab = pair("df", 1400);
        let df = |payload| PingOptions {
            payload,
            dont_fragment: true,
            count: 2,
            ..Default::default()
        };
        // 1372 + 8 ICMP + 20 IPv4 = 1400; IPv6 has a 40-byte header.
        for (to, fits) in [("198.51.100.2", 1372), ("2001:db8:100::2", 1352)] {
            assert_all_replies(&lab.ping(0, to, df(fits)).unwrap(), 2);
            match lab.ping(0, to, df(fits + 1)) {
                Err(e @ PingError::MessageTooLong { mtu: Some(1400) }) => {
                    assert!(e.to_string().contains("path MTU is 1400"), "{e}")
                }
                other => panic!(
                    "{to} payload {}: expected MessageTooLong(1400), got {other:?}",
                    fits + 1
                ),
            }
            // Without DF the same size is fragmented and answered.
            let frag = PingOptions {
                payload: fits + 1,
                count: 2,
                ..Default::default()
            };
            assert_all_replies(&lab.ping(0, to, frag).unwrap(), 2);
        }
    }

    #[test]
    fn concurrent_pings_in_one_namespace_keep_their_replies() {
        let lab = pair("conc", 1500);
        let ns = lab.ns(0).to_owned();
        // Same target, different payloads: a reply taken by the wrong ping
        // would show up as a wrong size. (Replies come within ~50 us, so a
        // missing identifier check rarely shows here; the parse tests pin it.)
        let runs = [
            ("198.51.100.2", 56),
            ("198.51.100.2", 100),
            ("2001:db8:100::2", 56),
            ("2001:db8:100::2", 100),
        ];
        let start = Arc::new(Barrier::new(runs.len()));
        let threads: Vec<_> = runs
            .iter()
            .map(|&(t, payload)| {
                let (ns, start, t) = (ns.clone(), start.clone(), t.parse::<IpAddr>().unwrap());
                std::thread::spawn(move || {
                    netns::run_in(&ns, move || {
                        start.wait();
                        let opts = PingOptions {
                            count: 5,
                            interval: Duration::from_millis(20),
                            payload,
                            ..Default::default()
                        };
                        Ok(ping(t, &opts))
                    })
                })
            })
            .collect();
        for t in threads {
            let r = t.join().unwrap().unwrap().unwrap();
            assert_all_replies(&r, 5);
        }
    }

    /// A ping's socket gets its own echo replies, not another ping's.
    #[test]
    fn a_ping_socket_sees_only_its_own_replies() {
        let lab = pair("filt", 1500);
        let got = netns::run_in(lab.ns(0), || {
            let target: IpAddr = "198.51.100.2".parse()?;
            let mine = open(target, &PingOptions::default(), 0x1111)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let other = open(target, &PingOptions::default(), 0x2222)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let to = SocketAddr::new(target, 0);
            for (sock, id) in [(&other, 0x2222u16), (&mine, 0x1111)] {
                let mut req = [ECHO_REQUEST_V4, 0, 0, 0, 0, 0, 0, 1];
                req[4..6].copy_from_slice(&id.to_be_bytes());
                let sum = checksum(&req);
                req[2..4].copy_from_slice(&sum.to_be_bytes());
                let addr = SockaddrStorage::from(to);
                socket::sendto(sock.as_raw_fd(), &req, &addr, MsgFlags::empty())?;
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut ids = Vec::new();
            let mut buf = [0u8; 1500];
            while let Ok(n) = socket::recv(mine.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                let ihl = usize::from(buf[0] & 0xf) * 4;
                if n >= ihl + 8 {
                    ids.push(u16::from_be_bytes([buf[ihl + 4], buf[ihl + 5]]));
                }
            }
            Ok(ids)
        })
        .unwrap();
        assert_eq!(got, vec![0x1111], "replies on the socket of ping 0x1111");
    }

    /// a --(1500)-- r --(1400)-- b, r forwarding; a and b route via r.
    fn routed(tag: &str) -> Lab {
        let lab = Lab::new(tag, &["a", "r", "b"]);
        lab.link(0, "v0", 1, "ra", 1500);
        lab.link(1, "rb", 2, "v0", 1400);
        for (i, dev, v4, v6) in [
            (0, "v0", "198.51.100.1/24", "2001:db8:100::1/64"),
            (1, "ra", "198.51.100.2/24", "2001:db8:100::2/64"),
            (1, "rb", "203.0.113.2/24", "2001:db8:113::2/64"),
            (2, "v0", "203.0.113.1/24", "2001:db8:113::1/64"),
        ] {
            lab.addr(i, dev, v4);
            lab.addr(i, dev, v6);
        }
        lab.ip(0, "route add default via 198.51.100.2");
        lab.ip(0, "-6 route add default via 2001:db8:100::2");
        lab.ip(2, "route add default via 203.0.113.2");
        lab.ip(2, "-6 route add default via 2001:db8:113::2");
        lab.sysctl(1, "/proc/sys/net/ipv4/ip_forward", "1");
        lab.sysctl(1, "/proc/sys/net/ipv6/conf/all/forwarding", "1");
        // The kernel's ICMP rate limits stay at their defaults: a burst of
        // about 6 errors per peer covers these tests. (icmp_ratelimit=0 would
        // even starve net-unreachables, which share the per-peer tokens.)
        lab
    }

    fn assert_errors(r: &PingReport, want: &[String]) {
        assert_eq!(r.received(), 0, "{:?}", r.lines());
        assert_eq!(r.errors, want, "{:?}", r.lines());
        let stats = &r.lines()[r.lines().len() - 1];
        assert!(
            stats.contains(&format!("+{} errors", want.len())),
            "{stats}"
        );
    }

    #[test]
    fn errors_from_the_path_are_recorded() {
        let lab = routed("path");
        // Routed, the reply has one hop less.
        let r = lab.ping(0, "203.0.113.1", PingOptions::default()).unwrap();
        assert_all_replies(&r, 3);
        assert!(r.replies.iter().all(|x| x.ttl == 63), "{:?}", r.replies);

        // (target, ttl, error line): r's errors come back to a.
        let cases = [
            (
                "203.0.113.1",
                Some(1),
                "From 198.51.100.2 {} Time to live exceeded",
            ),
            (
                "2001:db8:113::1",
                Some(1),
                "From 2001:db8:100::2 {} Time exceeded: Hop limit",
            ),
            (
                "192.0.2.1",
                None,
                "From 198.51.100.2 {} Destination Net Unreachable",
            ),
            (
                "2001:db8:ffff::1",
                None,
                "From 2001:db8:100::2 {} Destination unreachable: No route",
            ),
        ];
        for (to, ttl, line) in cases {
            let count = 2;
            let timeout = Duration::from_millis(500);
            let r = lab
                .ping(
                    0,
                    to,
                    PingOptions {
                        ttl,
                        count,
                        timeout,
                        ..Default::default()
                    },
                )
                .unwrap();
            let want: Vec<String> = (1..=count)
                .map(|s| line.replace("{}", &format!("icmp_seq={s}")))
                .collect();
            assert_errors(&r, &want);
        }

        // DF bigger than the r--b link: r answers "too big" once, then the
        // kernel knows the path MTU and refuses locally.
        for (to, from, payload, why) in [
            (
                "203.0.113.1",
                "198.51.100.2",
                1472,
                "Frag needed and DF set (mtu = 1400)",
            ),
            (
                "2001:db8:113::1",
                "2001:db8:100::2",
                1452,
                "Packet too big: mtu=1400",
            ),
        ] {
            let opts = PingOptions {
                count: 1,
                payload,
                dont_fragment: true,
                ..Default::default()
            };
            let r = lab.ping(0, to, opts.clone()).unwrap();
            assert_errors(&r, &[format!("From {from} icmp_seq=1 {why}")]);
            assert!(
                matches!(
                    lab.ping(0, to, opts),
                    Err(PingError::MessageTooLong { mtu: Some(1400) })
                ),
                "{to}: the path MTU should be known now"
            );
        }
    }
}
