//! See GRE on the wire: a packet socket on one interface ([`Capture`]), a
//! structured decode for assertions ([`decode`]), a text decode that reads
//! like `tcpdump -v -n` ([`describe`]), and a classic pcap writer
//! ([`PcapWriter`]) so captures open in tcpdump and Wireshark.
//!
//! Imports `wire` (IPv4 and GRE views; its root test also `sys::netns`
//! and the `sys::testns` fixture); never sends, never panics on a frame;
//! `unsafe` only in `socket` (and the root test's raw sender). Pieces: `socket` reads frames, `ip` reads their
//! IP layer for `decode` and `describe`, `pcap` writes them.

mod decode;
mod describe;
mod ip;
mod pcap;
mod socket;

#[cfg(test)]
mod fixtures;
#[cfg(all(test, feature = "root-tests"))]
mod root_tests;

pub use decode::{Encap, Inner, decode};
pub use describe::describe;
pub use pcap::PcapWriter;
pub use socket::{Capture, Frame, MAX_FRAME};

use std::net::{Ipv4Addr, Ipv6Addr};

const ETH_HLEN: usize = 14;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_GRE: u8 = 47;
const PROTO_ICMPV6: u8 = 58;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    b.get(at..at + 6)
        .and_then(|m| m.try_into().ok())
        .unwrap_or_default()
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    be32(b, at).map(Ipv4Addr::from)
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let bytes: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(bytes))
}
