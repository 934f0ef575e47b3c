//! The fast path's data, one definition each: the tunnel tables' keys and
//! values and the counters, which the loader passes through bpf(2) and the
//! programs address, and the programs' stack frame. The programs take every
//! offset from these structs (`offset_of!`), so the two sides cannot
//! disagree.

use std::mem::{offset_of, size_of};

/// Plain data that crosses bpf(2) as bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]` with no implicit padding (the kernel
/// hashes and compares every byte of a key) and valid for every bit pattern
/// (the kernel writes values).
pub(super) unsafe trait Plain: Copy {}

// SAFETY: an integer: no padding, any bits.
unsafe impl Plain for u32 {}

/// Bits of a table key's `tag` besides the namespace slot (above them).
pub(super) const TAG_KEYED: u32 = 1;
pub(super) const TAG_L2: u32 = 2;
pub(super) const TAG_SLOT_SHIFT: u32 = 2;

/// A tunnel table key: `N` = 4 for the IPv4 table, 16 for the IPv6 one.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TableKey<const N: usize> {
    /// The namespace slot, and `TAG_L2` and `TAG_KEYED`.
    pub(super) tag: u32,
    /// The packet's outer destination (the end's local address) and source.
    pub(super) local: [u8; N],
    pub(super) remote: [u8; N],
    /// The GRE key in network order, 0 when there is none.
    pub(super) key: [u8; 4],
}

// SAFETY: repr(C), u32 and byte arrays of multiples of 4 (checked below):
// no padding; any bits.
unsafe impl<const N: usize> Plain for TableKey<N> {}
const _: () = assert!(size_of::<TableKey<4>>() == 16 && size_of::<TableKey<16>>() == 40);

impl<const N: usize> TableKey<N> {
    /// The tag of namespace `slot`'s gretap (`l2`) or gre tunnels, keyed or not.
    pub(super) fn tag(slot: u32, l2: bool, keyed: bool) -> u32 {
        (slot << TAG_SLOT_SHIFT) | if l2 { TAG_L2 } else { 0 } | if keyed { TAG_KEYED } else { 0 }
    }
}

/// A tunnel table value: where an accepted packet goes and how it counts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Route {
    /// The tunnel's device.
    pub(super) ifindex: u32,
    /// The tunnel's index in the counters.
    pub(super) tunnel: u32,
}

// SAFETY: repr(C), two u32: no padding; any bits.
unsafe impl Plain for Route {}

/// Per-tunnel fast-path counters: packets and inner bytes each way.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

/// A counters entry: the counters, and the IPv4 IDs used (one per segment).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CountersEntry {
    pub(super) counters: Counters,
    pub(super) ipv4_ids: u64,
}

// SAFETY: repr(C), u64s only: no padding; any bits.
unsafe impl Plain for CountersEntry {}

/// The offset of a field of a map value, as an instruction's offset.
pub(super) const fn field(at: usize) -> i16 {
    at as i16
}

pub(super) const TX_PACKETS: i16 = field(offset_of!(CountersEntry, counters.tx_packets));
pub(super) const TX_BYTES: i16 = field(offset_of!(CountersEntry, counters.tx_bytes));
pub(super) const RX_PACKETS: i16 = field(offset_of!(CountersEntry, counters.rx_packets));
pub(super) const RX_BYTES: i16 = field(offset_of!(CountersEntry, counters.rx_bytes));
pub(super) const IPV4_IDS: i16 = field(offset_of!(CountersEntry, ipv4_ids));

/// The programs' stack frame, from its lowest address up to the frame
/// pointer: only measured (`slot`), never built.
#[repr(C)]
#[allow(dead_code)]
pub(super) struct Frame {
    /// The IPv6 table key.
    lookup6: TableKey<16>,
    _pad0: [u8; 8],
    /// What decap reads of IPv6: the header and up to 8 bytes of GRE.
    h6: [u8; 56],
    hdr6: Hdr6,
    /// Zeros for encap's outer Ethernet header.
    zero: [u8; 16],
    /// The IPv4 table key.
    lookup: TableKey<4>,
    /// Outer IPv4 and GRE headers, up to 28 bytes; also what decap reads.
    hdr: [u8; 40],
    /// The inner frame's first bytes (up to 26: Ethernet, then 12 of IP).
    inner: [u8; 32],
    extra: u64,
    saved: u64,
    _pad1: u32,
    /// A counters key: the tunnel's index.
    key: u32,
}

/// An outer IPv6 header and GRE (encap), or decap's ECN work.
#[repr(C)]
#[allow(dead_code)]
union Hdr6 {
    headers: [u8; 48],
    ecn: EcnWork,
}

/// Decap's ECN work: the inner IP header's first 12 bytes, their packet
/// offset, the inner family (4, 6, or 0 for Ethernet) and the outer ECN
/// field.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)]
struct EcnWork {
    in_ip: [u8; 16],
    in_at: u64,
    in_family: u64,
    outer_ecn: u64,
    _pad: [u8; 8],
}

// eBPF gives a program 512 bytes of stack.
const _: () = assert!(size_of::<Frame>() <= 512);

/// A slot of the frame, at `at` in `Frame`, as an offset from the frame
/// pointer.
const fn slot(at: usize) -> i16 {
    at as i16 - size_of::<Frame>() as i16
}

pub(super) const KEY: i16 = slot(offset_of!(Frame, key));
pub(super) const SAVED: i16 = slot(offset_of!(Frame, saved));
pub(super) const EXTRA: i16 = slot(offset_of!(Frame, extra));
pub(super) const INNER: i16 = slot(offset_of!(Frame, inner));
pub(super) const HDR: i16 = slot(offset_of!(Frame, hdr));
pub(super) const LOOKUP: i16 = slot(offset_of!(Frame, lookup));
pub(super) const ZERO: i16 = slot(offset_of!(Frame, zero));
pub(super) const HDR6: i16 = slot(offset_of!(Frame, hdr6.headers));
pub(super) const IN_IP: i16 = slot(offset_of!(Frame, hdr6.ecn.in_ip));
pub(super) const IN_AT: i16 = slot(offset_of!(Frame, hdr6.ecn.in_at));
pub(super) const IN_FAMILY: i16 = slot(offset_of!(Frame, hdr6.ecn.in_family));
pub(super) const OUTER_ECN: i16 = slot(offset_of!(Frame, hdr6.ecn.outer_ecn));
pub(super) const H6: i16 = slot(offset_of!(Frame, h6));
pub(super) const LOOKUP6: i16 = slot(offset_of!(Frame, lookup6));

/// Offsets of a table key's fields from its slot, and of a route's fields.
pub(super) const KEY_TAG: i16 = field(offset_of!(TableKey<4>, tag));
pub(super) const KEY4_LOCAL: i16 = field(offset_of!(TableKey<4>, local));
pub(super) const KEY4_REMOTE: i16 = field(offset_of!(TableKey<4>, remote));
pub(super) const KEY4_KEY: i16 = field(offset_of!(TableKey<4>, key));
pub(super) const KEY6_LOCAL: i16 = field(offset_of!(TableKey<16>, local));
pub(super) const KEY6_REMOTE: i16 = field(offset_of!(TableKey<16>, remote));
pub(super) const KEY6_KEY: i16 = field(offset_of!(TableKey<16>, key));
pub(super) const ROUTE_IFINDEX: i16 = field(offset_of!(Route, ifindex));
pub(super) const ROUTE_TUNNEL: i16 = field(offset_of!(Route, tunnel));
const _: () = assert!(offset_of!(TableKey<4>, tag) == offset_of!(TableKey<16>, tag));
