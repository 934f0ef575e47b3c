//! The egress program: GRE and outer headers in front of a tunnel's packets.

use std::os::fd::RawFd;

use super::*;
use crate::dataplane::fastpath::Encap;

/// Where the egress program of an `Encap` puts things.
struct Layout {
    outer6: bool,
    gre_len: i32,
    /// The outer IP and GRE headers' length, and where they are built.
    hl: i32,
    hdr: i16,
    /// Inner bytes before the IP header, room added in front, and where
    /// the inner IP header is on the stack.
    ip_at: i32,
    room: i32,
    ip: i16,
}

impl Layout {
    fn of(e: &Encap) -> Layout {
        let outer6 = e.local.is_ipv6();
        let hl = e.header_len();
        let ip_at = if e.l2 { ETH_LEN } else { 0 };
        Layout {
            outer6,
            gre_len: if e.key.is_some() { 8 } else { 4 },
            hl,
            hdr: if outer6 { HDR6 } else { HDR },
            ip_at,
            room: hl + ip_at,
            ip: INNER + ip_at as i16,
        }
    }
}

/// The egress program of one tunnel: `gre` (an IP packet from a TUN
/// device) or `gretap` (an Ethernet frame from a TAP device, IP inside).
pub(crate) fn encap_program(e: &Encap, counters: RawFd) -> Vec<Insn> {
    let l = Layout::of(e);
    let mut a = Asm::default();
    let [pass, drop] = a.labels();
    a.mov_reg(R6, R1);
    a.ldx(W, R7, R6, SKB_LEN); // the inner packet or frame
    a.jmp(JGT, R7, 65535 - l.room, pass);
    load_bytes(&mut a, 0, INNER, l.ip_at + 12, pass);
    // The tunnel's counters, in R9 to the end.
    a.st(W, R10, KEY, e.index as i32);
    counters_entry(&mut a, counters, pass);
    a.mov_reg(R9, R0);
    inner_fields(&mut a, e, &l, pass);
    outer_tos_ttl(&mut a, e);
    outer_headers(&mut a, e, &l);
    if !l.outer6 {
        ipv4_id_and_sum(&mut a, e);
    }
    push_and_send(&mut a, e, &l, pass, drop);
    verdicts(a, pass, drop)
}

/// Reads the inner packet's TOS into R2, TTL into R3 and GRE protocol
/// into R4 (IP only: the rest to `pass`), and the outer IPv4 DF.
fn inner_fields(a: &mut Asm, e: &Encap, l: &Layout, pass: Label) {
    let [v4, v6, common] = a.labels();
    if e.l2 {
        // IP in Ethernet only (no VLAN tags, no ARP): the rest to userspace.
        a.ldx(H16, R8, R10, INNER + 12);
        a.jmp(JEQ, R8, be16(0x0800), v4);
        a.jmp(JEQ, R8, be16(0x86dd), v6);
        a.ja(pass);
    } else {
        a.ldx(B, R8, R10, l.ip);
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
    a.ldx(B, R2, R10, l.ip);
    a.alu(AND, R2, 0xf);
    a.alu(LSH, R2, 4);
    a.ldx(B, R3, R10, l.ip + 1);
    a.alu(RSH, R3, 4);
    a.alu_reg(OR, R2, R3);
    a.ldx(B, R3, R10, l.ip + 7);
    a.mov(R4, be16(0x86dd));
    if !l.outer6 {
        a.st(H16, R10, HDR + 6, df_always);
    }
    a.ja(common);
    a.bind(v4);
    a.ldx(B, R2, R10, l.ip + 1);
    a.ldx(B, R3, R10, l.ip + 8);
    a.mov(R4, be16(0x0800));
    if !l.outer6 {
        a.st(H16, R10, HDR + 6, df_always);
    }
    if !l.outer6 && !e.df {
        a.ldx(B, R1, R10, l.ip + 6);
        a.alu(AND, R1, 0x40);
        a.stx(B, R10, HDR + 6, R1);
    }
    a.bind(common);
    if e.l2 {
        a.mov(R4, be16(0x6558));
    }
}

/// The outer TOS into R2 and TTL into R3, from the inner ones.
fn outer_tos_ttl(a: &mut Asm, e: &Encap) {
    let [ecn_ok] = a.labels();
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
}

/// Builds the outer IP and GRE headers on the stack.
fn outer_headers(a: &mut Asm, e: &Encap, l: &Layout) {
    let gre_at = l.hdr + (l.hl - l.gre_len) as i16;
    if l.outer6 {
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
        a.add(R1, l.gre_len);
        a.be16(R1);
        a.stx(H16, R10, HDR6 + 4, R1);
        a.st(B, R10, HDR6 + 6, 47);
        a.stx(B, R10, HDR6 + 7, R3);
    } else {
        a.st(B, R10, HDR, 0x45);
        a.stx(B, R10, HDR + 1, R2);
        a.mov_reg(R1, R7);
        a.add(R1, l.hl);
        a.be16(R1);
        a.stx(H16, R10, HDR + 2, R1);
        a.stx(B, R10, HDR + 8, R3);
        a.st(B, R10, HDR + 9, 47);
        a.st(H16, R10, HDR + 10, 0);
    }
    let addrs_at = l.hdr + if l.outer6 { 8 } else { 12 };
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
}

/// The outer IPv4 header's ID and checksum.
fn ipv4_id_and_sum(a: &mut Asm, e: &Encap) {
    let [one_seg] = a.labels();
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
    a.atomic_fetch_add(R9, IPV4_IDS, R2);
    a.add(R2, i32::from(e.id_base));
    a.be16(R2);
    a.stx(H16, R10, HDR + 4, R2);
    // The header checksum.
    ipv4_sum(a, HDR);
    a.alu(XOR, R0, 0xffff);
    a.stx(H16, R10, HDR + 10, R0);
}

/// Makes room, writes the headers in and redirects the packet.
fn push_and_send(a: &mut Asm, e: &Encap, l: &Layout, pass: Label, drop: Label) {
    // Room after the device's header (none on TUN), marked as GRE in IPv4
    // or IPv6 (carrying Ethernet on TAP) so that segmentation works.
    let l3 = if l.outer6 {
        ADJ_ENCAP_L3_IPV6
    } else {
        ADJ_ENCAP_L3_IPV4
    };
    a.mov_reg(R1, R6);
    a.mov(R2, l.room);
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
        store(a, 0, ZERO, ETH_LEN, 0, drop);
        store(a, ETH_LEN, l.hdr, l.hl, 0, drop);
        store(a, ETH_LEN + l.hl, INNER, ETH_LEN, 0, drop);
    } else {
        store(a, 0, l.hdr, l.hl, 0, drop);
    }
    count(a, R9, TX_PACKETS, TX_BYTES, R7);
    if !e.l2 {
        // bpf_redirect_neigh takes the packet as from an Ethernet device:
        // l.room for a header it then replaces.
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
}
