//! The userspace dataplane's in-kernel fast path: small eBPF programs at the
//! tc hooks (TCX, Linux 6.6 and later) that carry plain GRE without a trip
//! through userspace, for kernels with eBPF but no ip_gre.
//!
//! - Egress of a tunnel's TUN device (`gre`, `ip6gre`) or TAP device
//!   (`gretap`, `ip6gretap`): the packet (frame) gets its outer IPv4 or
//!   IPv6 and GRE headers (key if any) and leaves by the underlay device through the neighbour table
//!   (`bpf_redirect_neigh`). TCP super-packets stay whole; the kernel's GRE
//!   segmentation (not part of ip_gre) cuts them only where a device needs
//!   it.
//!   The outer IPv4 header is ip_gre's: DF always with pmtudisc, else
//!   copied from an IPv4 inner packet; the ID from a per-tunnel counter.
//! - Ingress of the underlay device: GRE for a known (local, remote, key)
//!   loses its outer headers and is handed to the tunnel's device as if
//!   received there, with ECN per RFC 6040 (outer CE onto the inner
//!   packet, as ip_gre).
//!
//! Only what ip_gre would accept is taken: frames for this host's MAC,
//! untagged, IPv4 with a valid header checksum. Everything else (that, GRE
//! checksums or sequence numbers, non-IP frames on gretap, IPv4 options,
//! IPv6 extension headers, fragments, CE over a Not-ECT packet, unknown
//! senders) is passed on untouched to the stack and so the userspace
//! path, which keeps the drop counters. The programs bypass netfilter's
//! hooks: the dataplane keeps the tunnel ends of a namespace with rules
//! off them (`netfilter`).
//!
//! The programs are assembled here from their instructions: no compiler
//! and no object files at build or run time. Closing the link descriptors detaches
//! them, so they go with the dataplane process.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, anyhow};

use crate::plan::TunnelEnd;

/// Whether the programs carry tunnel end `end`: not with GRE checksums or
/// sequence numbers, which userspace keeps.
pub fn carries(end: &TunnelEnd) -> bool {
    !end.checksum && !end.sequence
}

/// What an egress program writes in front of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// The tunnel's index in the counters.
    pub index: u32,
    /// Both IPv4 or both IPv6.
    pub local: IpAddr,
    pub remote: IpAddr,
    pub key: Option<u32>,
    /// 0 inherits the inner packet's TTL (hop limit).
    pub ttl: u8,
    /// An odd TOS (traffic class) inherits the inner packet's DSCP.
    pub tos: u8,
    /// pmtudisc: IPv4's DF always; without, DF copies an IPv4 inner DF.
    pub df: bool,
    /// gretap: Ethernet frames from a TAP device, not IP packets from TUN.
    pub l2: bool,
    /// The underlay device the packets leave by.
    pub out_ifindex: u32,
    /// Added to the tunnel's count of sent IPv4 segments to make the outer
    /// IPv4 ID, so that it goes on from the userspace path's.
    pub id_base: u16,
}

impl Encap {
    /// The egress program's work for tunnel end `end` (one `carries`),
    /// counted as tunnel `index`, leaving by `out_ifindex`, its IPv4 IDs
    /// going on from `id_base`.
    pub fn of(end: &TunnelEnd, index: u32, out_ifindex: u32, id_base: u16) -> Encap {
        Encap {
            index,
            local: end.local,
            remote: end.remote,
            key: end.okey,
            ttl: end.ttl,
            tos: end.tos,
            df: end.pmtudisc,
            l2: end.kind.is_l2(),
            out_ifindex,
            id_base,
        }
    }

    /// The outer IP and GRE headers' length.
    fn header_len(&self) -> i32 {
        let ip = if self.local.is_ipv4() { 20 } else { 40 };
        ip + if self.key.is_some() { 8 } else { 4 }
    }
}

/// A counters entry: tx packets, tx bytes, rx packets, rx bytes, and the
/// IPv4 IDs used (one per segment).
const COUNTERS_LEN: usize = 40;
const IDS_AT: i16 = 32;

/// The maps the programs of one dataplane share.
pub struct FastPath {
    counters: Map<4, COUNTERS_LEN>,
    /// (namespace slot, gretap and key flags, local, remote, key) ->
    /// (device, tunnel), for IPv4 and for IPv6 underlays.
    table: Map<16, 8>,
    table6: Map<40, 8>,
}

/// Per-tunnel fast-path counters: packets and inner bytes each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl FastPath {
    /// Creates the maps for up to `tunnels` tunnels; fails where the kernel
    /// has no eBPF (or forbids it).
    pub fn new(tunnels: usize) -> Result<FastPath> {
        let n = tunnels.max(1) as u32;
        Ok(FastPath {
            counters: Map::new(MapKind::Array, n).context("creating the counters map")?,
            table: Map::new(MapKind::Hash, n).context("creating the tunnel table")?,
            table6: Map::new(MapKind::Hash, n).context("creating the IPv6 tunnel table")?,
        })
    }

    /// Attaches an egress program for `e` to the device `ifindex` of the
    /// calling thread's namespace.
    pub fn attach_egress(&self, e: &Encap, ifindex: u32) -> Result<OwnedFd> {
        let prog = load(&encap_program(e, self.counters.fd()), "grelab_encap")?;
        link_create(&prog, ifindex, ATTACH_TCX_EGRESS)
    }

    /// Attaches the receive program of namespace `slot` to the device
    /// `ifindex` of the calling thread's namespace.
    pub fn attach_ingress(&self, slot: u32, ifindex: u32) -> Result<OwnedFd> {
        let code = decap_program(
            slot,
            [self.table.fd(), self.table6.fd()],
            self.counters.fd(),
        );
        let prog = load(&code, "grelab_decap")?;
        link_create(&prog, ifindex, ATTACH_TCX_INGRESS)
    }

    /// Lets namespace `slot`'s receive programs hand what tunnel end `end`
    /// accepts to its device `ifindex`, counted as tunnel `index`.
    pub fn add_route(&self, slot: u32, end: &TunnelEnd, ifindex: u32, index: u32) -> Result<()> {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&ifindex.to_ne_bytes());
        v[4..].copy_from_slice(&index.to_ne_bytes());
        match route_keys(slot, end) {
            (Some(k), _) => self.table.update(&k, &v),
            (_, Some(k)) => self.table6.update(&k, &v),
            _ => return Err(mixed(end)),
        }
        .context("adding a tunnel to the fast-path table")
    }

    /// Undoes `add_route`: namespace `slot`'s receive programs leave what
    /// `end` accepts to the stack again.
    pub fn remove_route(&self, slot: u32, end: &TunnelEnd) -> Result<()> {
        let removed = match route_keys(slot, end) {
            (Some(k), _) => self.table.delete(&k),
            (_, Some(k)) => self.table6.delete(&k),
            _ => return Err(mixed(end)),
        };
        match removed {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(e).context("removing a tunnel from the fast-path table")
            }
            _ => Ok(()),
        }
    }

    /// The fast-path counters of tunnel `index`.
    pub fn counters(&self, index: u32) -> Result<Counters> {
        let v = self
            .counters
            .lookup(&index.to_ne_bytes())
            .context("reading the fast-path counters")?;
        let word =
            |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Ok(Counters {
            tx_packets: word(0),
            tx_bytes: word(1),
            rx_packets: word(2),
            rx_bytes: word(3),
        })
    }
}

