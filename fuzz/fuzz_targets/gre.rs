//! The GRE codec: no buffer makes a view or parse panic, and a parsed
//! header emitted over the same payload gives the bytes back.
#![no_main]

use grelab::wire::gre::{self, Error, Packet, Repr};
use libfuzzer_sys::fuzz_target;

/// The RFC 1071 sum word by word, as the RFC writes it.
fn reference_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fuzz_target!(|data: &[u8]| {
    // Unchecked: every accessor reads missing fields as absent.
    let u = Packet::new_unchecked(data);
    let _ = (
        u.version(),
        u.protocol(),
        u.checksum(),
        u.key(),
        u.sequence(),
    );
    let _ = (u.payload(), u.verify_checksum(), u.header_len());
    assert_eq!(gre::internet_checksum(data), reference_checksum(data));
    if let [a0, a1, a2, a3, b0, b1, b2, b3, ..] = *data {
        let (a, b) = (
            u32::from_be_bytes([a0, a1, a2, a3]),
            u32::from_be_bytes([b0, b1, b2, b3]),
        );
        // Serial order: at most one way round, exactly one unless equal or half apart.
        let (ab, ba) = (gre::seq_newer(a, b), gre::seq_newer(b, a));
        assert!(!(ab && ba));
        assert_eq!(ab || ba, a != b && a.wrapping_sub(b) != 1 << 31);
    }

    let p = match Packet::new_checked(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(matches!(
                e,
                Error::Truncated | Error::Version(1..=7) | Error::Reserved
            ));
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let hlen = p.header_len();
    assert!(hlen <= data.len() && hlen <= gre::MAX_HEADER_LEN);
    assert_eq!(p.payload(), &data[hlen..]);
    assert_eq!(p.version(), 0);
    let repr = match Repr::parse(&p) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e, Error::Checksum);
            assert!(p.checksum_present() && !p.verify_checksum());
            return;
        }
    };
    assert_eq!(repr.header_len(), hlen);
    assert_eq!(
        (repr.protocol, repr.checksum, repr.key, repr.sequence),
        (p.protocol(), p.checksum_present(), p.key(), p.sequence())
    );

    // Emit over the same payload.
    let mut out = data.to_vec();
    assert_eq!(repr.emit(&mut out), Ok(hlen));
    assert_eq!(repr.emit(&mut out[..hlen - 1]), Err(Error::BufferTooSmall));
    assert_eq!(
        Repr::parse(&Packet::new_checked(&out[..]).unwrap()),
        Ok(repr)
    );
    if !repr.checksum {
        assert_eq!(out, data);
        return;
    }
    // Repr carries neither Reserved1 (ignored on receipt, as Linux does) nor
    // which of one's complement's two zeros the checksum used: emit writes
    // Reserved1 as 0 and a checksum 0x0000, never 0xffff. Past those the
    // bytes come back.
    assert_eq!(out[..4], data[..4]);
    assert_eq!(out[8..], data[8..]);
    assert_eq!(out[6..8], [0, 0]);
    if data[6..8] == [0, 0] {
        let (sent, emitted) = (&data[4..6], &out[4..6]);
        assert!(sent == emitted || (sent == [0xff, 0xff] && emitted == [0, 0]));
    }
});
