//! The ingress program: known GRE loses its outer headers, ECN per RFC 6040.

use std::os::fd::RawFd;

use super::*;

/// Emits the GRE header check at `fp + gre`: version 0, nothing but an
/// optional key. Leaves the key in R2, the outer headers' length (`outer`
/// plus GRE) in SAVED, the tag (namespace `slot`, key flag) in R4.
pub(crate) fn gre_flags(a: &mut Asm, gre: i16, outer: i32, slot: u32, next: Label) {
    let no_key = a.label();
    a.ldx(H16, R1, R10, gre);
    a.mov(R2, 0);
    a.mov(R3, outer + 4);
    a.mov(R4, (slot << TAG_SLOT_SHIFT) as i32);
    a.jmp(JEQ, R1, 0, no_key);
    a.jmp(JNE, R1, be16(0x2000), next);
    a.ldx(W, R2, R10, gre + 4);
    a.mov(R3, outer + 8);
    a.alu(OR, R4, TAG_KEYED as i32);
    a.bind(no_key);
    a.stx(DW, R10, SAVED, R3);
}

/// Emits RFC 6040's decapsulation, as ip_tunnel_rcv does it, for the
/// packet of a found tunnel (before its outer headers go): outer CE marks
/// an ECN-capable inner packet CE, outer ECT(1) makes an inner ECT(0)
/// ECT(1), anything else leaves it as it is; CE over a Not-ECT packet goes
/// to `next`, for userspace to drop and count. The inner packet is IP by
/// the GRE type, or by the Ethernet type of an untagged gretap frame.
pub(crate) fn ecn_decap(a: &mut Asm, next: Label, done: Label) {
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
pub(crate) fn decap_program(slot: u32, tables: [RawFd; 2], counters: RawFd) -> Vec<Insn> {
    // The Ethernet type, the outer IPv4 header and up to 8 bytes of GRE,
    // from H + 2 so that the IPv4 header is 4-aligned on the stack.
    const H: i16 = HDR;
    let mut a = Asm::default();
    let [next, drop, v6, tunnel] = a.labels();
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
    a.stx(W, R10, LOOKUP + KEY4_LOCAL, R1);
    a.ldx(W, R1, R10, H + 16);
    a.stx(W, R10, LOOKUP + KEY4_REMOTE, R1);
    a.stx(W, R10, LOOKUP + KEY4_KEY, R2);
    dispatch(&mut a, H + 26, LOOKUP, tables[0], next);
    a.ja(tunnel);

    a.bind(v6);
    parse_ipv6(&mut a, slot, tables[1], next);

    a.bind(tunnel);
    deliver(&mut a, counters, next, drop);
    verdicts(a, next, drop)
}

/// The IPv6 half of the receive program's parse: the outer header, GRE,
/// and the lookup in `table`.
fn parse_ipv6(a: &mut Asm, slot: u32, table: RawFd, next: Label) {
    // IPv6 without extension headers, exactly the frame; its ECN field kept.
    load_bytes(a, ETH_LEN, H6, 48, next);
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
    gre_flags(a, H6 + 40, 40, slot, next);
    // The key: tag, local (the destination), remote (the source), GRE key.
    for i in 0..4 {
        a.ldx(W, R1, R10, H6 + 24 + 4 * i);
        a.stx(W, R10, LOOKUP6 + KEY6_LOCAL + 4 * i, R1);
        a.ldx(W, R1, R10, H6 + 8 + 4 * i);
        a.stx(W, R10, LOOKUP6 + KEY6_REMOTE + 4 * i, R1);
    }
    a.stx(W, R10, LOOKUP6 + KEY6_KEY, R2);
    dispatch(a, H6 + 42, LOOKUP6, table, next);
}

/// The receive program's end for a known tunnel: ECN, off with the outer
/// headers, counted, and to the tunnel's device.
fn deliver(a: &mut Asm, counters: RawFd, next: Label, drop: Label) {
    let [found, decap, l3, done] = a.labels();
    // gretap: the inner Ethernet header, to put back in front afterwards.
    a.ldx(DW, R1, R10, EXTRA);
    a.jmp(JEQ, R1, 0, found);
    a.ldx(DW, R2, R10, SAVED);
    a.add(R2, ETH_LEN);
    load_bytes_at_r2(a, INNER, ETH_LEN, next);
    a.bind(found);
    ecn_decap(a, next, decap);
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
    store(a, 0, INNER, ETH_LEN, F_RECOMPUTE_CSUM, drop);
    a.bind(l3);
    a.ldx(W, R7, R6, SKB_LEN);
    a.add(R7, -ETH_LEN);
    a.ldx(DW, R1, R10, EXTRA);
    a.alu_reg(ADD, R7, R1);
    a.stx(W, R10, KEY, R9);
    let uncounted = a.label();
    counters_entry(a, counters, uncounted);
    count(a, R0, RX_PACKETS, RX_BYTES, R7);
    a.bind(uncounted);
    a.mov_reg(R1, R8);
    a.mov(R2, F_INGRESS);
    a.call(REDIRECT);
    a.exit();
}