fn mixed(end: &TunnelEnd) -> anyhow::Error {
    anyhow!(
        "tunnel `{}`: local {} and remote {} are of different address families",
        end.name,
        end.local,
        end.remote
    )
}

/// `end`'s key in namespace `slot`, for the IPv4 table or the IPv6 one.
fn route_keys(slot: u32, end: &TunnelEnd) -> (Option<[u8; 16]>, Option<[u8; 40]>) {
    let l2 = end.kind.is_l2();
    (
        route_key(slot, end.local, end.remote, end.ikey, l2),
        route_key(slot, end.local, end.remote, end.ikey, l2),
    )
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The table key: tag, local, remote, key: `N` = 16 bytes for IPv4, 40 for
/// IPv6; None when the addresses do not make `N` bytes.
fn route_key<const N: usize>(
    slot: u32,
    local: IpAddr,
    remote: IpAddr,
    key: Option<u32>,
    l2: bool,
) -> Option<[u8; N]> {
    let tag = (slot << 2) | (u32::from(l2) << 1) | u32::from(key.is_some());
    let mut k = tag.to_ne_bytes().to_vec();
    k.extend(octets(local));
    k.extend(octets(remote));
    k.extend(key.unwrap_or(0).to_be_bytes());
    k.try_into().ok()
}

// ---- The programs ----

// Helpers (include/uapi/linux/bpf.h).
const MAP_LOOKUP_ELEM: i32 = 1;
const SKB_STORE_BYTES: i32 = 9;
const REDIRECT: i32 = 23;
const SKB_LOAD_BYTES: i32 = 26;
const CSUM_DIFF: i32 = 28;
const SKB_CHANGE_HEAD: i32 = 43;
const SKB_ADJUST_ROOM: i32 = 50;
const REDIRECT_NEIGH: i32 = 152;

// Fields of `struct __sk_buff`.
const SKB_LEN: i16 = 0;
const SKB_PKT_TYPE: i16 = 4;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_GSO_SIZE: i16 = 176;
const PACKET_HOST: i32 = 0;

// bpf_skb_adjust_room: room between the L2 and L3 headers, and flags.
const ADJ_ROOM_MAC: i32 = 1;
const ADJ_FIXED_GSO: i32 = 1 << 0;
const ADJ_ENCAP_L3_IPV4: i32 = 1 << 1;
const ADJ_ENCAP_L3_IPV6: i32 = 1 << 2;
const ADJ_ENCAP_L4_GRE: i32 = 1 << 3;
const ADJ_ENCAP_L2_ETH: i32 = 1 << 6;
const ADJ_DECAP_L3_IPV4: i32 = 1 << 7;
const ADJ_DECAP_L3_IPV6: i32 = 1 << 8;
const ADJ_DECAP_L4_GRE: i32 = 1 << 9;

/// TCX verdicts: on to the next program (or the stack), drop.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;
const F_INGRESS: i32 = 1;

/// A 16-bit big-endian value as a little-endian load from the packet reads it.
fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

fn be32(v: u32) -> i32 {
    i32::from_ne_bytes(v.to_be_bytes())
}

/// An address as the words a little-endian store puts in network order.
fn ne_words(a: IpAddr) -> Vec<i32> {
    octets(a)
        .chunks(4)
        .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// Adds 1 and `bytes` to the counters at `off` of the entry `entry` points at.
fn count(a: &mut Asm, entry: u8, off: i16, bytes: u8) {
    a.mov(R1, 1);
    a.atomic_add(entry, off, R1);
    a.atomic_add(entry, off + 8, bytes);
}

/// Looks up the counters of the tunnel whose index is at `fp + KEY`: the
/// entry in R0, or a jump to `none`.
fn counters_entry(a: &mut Asm, counters: RawFd, none: Label) {
    a.ld_map(R1, counters);
    a.mov_reg(R2, R10);
    a.add(R2, KEY as i32);
    a.call(MAP_LOOKUP_ELEM);
    a.jmp64(JEQ, R0, 0, none);
}

/// Folds the one's-complement sum in `r` to 16 bits (`r` holds at most 32
/// bits), with `tmp` as scratch.
fn fold(a: &mut Asm, r: u8, tmp: u8) {
    for _ in 0..2 {
        a.mov_reg(tmp, r);
        a.alu(RSH, tmp, 16);
        a.alu(AND, r, 0xffff);
        a.alu_reg(ADD, r, tmp);
    }
}

/// The one's-complement sum of the 20-byte IPv4 header at `fp + at`,
/// folded, in R0.
fn ipv4_sum(a: &mut Asm, at: i16) {
    a.mov(R1, 0);
    a.mov(R2, 0);
    a.mov_reg(R3, R10);
    a.add(R3, at as i32);
    a.mov(R4, 20);
    a.mov(R5, 0);
    a.call(CSUM_DIFF);
    a.mov32_reg(R0, R0);
    fold(a, R0, R1);
}

/// skb_load_bytes(skb, `at`, fp + `to`, `len`); on failure, jumps to
/// `fail`.
fn load_bytes(a: &mut Asm, at: i32, to: i16, len: i32, fail: Label) {
    a.mov(R2, at);
    load_bytes_at_r2(a, to, len, fail);
}

/// `load_bytes` from the packet offset in R2.
fn load_bytes_at_r2(a: &mut Asm, to: i16, len: i32, fail: Label) {
    a.mov_reg(R1, R6);
    a.mov_reg(R3, R10);
    a.add(R3, to as i32);
    a.mov(R4, len);
    a.call(SKB_LOAD_BYTES);
    a.jmp(JNE, R0, 0, fail);
}

/// skb_store_bytes(skb, `at`, fp + `from`, `len`, `flags`); on failure,
/// jumps to `fail`.
fn store(a: &mut Asm, at: i32, from: i16, len: i32, flags: i32, fail: Label) {
    a.mov(R2, at);
    store_at_r2(a, from, len, flags, fail);
}

/// `store` at the packet offset in R2.
fn store_at_r2(a: &mut Asm, from: i16, len: i32, flags: i32, fail: Label) {
    a.mov_reg(R1, R6);
    a.mov_reg(R3, R10);
    a.add(R3, from as i32);
    a.mov(R4, len);
    a.mov(R5, flags);
    a.call(SKB_STORE_BYTES);
    a.jmp(JNE, R0, 0, fail);
}

// Stack slots (offsets from the frame pointer), 8-aligned.
const KEY: i16 = -4;
const SAVED: i16 = -16;
const EXTRA: i16 = -24;
/// The inner frame's first bytes (up to 26: Ethernet, then 12 of IP).
const INNER: i16 = -56;
/// Outer IPv4 and GRE headers, up to 28 bytes; also what decap reads.
const HDR: i16 = -96;
const LOOKUP: i16 = -112;
const ZERO: i16 = -128;
/// An outer IPv6 header and GRE, up to 48 bytes.
const HDR6: i16 = -176;
/// Decap's ECN work, where encap has HDR6: the inner IP header's first 12
/// bytes, their packet offset, the inner family (4, 6, or 0 for Ethernet)
/// and the outer ECN field.
const IN_IP: i16 = HDR6;
const IN_AT: i16 = HDR6 + 16;
const IN_FAMILY: i16 = HDR6 + 24;
const OUTER_ECN: i16 = HDR6 + 32;
/// What decap reads of IPv6: the header and up to 8 bytes of GRE.
const H6: i16 = -232;
/// The IPv6 table key, 40 bytes.
const LOOKUP6: i16 = -280;
const F_RECOMPUTE_CSUM: i32 = 1;
const ETH_LEN: i32 = 14;

/// The egress program of one tunnel: `gre` (an IP packet from a TUN
/// device) or `gretap` (an Ethernet frame from a TAP device, IP inside).
fn encap_program(e: &Encap, counters: RawFd) -> Vec<Insn> {
    let outer6 = e.local.is_ipv6();
    let gre_len: i32 = if e.key.is_some() { 8 } else { 4 };
    let hl = e.header_len();
    let hdr = if outer6 { HDR6 } else { HDR };
    // Inner bytes before the IP header, and room added in front.
    let ip_at = if e.l2 { ETH_LEN } else { 0 };
    let room = hl + ip_at;
    let ip = INNER + ip_at as i16;
    let mut a = Asm::default();
    let [pass, drop, v4, v6, common, ecn_ok, one_seg] = a.labels();
    a.mov_reg(R6, R1);
    a.ldx(W, R7, R6, SKB_LEN); // the inner packet or frame
    a.jmp(JGT, R7, 65535 - room, pass);
    load_bytes(&mut a, 0, INNER, ip_at + 12, pass);
    // The tunnel's counters, in R9 to the end.
    a.st(W, R10, KEY, e.index as i32);
    counters_entry(&mut a, counters, pass);
    a.mov_reg(R9, R0);
    if e.l2 {
        // IP in Ethernet only (no VLAN tags, no ARP): the rest to userspace.
        a.ldx(H16, R8, R10, INNER + 12);
        a.jmp(JEQ, R8, be16(0x0800), v4);
        a.jmp(JEQ, R8, be16(0x86dd), v6);
        a.ja(pass);
    } else {
        a.ldx(B, R8, R10, ip);
        a.alu(RSH, R8, 4);
        a.jmp(JEQ, R8, 4, v4);
        a.jmp(JEQ, R8, 6, v6);
        a.ja(pass);
    }
    // Outer IPv4's DF as ip_tunnel_xmit sets it: always with pmtudisc,
    // else copied from an IPv4 inner packet (gretap's too).
    let df_always = if e.df { be16(0x4000) } else { 0 };
    // IPv6: traffic class across bytes 0-1, hop limit at 7.
    a.bind(v6);
    a.ldx(B, R2, R10, ip);
    a.alu(AND, R2, 0xf);
    a.alu(LSH, R2, 4);
    a.ldx(B, R3, R10, ip + 1);
    a.alu(RSH, R3, 4);
    a.alu_reg(OR, R2, R3);
    a.ldx(B, R3, R10, ip + 7);
    a.mov(R4, be16(0x86dd));
    if !outer6 {
        a.st(H16, R10, HDR + 6, df_always);
    }
    a.ja(common);
    a.bind(v4);
    a.ldx(B, R2, R10, ip + 1);
    a.ldx(B, R3, R10, ip + 8);
    a.mov(R4, be16(0x0800));
    if !outer6 {
        a.st(H16, R10, HDR + 6, df_always);
    }
    if !outer6 && !e.df {
        a.ldx(B, R1, R10, ip + 6);
        a.alu(AND, R1, 0x40);
        a.stx(B, R10, HDR + 6, R1);
    }
    a.bind(common);
    if e.l2 {
        a.mov(R4, be16(0x6558));
    }
    // R2 inner TOS, R3 inner TTL, R4 GRE protocol. ECN as ip_gre: CE goes
    // out as ECT(0) (RFC 6040).
    a.mov_reg(R5, R2);
    a.alu(AND, R5, 3);
    a.jmp(JNE, R5, 3, ecn_ok);
    a.mov(R5, 2);
    a.bind(ecn_ok);
    if e.tos & 1 == 1 {
        a.alu(AND, R2, 0xfc);
    } else {
        a.mov(R2, i32::from(e.tos & 0xfc));
    }
    a.alu_reg(OR, R2, R5);
    if e.ttl != 0 {
        a.mov(R3, i32::from(e.ttl));
    }
    let gre_at = hdr + (hl - gre_len) as i16;
    if outer6 {
        // Version 6, the traffic class across bytes 0-1, flow label 0.
        a.mov_reg(R1, R2);
        a.alu(RSH, R1, 4);
        a.alu(OR, R1, 0x60);
        a.stx(B, R10, HDR6, R1);
        a.mov_reg(R1, R2);
        a.alu(AND, R1, 0xf);
        a.alu(LSH, R1, 4);
        a.stx(B, R10, HDR6 + 1, R1);
        a.st(H16, R10, HDR6 + 2, 0);
        a.mov_reg(R1, R7);
        a.add(R1, gre_len);
        a.be16(R1);
        a.stx(H16, R10, HDR6 + 4, R1);
        a.st(B, R10, HDR6 + 6, 47);
        a.stx(B, R10, HDR6 + 7, R3);
    } else {
        a.st(B, R10, HDR, 0x45);
        a.stx(B, R10, HDR + 1, R2);
        a.mov_reg(R1, R7);
        a.add(R1, hl);
        a.be16(R1);
        a.stx(H16, R10, HDR + 2, R1);
        a.stx(B, R10, HDR + 8, R3);
        a.st(B, R10, HDR + 9, 47);
        a.st(H16, R10, HDR + 10, 0);
    }
    let addrs_at = hdr + if outer6 { 8 } else { 12 };
    for (i, w) in ne_words(e.local)
        .into_iter()
        .chain(ne_words(e.remote))
        .enumerate()
    {
        a.st(W, R10, addrs_at + 4 * i as i16, w);
    }
    a.st(
        H16,
        R10,
        gre_at,
        if e.key.is_some() { be16(0x2000) } else { 0 },
    );
    a.stx(H16, R10, gre_at + 2, R4);
    if let Some(k) = e.key {
        a.st(W, R10, gre_at + 4, be32(k));
    }
    if !outer6 {
        // The IPv4 ID from the tunnel's counter, never a constant: as
        // ip_tunnel's __ip_select_ident, one per segment the packet will
        // be cut into (here at most len / gso_size + 1), which the kernel's
        // segmentation then numbers on.
        a.ldx(W, R1, R6, SKB_GSO_SIZE);
        a.mov(R2, 1);
        a.jmp(JEQ, R1, 0, one_seg);
        a.mov_reg(R2, R7);
        a.alu_reg(DIV, R2, R1);
        a.add(R2, 1);
        a.bind(one_seg);
        a.atomic_fetch_add(R9, IDS_AT, R2);
        a.add(R2, i32::from(e.id_base));
        a.be16(R2);
        a.stx(H16, R10, HDR + 4, R2);
        // The header checksum.
        ipv4_sum(&mut a, HDR);
        a.alu(XOR, R0, 0xffff);
        a.stx(H16, R10, HDR + 10, R0);
    }
    // Room after the device's header (none on TUN), marked as GRE in IPv4
    // or IPv6 (carrying Ethernet on TAP) so that segmentation works.
    let l3 = if outer6 {
        ADJ_ENCAP_L3_IPV6
    } else {
        ADJ_ENCAP_L3_IPV4
    };
    a.mov_reg(R1, R6);
    a.mov(R2, room);
    a.mov(R3, ADJ_ROOM_MAC);
    if e.l2 {
        a.mov(R4, ETH_LEN);
        a.alu(LSH, R4, 56);
        a.alu(
            OR,
            R4,
            ADJ_FIXED_GSO | l3 | ADJ_ENCAP_L4_GRE | ADJ_ENCAP_L2_ETH,
        );
    } else {
        a.mov(R4, ADJ_FIXED_GSO | l3 | ADJ_ENCAP_L4_GRE);
    }
    a.call(SKB_ADJUST_ROOM);
    a.jmp(JNE, R0, 0, pass);
    if e.l2 {
        // [Ethernet, zeroed for the neighbour table to fill][outer IPv4,
        // GRE][the frame's own Ethernet header][its IP packet]
        a.st(DW, R10, ZERO, 0);
        a.st(DW, R10, ZERO + 8, 0);
        store(&mut a, 0, ZERO, ETH_LEN, 0, drop);
        store(&mut a, ETH_LEN, hdr, hl, 0, drop);
        store(&mut a, ETH_LEN + hl, INNER, ETH_LEN, 0, drop);
    } else {
        store(&mut a, 0, hdr, hl, 0, drop);
    }
    count(&mut a, R9, 0, R7);
    if !e.l2 {
        // bpf_redirect_neigh takes the packet as from an Ethernet device:
        // room for a header it then replaces.
        a.mov_reg(R1, R6);
        a.mov(R2, ETH_LEN);
        a.mov(R3, 0);
        a.call(SKB_CHANGE_HEAD);
        a.jmp(JNE, R0, 0, drop);
    }
    a.mov(R1, e.out_ifindex as i32);
    a.mov(R2, 0);
    a.mov(R3, 0);
    a.mov(R4, 0);
    a.call(REDIRECT_NEIGH);
    a.exit();
    verdicts(a, pass, drop)
}

/// Ends a program: `next` passes the packet on (to the next program, or the
/// stack), `drop` drops it.
fn verdicts(mut a: Asm, next: Label, drop: Label) -> Vec<Insn> {
    a.bind(next);
    a.mov(R0, TCX_NEXT);
    a.exit();
    a.bind(drop);
    a.mov(R0, TCX_DROP);
    a.exit();
    a.finish()
}

/// Emits the end of a receive program's parse: the payload type (IPv4 or
/// IPv6 for gre, Ethernet for gretap: tag bit 1) at `fp + proto`, then the
/// table lookup with the key at `fp + key` and the tag in R4. Leaves the
/// device in R8, the tunnel in R9, the decap flags in R7, the payload's
/// family in IN_FAMILY and, in EXTRA, the inner Ethernet header's length
/// to remove as well; jumps to `next` for anything else.
fn dispatch(a: &mut Asm, proto: i16, key: i16, table: RawFd, next: Label) {
    let (known, teb) = (a.label(), a.label());
    a.st(DW, R10, EXTRA, 0);
    a.ldx(H16, R1, R10, proto);
    a.st(DW, R10, IN_FAMILY, 4);
    a.mov(R7, ADJ_FIXED_GSO | ADJ_DECAP_L3_IPV4 | ADJ_DECAP_L4_GRE);
    a.jmp(JEQ, R1, be16(0x0800), known);
    a.st(DW, R10, IN_FAMILY, 6);
    a.mov(R7, ADJ_FIXED_GSO | ADJ_DECAP_L3_IPV6 | ADJ_DECAP_L4_GRE);
    a.jmp(JEQ, R1, be16(0x86dd), known);
    a.jmp(JEQ, R1, be16(0x6558), teb);
    a.ja(next);
    a.bind(teb);
    a.st(DW, R10, IN_FAMILY, 0);
    a.mov(R7, ADJ_FIXED_GSO | ADJ_DECAP_L4_GRE);
    a.alu(OR, R4, 2);
    a.st(DW, R10, EXTRA, ETH_LEN);
    a.bind(known);
    a.stx(W, R10, key, R4);
    a.ld_map(R1, table);
    a.mov_reg(R2, R10);
    a.add(R2, key as i32);
    a.call(MAP_LOOKUP_ELEM);
    a.jmp64(JEQ, R0, 0, next);
    a.ldx(W, R8, R0, 0);
    a.ldx(W, R9, R0, 4);
}

/// Emits the GRE header check at `fp + gre`: version 0, nothing but an
/// optional key. Leaves the key in R2, the outer headers' length (`outer`
/// plus GRE) in SAVED, the tag (namespace `slot`, key flag) in R4.
fn gre_flags(a: &mut Asm, gre: i16, outer: i32, slot: u32, next: Label) {
    let no_key = a.label();
    a.ldx(H16, R1, R10, gre);
    a.mov(R2, 0);
    a.mov(R3, outer + 4);
    a.mov(R4, (slot << 2) as i32);
    a.jmp(JEQ, R1, 0, no_key);
    a.jmp(JNE, R1, be16(0x2000), next);
    a.ldx(W, R2, R10, gre + 4);
    a.mov(R3, outer + 8);
    a.alu(OR, R4, 1);
    a.bind(no_key);
    a.stx(DW, R10, SAVED, R3);
}

/// Emits RFC 6040's decapsulation, as ip_tunnel_rcv does it, for the
/// packet of a found tunnel (before its outer headers go): outer CE marks
/// an ECN-capable inner packet CE, outer ECT(1) makes an inner ECT(0)
/// ECT(1), anything else leaves it as it is; CE over a Not-ECT packet goes
/// to `next`, for userspace to drop and count. The inner packet is IP by
/// the GRE type, or by the Ethernet type of an untagged gretap frame.
fn ecn_decap(a: &mut Asm, next: Label, done: Label) {
    let [known, v4, ect1, mark, mark4, write] = a.labels();
    a.ldx(DW, R1, R10, OUTER_ECN);
    a.jmp(JEQ, R1, 0, done);
    a.jmp(JEQ, R1, 2, done);
    a.ldx(DW, R3, R10, IN_FAMILY);
    a.jmp(JNE, R3, 0, known);
    a.ldx(H16, R1, R10, INNER + 12);
    a.mov(R3, 4);
    a.jmp(JEQ, R1, be16(0x0800), known);
    a.mov(R3, 6);
    a.jmp(JEQ, R1, be16(0x86dd), known);
    a.ja(done);
    a.bind(known);
    a.stx(DW, R10, IN_FAMILY, R3);
    a.ldx(DW, R2, R10, SAVED);
    a.ldx(DW, R1, R10, EXTRA);
    a.alu_reg(ADD, R2, R1);
    a.add(R2, ETH_LEN);
    a.stx(DW, R10, IN_AT, R2);
    load_bytes_at_r2(a, IN_IP, 12, next);
    // The inner ECN field to R5: IPv4's TOS bits 0-1, IPv6's traffic
    // class bits 0-1 (byte 1, bits 4-5).
    a.ldx(B, R4, R10, IN_IP + 1);
    a.ldx(DW, R3, R10, IN_FAMILY);
    a.mov_reg(R5, R4);
    a.jmp(JEQ, R3, 4, v4);
    a.alu(RSH, R5, 4);
    a.bind(v4);
    a.alu(AND, R5, 3);
    a.ldx(DW, R1, R10, OUTER_ECN);
    a.jmp(JNE, R1, 3, ect1);
    a.jmp(JEQ, R5, 0, next);
    a.jmp(JEQ, R5, 3, done);
    a.mov(R5, 3);
    a.ja(mark);
    a.bind(ect1);
    a.jmp(JNE, R5, 2, done);
    a.mov(R5, 1);
    a.bind(mark);
    a.jmp(JEQ, R3, 4, mark4);
    a.alu(AND, R4, 0xcf);
    a.alu(LSH, R5, 4);
    a.alu_reg(OR, R4, R5);
    a.stx(B, R10, IN_IP + 1, R4);
    a.ja(write);
    // IPv4: the new TOS, and the checksum updated for it (RFC 1624:
    // HC' = ~(~HC + ~m + m')).
    a.bind(mark4);
    a.ldx(H16, R1, R10, IN_IP);
    a.alu(AND, R4, 0xfc);
    a.alu_reg(OR, R4, R5);
    a.stx(B, R10, IN_IP + 1, R4);
    a.ldx(H16, R2, R10, IN_IP);
    a.ldx(H16, R3, R10, IN_IP + 10);
    a.alu(XOR, R3, 0xffff);
    a.alu(XOR, R1, 0xffff);
    a.alu_reg(ADD, R3, R1);
    a.alu_reg(ADD, R3, R2);
    fold(a, R3, R1);
    a.alu(XOR, R3, 0xffff);
    a.stx(H16, R10, IN_IP + 10, R3);
    a.bind(write);
    a.ldx(DW, R2, R10, IN_AT);
    store_at_r2(a, IN_IP, 12, F_RECOMPUTE_CSUM, next);
}

/// The receive program of one namespace: its tunnels are in `tables` (for
/// IPv4 and IPv6 underlays). It takes only what ip_gre would take (and
/// of that, what it can carry); the rest passes on to the stack, and so to
/// the userspace path, which counts its drops.
fn decap_program(slot: u32, tables: [RawFd; 2], counters: RawFd) -> Vec<Insn> {
    // The Ethernet type, the outer IPv4 header and up to 8 bytes of GRE,
    // from H + 2 so that the IPv4 header is 4-aligned on the stack.
    const H: i16 = HDR;
    let mut a = Asm::default();
    let [next, drop, v6, tunnel, found, decap, l3, done] = a.labels();
    a.mov_reg(R6, R1);
    // As the stack: frames for this host's MAC only (not PACKET_OTHERHOST,
    // nor broadcast or multicast), and untagged: no tag taken off by the
    // device (vlan_present), none in the frame (its EtherType would be
    // 802.1Q or 802.1ad, not IP: passed on below).
    a.ldx(W, R1, R6, SKB_PKT_TYPE);
    a.jmp(JNE, R1, PACKET_HOST, next);
    a.ldx(W, R1, R6, SKB_VLAN_PRESENT);
    a.jmp(JNE, R1, 0, next);
    // The inner Ethernet type, read by ecn_decap on gretap only: defined
    // for the verifier on every path.
    a.st(DW, R10, INNER + 8, 0);
    load_bytes(&mut a, 12, H + 2, 30, next);
    a.ldx(H16, R1, R10, H + 2);
    a.jmp(JEQ, R1, be16(0x86dd), v6);
    a.jmp(JNE, R1, be16(0x0800), next);
    // IPv4 without options, not a fragment, GRE; its ECN field kept.
    a.ldx(B, R1, R10, H + 4);
    a.jmp(JNE, R1, 0x45, next);
    a.ldx(B, R1, R10, H + 5);
    a.alu(AND, R1, 3);
    a.stx(DW, R10, OUTER_ECN, R1);
    a.ldx(H16, R1, R10, H + 10);
    a.alu(AND, R1, be16(0x3fff));
    a.jmp(JNE, R1, 0, next);
    a.ldx(B, R1, R10, H + 13);
    a.jmp(JNE, R1, 47, next);
    // The frame holds exactly the IP packet (no padding to trim).
    a.ldx(H16, R1, R10, H + 6);
    a.be16(R1);
    a.add(R1, ETH_LEN);
    a.ldx(W, R2, R6, SKB_LEN);
    a.jmp_reg(JNE, R2, R1, next);
    // A valid header checksum, as ip_rcv wants.
    ipv4_sum(&mut a, H + 4);
    a.jmp(JNE, R0, 0xffff, next);
    gre_flags(&mut a, H + 24, 20, slot, next);
    a.ldx(W, R1, R10, H + 20);
    a.stx(W, R10, LOOKUP + 4, R1);
    a.ldx(W, R1, R10, H + 16);
    a.stx(W, R10, LOOKUP + 8, R1);
    a.stx(W, R10, LOOKUP + 12, R2);
    dispatch(&mut a, H + 26, LOOKUP, tables[0], next);
    a.ja(tunnel);

    // IPv6 without extension headers, exactly the frame; its ECN field kept.
    a.bind(v6);
    load_bytes(&mut a, ETH_LEN, H6, 48, next);
    a.ldx(B, R1, R10, H6);
    a.alu(RSH, R1, 4);
    a.jmp(JNE, R1, 6, next);
    a.ldx(B, R1, R10, H6 + 1);
    a.alu(RSH, R1, 4);
    a.alu(AND, R1, 3);
    a.stx(DW, R10, OUTER_ECN, R1);
    a.ldx(B, R1, R10, H6 + 6);
    a.jmp(JNE, R1, 47, next);
    a.ldx(H16, R1, R10, H6 + 4);
    a.be16(R1);
    a.add(R1, 40 + ETH_LEN);
    a.ldx(W, R2, R6, SKB_LEN);
    a.jmp_reg(JNE, R2, R1, next);
    gre_flags(&mut a, H6 + 40, 40, slot, next);
    // The key: tag, local (the destination), remote (the source), GRE key.
    for i in 0..4 {
        a.ldx(W, R1, R10, H6 + 24 + 4 * i);
        a.stx(W, R10, LOOKUP6 + 4 + 4 * i, R1);
        a.ldx(W, R1, R10, H6 + 8 + 4 * i);
        a.stx(W, R10, LOOKUP6 + 20 + 4 * i, R1);
    }
    a.stx(W, R10, LOOKUP6 + 36, R2);
    dispatch(&mut a, H6 + 42, LOOKUP6, tables[1], next);

    a.bind(tunnel);
    // gretap: the inner Ethernet header, to put back in front afterwards.
    a.ldx(DW, R1, R10, EXTRA);
    a.jmp(JEQ, R1, 0, found);
    a.ldx(DW, R2, R10, SAVED);
    a.add(R2, ETH_LEN);
    load_bytes_at_r2(&mut a, INNER, ETH_LEN, next);
    a.bind(found);
    ecn_decap(&mut a, next, decap);
    a.bind(decap);
    // Off with the outer headers (and the inner Ethernet header, put back
    // over the outer one below); kernels before the GRE decap flag (Linux
    // 6.17) take the call without it.
    for retry in [false, true] {
        a.mov_reg(R1, R6);
        a.ldx(DW, R2, R10, SAVED);
        a.ldx(DW, R3, R10, EXTRA);
        a.alu_reg(ADD, R2, R3);
        a.neg(R2);
        a.mov(R3, ADJ_ROOM_MAC);
        a.mov_reg(R4, R7);
        if retry {
            a.alu(AND, R4, !ADJ_DECAP_L4_GRE);
        }
        a.call(SKB_ADJUST_ROOM);
        a.jmp(JEQ, R0, 0, done);
    }
    a.ja(next);
    a.bind(done);
    a.ldx(DW, R1, R10, EXTRA);
    a.jmp(JEQ, R1, 0, l3);
    store(&mut a, 0, INNER, ETH_LEN, F_RECOMPUTE_CSUM, drop);
    a.bind(l3);
    a.ldx(W, R7, R6, SKB_LEN);
    a.add(R7, -ETH_LEN);
    a.ldx(DW, R1, R10, EXTRA);
    a.alu_reg(ADD, R7, R1);
    a.stx(W, R10, KEY, R9);
    let uncounted = a.label();
    counters_entry(&mut a, counters, uncounted);
    count(&mut a, R0, 16, R7);
    a.bind(uncounted);
    a.mov_reg(R1, R8);
    a.mov(R2, F_INGRESS);
    a.call(REDIRECT);
    a.exit();
    verdicts(a, next, drop)
}

// ---- A small eBPF assembler ----

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// Classes, sizes, modes and operations (include/uapi/linux/bpf_common.h).
const CLS_LD: u8 = 0x00;
const CLS_LDX: u8 = 0x01;
const CLS_ST: u8 = 0x02;
const CLS_STX: u8 = 0x03;
const CLS_ALU: u8 = 0x04;
const CLS_JMP: u8 = 0x05;
const CLS_JMP32: u8 = 0x06;
const CLS_ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H16: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_ATOMIC: u8 = 0xc0;
const SRC_X: u8 = 0x08;
const ADD: u8 = 0x00;
const OR: u8 = 0x40;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const NEG: u8 = 0x80;
const DIV: u8 = 0x30;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const FETCH: i32 = 0x01;
const PSEUDO_MAP_FD: u8 = 1;

/// One instruction, as `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

#[derive(Clone, Copy)]
struct Label(usize);

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        });
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn labels<const N: usize>(&mut self) -> [Label; N] {
        std::array::from_fn(|_| self.label())
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    fn mov(&mut self, dst: u8, imm: i32) {
        self.emit(CLS_ALU64 | MOV, dst, 0, 0, imm);
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.emit(CLS_ALU64 | MOV | SRC_X, dst, src, 0, 0);
    }
    /// 32-bit move: zero-extends.
    fn mov32_reg(&mut self, dst: u8, src: u8) {
        self.emit(CLS_ALU | MOV | SRC_X, dst, src, 0, 0);
    }
    fn add(&mut self, dst: u8, imm: i32) {
        self.alu(ADD, dst, imm);
    }
    fn alu(&mut self, op: u8, dst: u8, imm: i32) {
        self.emit(CLS_ALU64 | op, dst, 0, 0, imm);
    }
    fn alu_reg(&mut self, op: u8, dst: u8, src: u8) {
        self.emit(CLS_ALU64 | op | SRC_X, dst, src, 0, 0);
    }
    fn neg(&mut self, dst: u8) {
        self.emit(CLS_ALU64 | NEG, dst, 0, 0, 0);
    }
    /// Host order to big-endian, 16 bits (zero-extended).
    fn be16(&mut self, dst: u8) {
        self.emit(CLS_ALU | END | TO_BE, dst, 0, 0, 16);
    }
    fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(CLS_LDX | MODE_MEM | size, dst, src, off, 0);
    }
    fn stx(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.emit(CLS_STX | MODE_MEM | size, dst, src, off, 0);
    }
    fn st(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.emit(CLS_ST | MODE_MEM | size, dst, 0, off, imm);
    }
    fn atomic_add(&mut self, dst: u8, off: i16, src: u8) {
        self.emit(CLS_STX | MODE_ATOMIC | DW, dst, src, off, i32::from(ADD));
    }
    /// Atomically adds `src` to the 64-bit word at `dst + off`; `src`
    /// gets the word's old value.
    fn atomic_fetch_add(&mut self, dst: u8, off: i16, src: u8) {
        self.emit(
            CLS_STX | MODE_ATOMIC | DW,
            dst,
            src,
            off,
            i32::from(ADD) | FETCH,
        );
    }
    fn ld_map(&mut self, dst: u8, fd: RawFd) {
        self.emit(CLS_LD | MODE_IMM | DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.emit(0, 0, 0, 0, 0);
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.emit(code, dst, src, 0, imm);
    }
    /// 32-bit compare with an immediate (addresses and keys are u32).
    fn jmp(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.jump(CLS_JMP32 | op, dst, 0, imm, to);
    }
    fn jmp64(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.jump(CLS_JMP | op, dst, 0, imm, to);
    }
    fn jmp_reg(&mut self, op: u8, dst: u8, src: u8, to: Label) {
        self.jump(CLS_JMP | op | SRC_X, dst, src, 0, to);
    }
    fn ja(&mut self, to: Label) {
        self.jump(CLS_JMP | JA, 0, 0, 0, to);
    }
    fn call(&mut self, helper: i32) {
        self.emit(CLS_JMP | CALL, 0, 0, 0, helper);
    }
    fn exit(&mut self) {
        self.emit(CLS_JMP | EXIT, 0, 0, 0, 0);
    }
    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.jumps {
            let target = self.labels[to.0].expect("every label used is bound");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

// ---- The bpf(2) system call ----

const CMD_MAP_CREATE: u32 = 0;
const CMD_MAP_LOOKUP_ELEM: u32 = 1;
const CMD_MAP_UPDATE_ELEM: u32 = 2;
const CMD_MAP_DELETE_ELEM: u32 = 3;
const CMD_PROG_LOAD: u32 = 5;
const CMD_LINK_CREATE: u32 = 28;
const PROG_SCHED_CLS: u32 = 3;
const ATTACH_TCX_INGRESS: u32 = 46;
const ATTACH_TCX_EGRESS: u32 = 47;

/// `union bpf_attr`, filled field by field at the kernel's offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn ptr<T>(&mut self, at: usize, p: *const T) -> &mut Attr {
        self.u64(at, p as usize as u64)
    }

    /// bpf(`cmd`, self).
    ///
    /// # Safety
    /// Every pointer in the attribute that command `cmd` uses must point at
    /// memory valid for as many bytes as the kernel reads there (and, for
    /// the ones it writes through, writes), for the duration of the call.
    unsafe fn call(&mut self, cmd: u32) -> io::Result<i64> {
        // SAFETY: the attribute buffer is valid for its length; the caller
        // vouches for the pointers in it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                self.0.len() as libc::c_uint,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// `call` for a command that returns a new descriptor.
    ///
    /// # Safety
    /// As for `call`; and `cmd` must be a command whose result is a new
    /// file descriptor the caller then owns.
    unsafe fn call_fd(&mut self, cmd: u32) -> io::Result<OwnedFd> {
        // SAFETY: the caller's promise, passed on.
        let fd = unsafe { self.call(cmd) }?;
        // SAFETY: `cmd` returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// The kinds of map used here; none is per-CPU, so a value is `V` bytes.
#[derive(Clone, Copy)]
enum MapKind {
    Hash = 1,
    Array = 2,
}

/// A map created with `K`-byte keys and `V`-byte values: its calls can only
/// pass buffers of exactly the sizes the kernel reads and writes.
struct Map<const K: usize, const V: usize>(OwnedFd);

impl<const K: usize, const V: usize> Map<K, V> {
    fn new(kind: MapKind, entries: u32) -> io::Result<Self> {
        let mut a = Attr::new();
        a.u32(0, kind as u32)
            .u32(4, K as u32)
            .u32(8, V as u32)
            .u32(12, entries);
        // SAFETY: map creation reads no pointer and returns a new descriptor.
        unsafe { a.call_fd(CMD_MAP_CREATE) }.map(Map)
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn update(&self, key: &[u8; K], value: &[u8; V]) -> io::Result<()> {
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .ptr(8, key.as_ptr())
            .ptr(16, value.as_ptr());
        // SAFETY: the kernel reads K bytes of key and V of value, this
        // map's sizes, from buffers of those lengths that outlive the call.
        unsafe { a.call(CMD_MAP_UPDATE_ELEM) }.map(drop)
    }

    fn lookup(&self, key: &[u8; K]) -> io::Result<[u8; V]> {
        let mut value = [0u8; V];
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .ptr(8, key.as_ptr())
            .ptr(16, value.as_mut_ptr());
        // SAFETY: the kernel reads K bytes of key and writes V of value
        // (not per-CPU: MapKind has none) into buffers of those lengths.
        unsafe { a.call(CMD_MAP_LOOKUP_ELEM) }.map(|_| value)
    }

    fn delete(&self, key: &[u8; K]) -> io::Result<()> {
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32).ptr(8, key.as_ptr());
        // SAFETY: the kernel reads K bytes of key, this map's key size.
        unsafe { a.call(CMD_MAP_DELETE_ELEM) }.map(drop)
    }
}

/// Loads a tc program; on refusal, loads it again for the verifier's log.
fn load(code: &[Insn], name: &str) -> Result<OwnedFd> {
    let raw: Vec<u64> = code
        .iter()
        .map(|i| {
            u64::from(i.code)
                | (u64::from(i.regs) << 8)
                | (u64::from(i.off as u16) << 16)
                | (u64::from(i.imm as u32) << 32)
        })
        .collect();
    // GPL-compatible, as the kernel's tc helpers require.
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let mut log = vec![0u8; 0];
    let attempt = |log: &mut Vec<u8>| {
        let mut a = Attr::new();
        // The kernel reads `raw.len()` instructions, the license up to its
        // NUL, and writes up to `log.len()` bytes of log.
        a.u32(0, PROG_SCHED_CLS)
            .u32(4, raw.len() as u32)
            .ptr(8, raw.as_ptr())
            .ptr(16, license.as_ptr());
        if !log.is_empty() {
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .ptr(32, log.as_mut_ptr());
        }
        a.0[48..64].copy_from_slice(&prog_name);
        // SAFETY: every pointer above points at a buffer of the length
        // given beside it (the license is NUL-terminated), all outliving
        // the call; a loaded program is a new descriptor.
        unsafe { a.call_fd(CMD_PROG_LOAD) }
    };
    match attempt(&mut log) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            log = vec![0u8; 1 << 16];
            let _ = attempt(&mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            Err(anyhow!(
                "loading the eBPF program `{name}`: {e}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (verifier: {})",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    )
                }
            ))
        }
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32, attach: u32) -> Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, attach);
    // SAFETY: a link is made of descriptors and numbers, no pointer; it is
    // a new descriptor.
    unsafe { a.call_fd(CMD_LINK_CREATE) }.with_context(|| {
        format!(
            "attaching to the tc {} hook of interface {ifindex} (TCX needs Linux 6.6 or later)",
            if attach == ATTACH_TCX_INGRESS {
                "ingress"
            } else {
                "egress"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn encap() -> Encap {
        Encap {
            index: 3,
            local: v4([172, 16, 10, 2]),
            remote: v4([152, 16, 10, 2]),
            key: None,
            ttl: 255,
            tos: 0,
            df: true,
            l2: false,
            out_ifindex: 7,
            id_base: 0,
        }
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        let l = a.label();
        a.jmp(JEQ, R1, 0, l);
        a.mov(R0, 1);
        a.mov(R0, 2);
        a.bind(l);
        a.exit();
        let code = a.finish();
        assert_eq!(code[0].off, 2);
        assert_eq!(code[3].code, CLS_JMP | EXIT);
    }

    #[test]
    fn registers_are_packed_as_the_kernel_reads_them() {
        let mut a = Asm::default();
        a.stx(W, R10, -4, R3);
        let i = a.finish()[0];
        assert_eq!(i.regs, 0x3a, "src in the high nibble, dst in the low");
        assert_eq!(i.code, 0x63);
    }

    #[test]
    fn every_program_ends_in_exit_and_every_jump_stays_inside() {
        for code in [
            encap_program(&encap(), 5),
            encap_program(
                &Encap {
                    key: Some(42),
                    ttl: 0,
                    tos: 1,
                    ..encap()
                },
                5,
            ),
            encap_program(
                &Encap {
                    l2: true,
                    ..encap()
                },
                5,
            ),
            decap_program(2, [6, 8], 5),
        ] {
            assert_eq!(code.last().map(|i| i.code), Some(CLS_JMP | EXIT));
            for (at, i) in code.iter().enumerate() {
                let class = i.code & 7;
                let op = i.code & 0xf0;
                if (class == CLS_JMP || class == CLS_JMP32) && op != CALL && op != EXIT {
                    let to = at as isize + 1 + i.off as isize;
                    assert!(
                        (0..code.len() as isize).contains(&to),
                        "jump at {at} to {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_are_big_endian_and_tagged() {
        let k: [u8; 16] = route_key(
            5,
            v4([1, 2, 3, 4]),
            v4([5, 6, 7, 8]),
            Some(0x0102_0304),
            true,
        )
        .unwrap();
        assert_eq!(&k[..4], &23u32.to_ne_bytes());
        assert_eq!(&k[4..8], &[1, 2, 3, 4]);
        assert_eq!(&k[8..12], &[5, 6, 7, 8]);
        assert_eq!(&k[12..], &[1, 2, 3, 4]);
        let unkeyed: [u8; 16] =
            route_key(5, v4([1, 2, 3, 4]), v4([5, 6, 7, 8]), None, false).unwrap();
        assert_eq!(&unkeyed[..4], &20u32.to_ne_bytes());
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let k6: [u8; 40] = route_key(1, IpAddr::V6(a), IpAddr::V6(b), Some(9), false).unwrap();
        assert_eq!(
            (&k6[4..20], &k6[20..36]),
            (&a.octets()[..], &b.octets()[..])
        );
        assert_eq!(&k6[36..], &9u32.to_be_bytes());
        assert!(
            route_key::<16>(1, IpAddr::V6(a), IpAddr::V6(b), None, false).is_none(),
            "IPv6 addresses make no IPv4 table key"
        );
        assert!(
            route_key::<40>(1, IpAddr::V6(a), v4([1, 2, 3, 4]), None, false).is_none(),
            "nor mixed ones an IPv6 key"
        );
    }

    /// Needs root: the kernel's verifier is the judge.
    #[test]
    fn programs_pass_the_verifier() {
        let fp = FastPath::new(4).expect("eBPF maps");
        for e in [
            encap(),
            Encap {
                key: Some(42),
                ttl: 0,
                tos: 1,
                df: false,
                ..encap()
            },
            Encap {
                l2: true,
                key: Some(7),
                ..encap()
            },
            Encap {
                local: "fd00:a::2".parse().unwrap(),
                remote: "fd00:b::2".parse().unwrap(),
                ..encap()
            },
            Encap {
                local: "fd00:a::2".parse().unwrap(),
                remote: "fd00:b::2".parse().unwrap(),
                l2: true,
                key: Some(7),
                ..encap()
            },
        ] {
            load(&encap_program(&e, fp.counters.fd()), "t_encap").expect("encap loads");
        }
        load(
            &decap_program(1, [fp.table.fd(), fp.table6.fd()], fp.counters.fd()),
            "t_decap",
        )
        .expect("decap loads");
        let mut end = TunnelEnd {
            name: "t".into(),
            netns: "n".into(),
            kind: crate::plan::TunnelKind::Gre,
            local: v4([10, 0, 0, 1]),
            remote: v4([10, 0, 0, 2]),
            ttl: 0,
            tos: 0,
            ikey: None,
            okey: None,
            checksum: false,
            sequence: false,
            pmtudisc: true,
            mtu: 1476,
        };
        fp.add_route(1, &end, 9, 2).expect("route");
        (end.kind, end.ikey) = (crate::plan::TunnelKind::Ip6gretap, Some(3));
        (end.local, end.remote) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        fp.add_route(1, &end, 9, 3).expect("IPv6 route");
        assert_eq!(fp.counters(2).expect("counters"), Counters::default());
        fp.remove_route(1, &end).expect("removing the IPv6 route");
        fp.remove_route(1, &end)
            .expect("removing it again: nothing to do");
        end.remote = "10.0.0.2".parse().unwrap();
        assert!(fp.add_route(1, &end, 9, 3).is_err(), "mixed families");
    }
}
