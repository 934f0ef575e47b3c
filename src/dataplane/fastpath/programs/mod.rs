//! The fast path's two programs, built instruction by instruction: the
//! helpers, stack layout and pieces they share.

mod decap;
mod encap;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::os::fd::RawFd;

use super::asm::*;
use super::layout::*;
use super::octets;

pub(super) use decap::decap_program;
pub(super) use encap::encap_program;

// ---- The programs ----

// Helpers (include/uapi/linux/bpf.h).
pub(super) const MAP_LOOKUP_ELEM: i32 = 1;
pub(super) const SKB_STORE_BYTES: i32 = 9;
pub(super) const REDIRECT: i32 = 23;
pub(super) const SKB_LOAD_BYTES: i32 = 26;
pub(super) const CSUM_DIFF: i32 = 28;
pub(super) const SKB_CHANGE_HEAD: i32 = 43;
pub(super) const SKB_ADJUST_ROOM: i32 = 50;
pub(super) const REDIRECT_NEIGH: i32 = 152;

// Fields of `struct __sk_buff`.
pub(super) const SKB_LEN: i16 = 0;
pub(super) const SKB_PKT_TYPE: i16 = 4;
pub(super) const SKB_VLAN_PRESENT: i16 = 20;
pub(super) const SKB_GSO_SIZE: i16 = 176;
pub(super) const PACKET_HOST: i32 = 0;

// bpf_skb_adjust_room: room between the L2 and L3 headers, and flags.
pub(super) const ADJ_ROOM_MAC: i32 = 1;
pub(super) const ADJ_FIXED_GSO: i32 = 1 << 0;
pub(super) const ADJ_ENCAP_L3_IPV4: i32 = 1 << 1;
pub(super) const ADJ_ENCAP_L3_IPV6: i32 = 1 << 2;
pub(super) const ADJ_ENCAP_L4_GRE: i32 = 1 << 3;
pub(super) const ADJ_ENCAP_L2_ETH: i32 = 1 << 6;
pub(super) const ADJ_DECAP_L3_IPV4: i32 = 1 << 7;
pub(super) const ADJ_DECAP_L3_IPV6: i32 = 1 << 8;
pub(super) const ADJ_DECAP_L4_GRE: i32 = 1 << 9;

/// TCX verdicts: on to the next program (or the stack), drop.
pub(super) const TCX_NEXT: i32 = -1;
pub(super) const TCX_DROP: i32 = 2;
pub(super) const F_INGRESS: i32 = 1;

/// A 16-bit big-endian value as a little-endian load from the packet reads it.
pub(super) fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

pub(super) fn be32(v: u32) -> i32 {
    i32::from_ne_bytes(v.to_be_bytes())
}

/// An address as the words a little-endian store puts in network order.
pub(super) fn ne_words(a: IpAddr) -> Vec<i32> {
    octets(a)
        .chunks(4)
        .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// Adds 1 to the packets counter at `packets` and `bytes` to the one at
/// `bytes_at` of the entry `entry` points at.
pub(super) fn count(a: &mut Asm, entry: u8, packets: i16, bytes_at: i16, bytes: u8) {
    a.mov(R1, 1);
    a.atomic_add(entry, packets, R1);
    a.atomic_add(entry, bytes_at, bytes);
}

/// Looks up the counters of the tunnel whose index is at `fp + KEY`: the
/// entry in R0, or a jump to `none`.
pub(super) fn counters_entry(a: &mut Asm, counters: RawFd, none: Label) {
    a.ld_map(R1, counters);
    a.mov_reg(R2, R10);
    a.add(R2, KEY as i32);
    a.call(MAP_LOOKUP_ELEM);
    a.jmp64(JEQ, R0, 0, none);
}

/// Folds the one's-complement sum in `r` to 16 bits (`r` holds at most 32
/// bits), with `tmp` as scratch.
pub(super) fn fold(a: &mut Asm, r: u8, tmp: u8) {
    for _ in 0..2 {
        a.mov_reg(tmp, r);
        a.alu(RSH, tmp, 16);
        a.alu(AND, r, 0xffff);
        a.alu_reg(ADD, r, tmp);
    }
}

/// The one's-complement sum of the 20-byte IPv4 header at `fp + at`,
/// folded, in R0.
pub(super) fn ipv4_sum(a: &mut Asm, at: i16) {
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
pub(super) fn load_bytes(a: &mut Asm, at: i32, to: i16, len: i32, fail: Label) {
    a.mov(R2, at);
    load_bytes_at_r2(a, to, len, fail);
}

/// `load_bytes` from the packet offset in R2.
pub(super) fn load_bytes_at_r2(a: &mut Asm, to: i16, len: i32, fail: Label) {
    a.mov_reg(R1, R6);
    a.mov_reg(R3, R10);
    a.add(R3, to as i32);
    a.mov(R4, len);
    a.call(SKB_LOAD_BYTES);
    a.jmp(JNE, R0, 0, fail);
}

/// skb_store_bytes(skb, `at`, fp + `from`, `len`, `flags`); on failure,
/// jumps to `fail`.
pub(super) fn store(a: &mut Asm, at: i32, from: i16, len: i32, flags: i32, fail: Label) {
    a.mov(R2, at);
    store_at_r2(a, from, len, flags, fail);
}

/// `store` at the packet offset in R2.
pub(super) fn store_at_r2(a: &mut Asm, from: i16, len: i32, flags: i32, fail: Label) {
    a.mov_reg(R1, R6);
    a.mov_reg(R3, R10);
    a.add(R3, from as i32);
    a.mov(R4, len);
    a.mov(R5, flags);
    a.call(SKB_STORE_BYTES);
    a.jmp(JNE, R0, 0, fail);
}

pub(super) const F_RECOMPUTE_CSUM: i32 = 1;
pub(super) const ETH_LEN: i32 = 14;

/// Ends a program: `next` passes the packet on (to the next program, or the
/// stack), `drop` drops it.
pub(super) fn verdicts(mut a: Asm, next: Label, drop: Label) -> Vec<Insn> {
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
pub(super) fn dispatch(a: &mut Asm, proto: i16, key: i16, table: RawFd, next: Label) {
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
    a.alu(OR, R4, TAG_L2 as i32);
    a.st(DW, R10, EXTRA, ETH_LEN);
    a.bind(known);
    a.stx(W, R10, key + KEY_TAG, R4);
    a.ld_map(R1, table);
    a.mov_reg(R2, R10);
    a.add(R2, key as i32);
    a.call(MAP_LOOKUP_ELEM);
    a.jmp64(JEQ, R0, 0, next);
    a.ldx(W, R8, R0, ROUTE_IFINDEX);
    a.ldx(W, R9, R0, ROUTE_TUNNEL);
}
