//! A sans-IO GRE codec (RFC 2784 with the RFC 2890 key and sequence
//! extensions), in two layers: [`Packet`], a checked zero-copy view of a
//! buffer, and [`Repr`], the header as plain data that parses and emits.
//! It knows nothing of sockets and allocates nothing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C|R|K|S|s|Recur|  Flags  | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```

use std::fmt;

// Re-exported: callers that sum with `gre::internet_checksum` keep working.
pub use super::checksum::internet_checksum;

/// Protocol type of an IPv4 payload.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// Protocol type of an Ethernet frame payload (Transparent Ethernet Bridging, gretap).
pub const ETHERTYPE_TEB: u16 = 0x6558;
/// The longest header this codec emits or accepts: base, checksum, key, sequence.
pub const MAX_HEADER_LEN: usize = 16;

const FLAG_C: u8 = 0x80;
const FLAG_R: u8 = 0x40;
const FLAG_K: u8 = 0x20;
const FLAG_S: u8 = 0x10;
/// Strict source route (0x08) and recursion control (0x07), from RFC 1701.
const FLAGS_1701: u8 = 0x0f;
/// The Flags bits of the second byte (reserved0 bits 8-12).
const FLAGS_RESERVED: u8 = 0xf8;
const VERSION_MASK: u8 = 0x07;

/// Why a buffer is not an acceptable GRE packet, or a header does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the fields its flags announce.
    Truncated,
    /// The version field is not 0 (1 is PPTP's enhanced GRE).
    Version(u8),
    /// Routing, strict source route, recursion or reserved flag bits are set.
    Reserved,
    /// The checksum is present and does not match the packet.
    Checksum,
    /// The output buffer cannot hold the header.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("gre packet is shorter than its header"),
            Error::Version(v) => write!(f, "gre version {v} is not supported (only version 0)"),
            Error::Reserved => f.write_str(
                "gre header sets routing, strict source route, recursion or reserved flag bits",
            ),
            Error::Checksum => f.write_str("gre checksum does not match the packet"),
            Error::BufferTooSmall => f.write_str("buffer is too small for the gre header"),
        }
    }
}

impl std::error::Error for Error {}

/// Length of a GRE header with the given optional fields: 4, plus 4 for each.
pub const fn header_len(checksum: bool, key: bool, sequence: bool) -> usize {
    4 + 4 * (checksum as usize + key as usize + sequence as usize)
}

/// Whether sequence number `new` comes after `last` in RFC 1982 serial
/// arithmetic (32 bits), the order RFC 2890 uses for in-order delivery.
/// Equal numbers, and numbers exactly 2^31 apart, are not newer (the kernel
/// drops both too).
pub fn seq_newer(new: u32, last: u32) -> bool {
    let d = new.wrapping_sub(last);
    d != 0 && d < 1 << 31
}

