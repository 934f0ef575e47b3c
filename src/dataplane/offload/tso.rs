//! Cutting a TCP super-packet read from a device into segments (TSO).

use std::ops::Range;

use super::*;

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
