//! The receive path: batches of GRE packets from the raw sockets, the
//! demux checks, ECN decapsulation, GRO runs and the device writes.

use std::collections::HashMap;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use super::engine::{Engine, Route, Tunnel};
use super::offload;
use super::sock::{CTRL_WORDS, ipv6_received};
use super::stats::{Stats, TunnelStats};
use crate::sys::tun;
use crate::wire::gre;

/// GRE packets received per socket per wakeup.
pub(super) const BATCH: usize = 64;
/// Room in front of each received packet for the virtio header.
pub(super) const RX_HEADROOM: usize = 16;
/// Open runs a received TCP segment looks back over for its flow's.
pub(super) const GRO_SCAN: usize = 8;

/// Buffers for receiving a batch of GRE packets and writing their payloads
/// to devices, allocated once.
pub(super) struct Rx {
    pub(super) slot: usize,
    pub(super) data: Vec<u8>,
    pub(super) iov: Vec<libc::iovec>,
    pub(super) msgs: Vec<libc::mmsghdr>,
    pub(super) names: Vec<libc::sockaddr_in6>,
    pub(super) ctrl: Vec<[u64; CTRL_WORDS]>,
    /// Accepted packets of the batch, in order.
    pub(super) pkts: Vec<RxPkt>,
    /// What is written to the devices: single packets or joined runs.
    pub(super) runs: Vec<Run>,
    pub(super) wiov: Vec<libc::iovec>,
}

/// An accepted packet: its inner bytes in `Rx::data`, and the next packet
/// of its run.
#[derive(Clone, Copy)]
pub(super) struct RxPkt {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) next: usize,
}

/// Packets for one device write: one, or TCP segments of a flow joined.
#[derive(Clone, Copy)]
pub(super) struct Run {
    pub(super) tunnel: usize,
    pub(super) head: usize,
    pub(super) tail: usize,
    pub(super) count: usize,
    /// Inner bytes of the packets as received, and as written.
    pub(super) bytes: usize,
    pub(super) len: usize,
    /// Layout of the packets, if TCP that may take more segments.
    pub(super) tcp: Option<offload::Tcp>,
    /// Payload length of the first segment: the most a next may carry.
    pub(super) mss: usize,
    pub(super) open: bool,
    /// The virtio header of a single packet.
    pub(super) vh: offload::VnetHdr,
}

pub(super) const NO_PKT: usize = usize::MAX;

impl Rx {
    pub(super) fn new(slot: usize) -> Self {
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
    pub(super) fn receive(&mut self, fd: RawFd, v6: bool) -> usize {
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
    pub(super) fn add(
        &mut self,
        tunnel: usize,
        l2: bool,
        mtu: usize,
        start: usize,
        end: usize,
        gro: bool,
    ) {
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
    pub(super) fn write_all(&mut self, tunnels: &[Tunnel], stats: &mut [TunnelStats]) {
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

impl Engine {
    /// Receives up to a batch of GRE packets on socket `si` and delivers
    /// their payloads to their tunnels' devices, or counts why not.
    pub(super) fn decapsulate(&mut self, si: usize) {
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
pub(super) fn accept(
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

/// RFC 6040's decapsulation, as ip_tunnel_rcv does it: the outer ECN
/// field `outer` (the low bits of the TOS or traffic class) onto the
/// inner packet of GRE type `protocol` (for gretap, IP in an untagged
/// frame): outer CE marks an ECN-capable packet CE (fixing an IPv4
/// checksum), outer ECT(1) makes ECT(0) ECT(1), the rest stays. False for
/// CE over a Not-ECT packet, to be dropped. The fast path does the same.
pub(super) fn ecn_decapsulate(outer: u8, protocol: u16, inner: &mut [u8]) -> bool {
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

/// Outer source, destination and where the GRE bytes are in a received
/// IPv4 packet.
pub(super) fn parse_ipv4(p: &[u8]) -> Option<(IpAddr, IpAddr, std::ops::Range<usize>)> {
    let ip = crate::wire::ipv4::Ipv4Packet::new_checked(p).ok()?;
    Some((ip.src().into(), ip.dst().into(), ip.payload_range()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
