//! Joining received TCP segments of a flow into one super-packet for the
//! device (GRO), and the virtio header of a received packet.

use super::*;

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
