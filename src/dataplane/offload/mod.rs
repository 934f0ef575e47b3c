//! Packet surgery for device offloads, allocation-free and testable alone:
//! the virtio_net_hdr, splitting TCP super-packets read from a device into
//! MTU-sized segments (the kernel's TSO, done here), finishing checksums
//! the kernel left to the device, and joining consecutive TCP segments of
//! one flow into a super-packet for the device (GRO).
//!
//! Pure functions on byte slices: no syscalls, no other crate module but
//! `wire`; their tests run anywhere.

mod csum;
mod gro;
#[cfg(test)]
mod tests;
mod tso;

pub use csum::{csum_add, csum_fold, finish_checksum};
pub use gro::{continues, has_psh, mergeable, same_flow, seal, unfinished};
pub use tso::{gso_layout, segment};
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
