//! Ping without the `ping` binary: ICMP / ICMPv6 echo over raw sockets.
//!
//! A new network namespace refuses unprivileged ping sockets
//! (`net.ipv4.ping_group_range` is `1 0`), so this needs root (CAP_NET_RAW).
//! [`ping`] works in the calling thread's namespace; callers wrap it in
//! [`crate::sys::netns::run_in`]. Each call has its own socket and identifier, so
//! several pings may run at once in one namespace from different threads.
//!
//! Pieces: the run (here), its `raw` socket, what a received packet means
//! (`reply`), and the `report` iputils would print.

mod raw;
mod reply;
mod report;

#[cfg(all(test, feature = "root-tests"))]
mod root_tests;

pub use report::{PingReport, Reply};

use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage};
use nix::sys::time::TimeSpec;

use self::raw::{io_err, open, source_ip, too_long};
use self::reply::{Seen, parse_v4, parse_v6};
use crate::wire::checksum::internet_checksum as checksum;

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
    check_options(target, opts)?;
    let id = opts.ident.unwrap_or_else(next_id);
    let mut run = Run::new(target, opts, id, open(target, opts, id)?);
    let count = opts.count as usize;
    let mut next_send = run.start;
    let mut deadline = run.start;
    loop {
        if (run.report.transmitted as usize) < count && Instant::now() >= next_send {
            let when = run.send_next()?;
            next_send += opts.interval;
            if run.report.transmitted as usize == count {
                deadline = when + opts.timeout;
            }
        }
        let sent = run.report.transmitted as usize;
        let now = Instant::now();
        if sent == count && (run.report.replies.len() == count || now >= deadline) {
            break;
        }
        // When the next request is due already (a short interval), this polls
        // without waiting: replies are read between requests, never left to
        // overflow the socket buffer.
        let wake = if sent < count { next_send } else { deadline };
        if run.wait(wake.saturating_duration_since(now))? {
            run.drain()?;
        }
    }
    Ok(run.report)
}

/// Refuses what no socket should be asked for: a count out of range, a
/// link-local target (it needs an interface), a payload over 64 KiB.
fn check_options(target: IpAddr, opts: &PingOptions) -> Result<(), PingError> {
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
    Ok(())
}

/// One ping run: its socket, the request it sends, and what it has seen.
struct Run {
    target: IpAddr,
    id: u16,
    sock: OwnedFd,
    dest: SockaddrStorage,
    /// The echo request; its sequence number and checksum change per send.
    packet: Vec<u8>,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
    /// sent_at[seq - 1]: when that request left; taken when its reply comes.
    sent_at: Vec<Option<Instant>>,
    report: PingReport,
    start: Instant,
}

impl Run {
    fn new(target: IpAddr, opts: &PingOptions, id: u16, sock: OwnedFd) -> Run {
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
        Run {
            target,
            id,
            sock,
            dest: SockaddrStorage::from(SocketAddr::new(target, 0)),
            packet,
            // Room for the biggest reply plus an IPv4 header with options; ICMP
            // errors are shorter than 1280 bytes.
            buf: vec![0u8; (ICMP_HDR + opts.payload + 60).max(1500)],
            cmsg: nix::cmsg_space!(libc::c_int),
            sent_at: vec![None; count],
            report: PingReport {
                target,
                payload: opts.payload,
                transmitted: 0,
                replies: Vec::with_capacity(count),
                errors: Vec::new(),
                elapsed: Duration::ZERO,
            },
            start: Instant::now(),
        }
    }

    /// Sends the next request; returns when it left.
    fn send_next(&mut self) -> Result<Instant, PingError> {
        let target = self.target;
        let sent = self.report.transmitted as usize;
        let seq = sent as u16 + 1;
        self.packet[6..8].copy_from_slice(&seq.to_be_bytes());
        if target.is_ipv4() {
            self.packet[2..4].fill(0);
            let sum = checksum(&self.packet);
            self.packet[2..4].copy_from_slice(&sum.to_be_bytes());
        } // ICMPv6: the kernel always fills the checksum at offset 2.
        let when = Instant::now();
        self.report.transmitted += 1;
        self.report.elapsed = when - self.start;
        let fd = self.sock.as_raw_fd();
        match socket::sendto(fd, &self.packet, &self.dest, MsgFlags::empty()) {
            Ok(_) => self.sent_at[sent] = Some(when),
            Err(Errno::EMSGSIZE) => return Err(too_long(&self.sock, target)),
            // The path refused at once (no route, neighbour failed):
            // a lost request, as ping shows it, not a broken ping.
            Err(e @ (Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EHOSTDOWN)) => {
                self.report.errors.push(format!(
                    "ping: sendmsg to {target} icmp_seq={seq}: {}",
                    e.desc()
                ))
            }
            Err(e) => return Err(io_err(e, &format!("sending an echo request to {target}"))),
        }
        Ok(when)
    }

    /// Waits up to `wait` for something to read; whether there is.
    fn wait(&self, wait: Duration) -> Result<bool, PingError> {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
            Ok(0) | Err(Errno::EINTR) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(io_err(
                e,
                &format!("waiting for echo replies from {}", self.target),
            )),
        }
    }

    /// Reads everything queued, then goes back to the clock.
    fn drain(&mut self) -> Result<(), PingError> {
        let target = self.target;
        loop {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let msg = match socket::recvmsg::<SockaddrStorage>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut self.cmsg),
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
            let data = &self.buf[..len];
            let parsed = match target {
                IpAddr::V4(t) => parse_v4(data, t, self.id),
                IpAddr::V6(t) => parse_v6(data, t, self.id, hop_limit.unwrap_or(0)),
            };
            self.record(parsed, from, arrived);
        }
        Ok(())
    }

    /// Keeps a reply to one of this run's requests (once) and the errors
    /// that quote one it sent.
    fn record(&mut self, parsed: Option<Seen>, from: IpAddr, arrived: Instant) {
        match parsed {
            Some(Seen::Reply { seq, bytes, ttl }) if from == self.target => {
                let slot = self.sent_at.get_mut(usize::from(seq).wrapping_sub(1));
                if let Some(t0) = slot.and_then(Option::take) {
                    self.report.replies.push(Reply {
                        seq,
                        bytes,
                        ttl,
                        rtt: arrived - t0,
                        from,
                    });
                }
            }
            Some(Seen::Error { seq, what })
                if seq >= 1 && u32::from(seq) <= self.report.transmitted =>
            {
                self.report
                    .errors
                    .push(format!("From {from} icmp_seq={seq} {what}"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