/// A GRE packet viewed in place: the header, then the payload to the end of
/// the buffer (GRE has no length field; the outer IP header delimits it).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checks; accessors still never panic, but read
    /// missing fields as zero / absent.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it is a version-0 GRE header whose
    /// flagged fields all fit.
    ///
    /// Stricter than Linux: `gre_parse_header` rejects only a non-zero
    /// version and the routing bit, and ignores the strict-source-route,
    /// recursion and reserved0 bits. RFC 2784 senders (Linux included) always
    /// send them as zero, so a packet with them set was not built by one.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < 4 {
            return Err(Error::Truncated);
        }
        if b[1] & VERSION_MASK != 0 {
            return Err(Error::Version(b[1] & VERSION_MASK));
        }
        if b[0] & (FLAG_R | FLAGS_1701) != 0 || b[1] & FLAGS_RESERVED != 0 {
            return Err(Error::Reserved);
        }
        if b.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn word(&self, at: usize) -> Option<u32> {
        let b = self.buffer.as_ref().get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The version field (0 for RFC 2784 GRE).
    pub fn version(&self) -> u8 {
        self.byte(1) & VERSION_MASK
    }

    /// The protocol type of the payload (an EtherType).
    pub fn protocol(&self) -> u16 {
        u16::from_be_bytes([self.byte(2), self.byte(3)])
    }

    /// Whether the C bit announces a checksum.
    pub fn checksum_present(&self) -> bool {
        self.byte(0) & FLAG_C != 0
    }

    /// Whether the K bit announces a key.
    pub fn key_present(&self) -> bool {
        self.byte(0) & FLAG_K != 0
    }

    /// Whether the S bit announces a sequence number.
    pub fn sequence_present(&self) -> bool {
        self.byte(0) & FLAG_S != 0
    }

    /// The checksum field, when present.
    pub fn checksum(&self) -> Option<u16> {
        if !self.checksum_present() {
            return None;
        }
        self.word(4).map(|w| (w >> 16) as u16)
    }

    /// The key, when present.
    pub fn key(&self) -> Option<u32> {
        if !self.key_present() {
            return None;
        }
        self.word(header_len(self.checksum_present(), false, false))
    }

    /// The sequence number, when present.
    pub fn sequence(&self) -> Option<u32> {
        if !self.sequence_present() {
            return None;
        }
        self.word(header_len(
            self.checksum_present(),
            self.key_present(),
            false,
        ))
    }

    /// The header length its flags announce.
    pub fn header_len(&self) -> usize {
        header_len(
            self.checksum_present(),
            self.key_present(),
            self.sequence_present(),
        )
    }

    /// The bytes after the header (empty if the buffer ends before).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Whether the checksum covers header and payload correctly; true when
    /// no checksum is present.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || internet_checksum(self.buffer.as_ref()) == 0
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A GRE header as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Protocol type of the payload (an EtherType such as [`ETHERTYPE_IPV4`]).
    pub protocol: u16,
    /// Whether the header carries a checksum over header and payload.
    pub checksum: bool,
    /// The key (RFC 2890), if any.
    pub key: Option<u32>,
    /// The sequence number (RFC 2890), if any.
    pub sequence: Option<u32>,
}

impl Repr {
    /// Length of the header this emits.
    pub fn header_len(&self) -> usize {
        header_len(self.checksum, self.key.is_some(), self.sequence.is_some())
    }

