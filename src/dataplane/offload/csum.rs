//! The internet checksum, summed in pieces, and finishing one the kernel
//! left to the device.

/// Adds the 16-bit big-endian words of `data` to a one's-complement
/// accumulator. Pieces summed into one accumulator must have even
/// lengths, but for the last.
pub fn csum_add(mut acc: u64, data: &[u8]) -> u64 {
    // 32-bit halves into 64 bits: no carry is lost (2^32 words needed),
    // and a 32-bit word is congruent to the sum of its 16-bit halves.
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [b] = pairs.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// The accumulator folded to 16 bits (not complemented).
pub fn csum_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

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
