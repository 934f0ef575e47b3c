//! Finishing a checksum the kernel left to the device (the sums are
//! `wire::checksum`'s).

pub use crate::wire::checksum::{add as csum_add, fold as csum_fold};

/// Completes a checksum the kernel left to the device: the one's
/// complement of the sum from `start` to the end, written at
/// `start + offset` (which holds the pseudo-header sum). A result of 0 is
/// sent as 0xffff, as the kernel's `skb_checksum_help` does (UDP's "no
/// checksum" is 0). False if the offsets lie outside the packet.
pub fn finish_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if start >= pkt.len() || at + 2 > pkt.len() {
        return false;
    }
    let sum = !csum_fold(csum_add(0, &pkt[start..]));
    let sum = if sum == 0 { 0xffff } else { sum };
    pkt[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}
