//! The Internet checksum (RFC 1071), one implementation for every header
//! that carries one: IPv4, ICMP, GRE, and the TCP/UDP/ICMPv6 pseudo-header sums.

/// The RFC 1071 Internet checksum of `data`: the one's complement of the
/// one's-complement sum of its 16-bit big-endian words (an odd last byte is
/// padded with zero). Over data that embeds a correct checksum it returns 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    // A u64 accumulator of 32-bit words cannot overflow for any buffer that
    // fits in memory, so folding happens once, at the end.
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum += u64::from(u32::from_be_bytes(tail));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
