//! The Internet checksum (RFC 1071), one implementation for every header
//! that carries one: IPv4, ICMP, GRE, and the TCP/UDP/ICMPv6 pseudo-header sums.

/// The RFC 1071 Internet checksum of `data`: the one's complement of the
/// one's-complement sum of its 16-bit big-endian words (an odd last byte is
/// padded with zero). Over data that embeds a correct checksum it returns 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// Adds the 16-bit big-endian words of `data` to a one's-complement
/// accumulator, for sums taken in pieces (pseudo-headers, then payloads).
/// Pieces summed into one accumulator must have even lengths, but for the
/// last.
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
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
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_vectors() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A real IPv4 header, checksum field zeroed, then with it filled in (0xb861).
        let mut ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&ip), 0xb861);
        ip[10..12].copy_from_slice(&[0xb8, 0x61]);
        assert_eq!(internet_checksum(&ip), 0);
        // Odd length pads with a zero byte; empty sums to zero.
        assert_eq!(internet_checksum(&[0x12]), !0x1200);
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    #[test]
    fn checksum_follows_rfc1071() {
        // The worked example of RFC 1071 section 3: the sum is 0xddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // An odd length pads with a zero byte; a correct packet sums to 0.
        let mut p = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, 0xab];
        let c = internet_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&p), 0);
    }

    proptest! {
        #[test]
        fn checksum_matches_wordwise_reference(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut sum: u32 = 0;
            for pair in data.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            prop_assert_eq!(internet_checksum(&data), !(sum as u16));
        }
    }
}
