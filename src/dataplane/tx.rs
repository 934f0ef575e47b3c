//! The send path: device reads, TSO segmentation, GRE and outer headers,
//! and the send batches.

use std::io::{self, Read};
use std::mem::zeroed;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};

use super::engine::{Engine, Sock, Tunnel};
use super::offload;
use super::sock::{CTRL_WORDS, IPPROTO_GRE, epoll_del, ipv6_control, writable};
use super::stats::TunnelStats;
use crate::model::TunnelEnd;
use crate::sys::tun;
use crate::wire::gre;

/// Device reads per wakeup, so one busy tunnel does not starve the others.
pub(super) const READS: usize = 64;
/// The longest device read: virtio header, Ethernet header with a VLAN
/// tag, and a 64 KiB super-packet.
pub(super) const READ_MAX: usize = tun::VNET_HDR_LEN + 18 + 65536;
/// Device reads buffered for one send batch.
pub(super) const ARENA: usize = 4 * READ_MAX;
/// GRE packets per sendmmsg.
pub(super) const TX_MSGS: usize = 256;
/// Header room per sent message: outer IPv4 and GRE headers, then the
/// inner headers of a segment (starting at INNER_AT).
pub(super) const HDR_BLOCK: usize = 256;
pub(super) const INNER_AT: usize = 20 + gre::MAX_HEADER_LEN;

/// Device reads and the GRE packets made of them, for one sendmmsg,
/// allocated once.
pub(super) struct Tx {
    /// Packets read from the device, each led by its virtio header.
    pub(super) arena: Vec<u8>,
    /// Per message: outer IPv4 header, GRE header, then the inner headers
    /// of a segment, ending at INNER_AT + their length.
    pub(super) hdrs: Vec<[u8; HDR_BLOCK]>,
    pub(super) iov: Vec<[libc::iovec; 2]>,
    pub(super) msgs: Vec<libc::mmsghdr>,
    pub(super) ctrl: Vec<[u64; CTRL_WORDS]>,
    /// Inner bytes of each message, and whether it was sent.
    pub(super) inner: Vec<usize>,
    pub(super) ok: Vec<bool>,
    pub(super) n: usize,
}

/// How to wrap the packets of one device read.
pub(super) struct Outer {
    pub(super) protocol: u16,
    pub(super) ttl: u8,
    pub(super) tos: u8,
    pub(super) df: bool,
}

impl Tx {
    pub(super) fn new() -> Self {
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
    pub(super) fn encapsulate(
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
    pub(super) fn push(
        &mut self,
        t: &mut Tunnel,
        o: &Outer,
        hl: usize,
        payload: std::ops::Range<usize>,
    ) {
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
    pub(super) fn send(&mut self, sock: &Sock, st: &mut TunnelStats) {
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

impl Engine {
    /// Reads up to READS packets from tunnel `ti`'s device, wraps them (or
    /// their segments) in GRE and an outer header, and sends them in batches.
    pub(super) fn encapsulate(&mut self, ti: usize) {
        let Engine {
            tunnels,
            socks,
            stats,
            tx,
            epoll,
            dirty,
            delays,
            line,
            ..
        } = self;
        let held = delays[ti].filter(crate::model::Impairment::delays);
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
            if let Some(imp) = &held {
                line.hold(
                    ti,
                    &tx.arena[pos..pos + len],
                    imp,
                    std::time::Instant::now(),
                );
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
}

/// Sends messages 0..n of `msgs`, setting `ok` for each.
pub(super) fn send_batch(fd: RawFd, msgs: &mut [libc::mmsghdr], ok: &mut [bool], n: usize) {
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
pub(super) fn outer_fields(end: &TunnelEnd, l2: bool, inner: &[u8]) -> (u8, u8, bool) {
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

/// A random 16-bit number, to start a counter of IPv4 IDs as the kernel's
/// do (0 if the kernel gives none).
pub(super) fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most the 2 bytes of `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, libc::GRND_NONBLOCK) };
    if n == 2 { u16::from_ne_bytes(b) } else { 0 }
}

/// Writes an outer IPv4 header for GRE, ID 0; the kernel fills the
/// checksum (and a zero ID).
pub(super) fn ipv4_header(
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

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;
    use crate::dataplane::testing::end;
    use crate::model::TunnelKind;

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
}