    /// Reads the header of `packet`, checking it, and its checksum if present.
    /// Unknown protocol types are accepted: the caller decides. Reserved1 is
    /// ignored, as Linux does, so [`Repr::emit`] gives the bytes back except
    /// Reserved1 (written as 0) and a checksum sent as 0xffff (written as 0,
    /// the other zero of one's complement).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            protocol: packet.protocol(),
            checksum: packet.checksum_present(),
            key: packet.key(),
            sequence: packet.sequence(),
        })
    }

    /// `buf` holds header space followed by the payload already in place at
    /// `buf[self.header_len()..]`; writes the header (and the checksum over
    /// header + payload, when enabled); returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        let header = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut flags = 0;
        if self.checksum {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence.is_some() {
            flags |= FLAG_S;
        }
        header[0] = flags;
        header[1] = 0;
        header[2..4].copy_from_slice(&self.protocol.to_be_bytes());
        let mut at = 4;
        if self.checksum {
            // Checksum and Reserved1 are zero while the sum is taken.
            header[at..at + 4].fill(0);
            at += 4;
        }
        for word in [self.key, self.sequence].into_iter().flatten() {
            header[at..at + 4].copy_from_slice(&word.to_be_bytes());
            at += 4;
        }
        if self.checksum {
            let sum = internet_checksum(buf);
            buf[4..6].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> Result<Repr, Error> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    fn emit(repr: &Repr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; repr.header_len() + payload.len()];
        buf[repr.header_len()..].copy_from_slice(payload);
        assert_eq!(repr.emit(&mut buf), Ok(repr.header_len()));
        buf
    }

    const PLAIN: Repr = Repr {
        protocol: ETHERTYPE_IPV4,
        checksum: false,
        key: None,
        sequence: None,
    };

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(false, false, false), 4);
        assert_eq!(header_len(true, false, false), 8);
        assert_eq!(header_len(false, true, true), 12);
        assert_eq!(header_len(true, true, true), MAX_HEADER_LEN);
    }

    #[test]
    fn plain_header() {
        let bytes = [0x00, 0x00, 0x08, 0x00, 0x45];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.version(), p.protocol(), p.header_len()), (0, 0x0800, 4));
        assert_eq!((p.checksum(), p.key(), p.sequence()), (None, None, None));
        assert_eq!(p.payload(), &[0x45]);
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p), Ok(PLAIN));
        assert_eq!(emit(&PLAIN, &[0x45]), bytes);
    }

    #[test]
    fn keyed_header() {
        let bytes = [0x20, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x01];
        let repr = Repr {
            key: Some(1),
            ..PLAIN
        };
        assert_eq!(parse(&bytes), Ok(repr));
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap().payload(),
            &[] as &[u8]
        );
        assert_eq!(emit(&repr, &[]), bytes);
    }

    #[test]
    fn sequence_header() {
        let bytes = [0x10, 0x00, 0x86, 0xdd, 0xff, 0xff, 0xff, 0xfe, 0x60];
        let repr = Repr {
            protocol: ETHERTYPE_IPV6,
            sequence: Some(0xffff_fffe),
            ..PLAIN
        };
        assert_eq!(parse(&bytes), Ok(repr));
        assert_eq!(emit(&repr, &[0x60]), bytes);
    }

    #[test]
    fn key_and_sequence_header() {
        let bytes = [
            0x30, 0x00, 0x65, 0x58, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x00, 0x07,
        ];
        let repr = Repr {
            protocol: ETHERTYPE_TEB,
            key: Some(0x0a0b_0c0d),
            sequence: Some(7),
            ..PLAIN
        };
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (p.key(), p.sequence(), p.header_len()),
            (Some(0x0a0b_0c0d), Some(7), 12)
        );
        assert_eq!(Repr::parse(&p), Ok(repr));
        assert_eq!(emit(&repr, &[]), bytes);
    }

    // Checksum worked by hand: 8000 + 0800 + dead + beef = 0x2259c,
    // folded 0x259e, complemented 0xda61.
    const CSUM: [u8; 12] = [
        0x80, 0x00, 0x08, 0x00, 0xda, 0x61, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn checksum_header() {
        let repr = Repr {
            checksum: true,
            ..PLAIN
        };
        let p = Packet::new_checked(&CSUM[..]).unwrap();
        assert_eq!((p.checksum(), p.header_len()), (Some(0xda61), 8));
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p), Ok(repr));
        assert_eq!(emit(&repr, &[0xde, 0xad, 0xbe, 0xef]), CSUM);
    }

    #[test]
    fn emit_gives_parsed_bytes_back_but_reserved1_and_a_checksum_of_ffff() {
        let repr = Repr {
            checksum: true,
            ..PLAIN
        };
        // 8000 + 0800 + 77ff sums to ffff: the checksum is 0, or ffff.
        let zero = [0x80, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77, 0xff];
        assert_eq!(emit(&repr, &[0x77, 0xff]), zero);
        let mut ffff = zero;
        ffff[4..6].fill(0xff);
        assert_eq!(parse(&ffff), Ok(repr));
        // Reserved1 set, and the checksum over it.
        let mut reserved = zero;
        reserved[6..8].copy_from_slice(&[0x12, 0x34]);
        let sum = internet_checksum(&reserved);
        reserved[4..6].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&reserved), Ok(repr));
        for sent in [ffff, reserved] {
            let mut out = sent;
            assert_eq!(repr.emit(&mut out), Ok(8));
            assert_eq!(out, zero);
        }
    }

    #[test]
    fn bad_checksum_is_an_error_but_the_view_still_reads() {
        for i in 0..CSUM.len() {
            let mut bad = CSUM;
            bad[i] ^= 0x01;
            if i == 0 || i == 1 {
                continue; // flips a flag bit or the version: other errors
            }
            let p = Packet::new_checked(&bad[..]).unwrap();
            assert!(!p.verify_checksum(), "flipped byte {i}");
            assert_eq!(Repr::parse(&p), Err(Error::Checksum), "flipped byte {i}");
        }
    }

    #[test]
    fn all_options_header() {
        let repr = Repr {
            protocol: ETHERTYPE_IPV4,
            checksum: true,
            key: Some(42),
            sequence: Some(9),
        };
        let bytes = emit(&repr, b"hello");
        assert_eq!(&bytes[..4], &[0xb0, 0x00, 0x08, 0x00]);
        assert_eq!(&bytes[6..16], &[0, 0, 0, 0, 0, 42, 0, 0, 0, 9]);
        // 0xb000 + 0x0800 + 0x2a + 0x09 + "he" + "ll" + "o\0", folded and complemented.
        let sum: u32 = 0xb000 + 0x0800 + 0x2a + 0x09 + 0x6865 + 0x6c6c + 0x6f00;
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!(&bytes[4..6], &(!(folded as u16)).to_be_bytes());
        assert_eq!(parse(&bytes), Ok(repr));
    }

    #[test]
    fn truncation_at_every_length() {
        let repr = Repr {
            protocol: ETHERTYPE_IPV4,
            checksum: true,
            key: Some(1),
            sequence: Some(2),
        };
        let full = emit(&repr, &[]);
        for len in 0..full.len() {
            assert_eq!(
                parse(&full[..len]).unwrap_err(),
                Error::Truncated,
                "length {len}"
            );
        }
        assert_eq!(parse(&full), Ok(repr));
    }

    #[test]
    fn version_and_reserved_bits_rejected() {
        assert_eq!(
            parse(&[0x00, 0x01, 0x88, 0x0b]).unwrap_err(),
            Error::Version(1)
        );
        assert_eq!(
            parse(&[0x00, 0x07, 0x08, 0x00]).unwrap_err(),
            Error::Version(7)
        );
        for byte0 in [0x40, 0x08, 0x01, 0x04] {
            let b = [byte0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
            assert_eq!(
                parse(&b).unwrap_err(),
                Error::Reserved,
                "byte 0 = {byte0:#x}"
            );
        }
        for byte1 in [0x08, 0x80] {
            assert_eq!(
                parse(&[0x00, byte1, 0x08, 0x00]).unwrap_err(),
                Error::Reserved
            );
        }
    }

    #[test]
    fn unknown_protocol_is_not_an_error() {
        assert_eq!(parse(&[0x00, 0x00, 0x12, 0x34]).unwrap().protocol, 0x1234);
    }

    #[test]
    fn emit_into_short_buffer() {
        let repr = Repr {
            key: Some(1),
            ..PLAIN
        };
        assert_eq!(repr.emit(&mut [0u8; 7]), Err(Error::BufferTooSmall));
        assert_eq!(repr.emit(&mut [0u8; 8]), Ok(8));
    }

    #[test]
    fn unchecked_view_of_short_buffer_does_not_panic() {
        let p = Packet::new_unchecked(&[0xb0u8][..]);
        assert_eq!(
            (p.checksum(), p.key(), p.sequence(), p.protocol()),
            (None, None, None, 0)
        );
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn serial_number_order() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, u32::MAX)); // wraps
        assert!(seq_newer(0x7fff_ffff, 0));
        assert!(!seq_newer(0x8000_0000, 0)); // exactly half way: undefined, not newer
        assert!(!seq_newer(5, 5));
        assert!(!seq_newer(4, 5));
        assert!(!seq_newer(u32::MAX, 0));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            Error::Version(1).to_string(),
            "gre version 1 is not supported (only version 0)"
        );
        assert_eq!(
            Error::Checksum.to_string(),
            "gre checksum does not match the packet"
        );
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            any::<u16>(),
            any::<bool>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
        )
            .prop_map(|(protocol, checksum, key, sequence)| Repr {
                protocol,
                checksum,
                key,
                sequence,
            })
    }

    proptest! {
        #[test]
        fn parse_inverts_emit(repr in any_repr(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let bytes = emit(&repr, &payload);
            let p = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(internet_checksum(&bytes) == 0 || !repr.checksum, true);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..40), plausible: bool) {
            if plausible && bytes.len() >= 2 {
                // Most random headers fail the flag check; also try legal flags.
                bytes[0] &= 0xb0;
                bytes[1] = 0;
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.protocol(), p.checksum(), p.key(), p.sequence());
                let _ = (p.checksum_present(), p.key_present(), p.sequence_present());
                prop_assert!(p.header_len() <= bytes.len());
                prop_assert_eq!(p.payload().len(), bytes.len() - p.header_len());
                let _ = (p.verify_checksum(), Repr::parse(&p));
                prop_assert_eq!(p.into_inner().len(), bytes.len());
            }
            let u = Packet::new_unchecked(&bytes[..]);
            let _ = (u.checksum(), u.key(), u.sequence(), u.payload(), u.verify_checksum());
        }
    }
}
