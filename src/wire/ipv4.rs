//! IPv4 headers (RFC 791) in the shape of `gre`: [`Ipv4Packet`], a checked
//! zero-copy view of a buffer, and [`Ipv4Repr`], the header as plain data
//! that parses and emits. Allocates nothing, never panics on input.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version|  IHL  |Type of Service|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)                          |
//! ```

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::checksum::internet_checksum;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// The longest header: IHL 15.
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Why a buffer is not an acceptable IPv4 header, or a header does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the fixed header, or before the options its
    /// IHL announces.
    Truncated,
    /// The version field is not 4.
    Version(u8),
    /// The IHL is below 5 words; the length it gives, in bytes.
    HeaderLen(usize),
    /// The total length is shorter than the header.
    TotalLen(u16),
    /// The header checksum does not match.
    Checksum,
    /// A fragment: [`Ipv4Repr`] describes whole datagrams only.
    Fragment,
    /// Header and payload are longer than the 16-bit total length allows.
    TooLong(usize),
    /// The output buffer cannot hold the header.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("ipv4 packet is shorter than its header"),
            Error::Version(v) => write!(f, "ip version {v} is not 4"),
            Error::HeaderLen(l) => write!(f, "ipv4 header length {l} is below 20 bytes"),
            Error::TotalLen(l) => write!(f, "ipv4 total length {l} is shorter than its header"),
            Error::Checksum => f.write_str("ipv4 header checksum does not match the header"),
            Error::Fragment => f.write_str("ipv4 packet is a fragment"),
            Error::TooLong(l) => write!(f, "ipv4 packet of {l} bytes exceeds 65535"),
            Error::BufferTooSmall => f.write_str("buffer is too small for the ipv4 header"),
        }
    }
}

impl std::error::Error for Error {}

/// An IPv4 packet viewed in place. The buffer may hold less than the total
/// length says (a capture cut short) or more (Ethernet padding): the payload
/// is what lies between the header and the first of the two ends.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks; accessors still never panic, but read
    /// missing fields as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking, in this order (tcpdump's, so that a
    /// bad header is named the same way): the fixed header is there, the
    /// version is 4, the IHL is at least 5, the total length covers the
    /// header, and the options are there.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Ipv4Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Version(self.version()));
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::HeaderLen(self.header_len()));
        }
        if usize::from(self.total_len()) < self.header_len() {
            return Err(Error::TotalLen(self.total_len()));
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn half(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.byte(at), self.byte(at + 1)])
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.byte(at),
            self.byte(at + 1),
            self.byte(at + 2),
            self.byte(at + 3),
        )
    }

    /// The version field (4 once checked).
    pub fn version(&self) -> u8 {
        self.byte(0) >> 4
    }

    /// The header length in bytes, options included (the IHL times 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.byte(0) & 0x0f) * 4
    }

    /// The type-of-service byte: DSCP and the two ECN bits.
    pub fn tos(&self) -> u8 {
        self.byte(1)
    }

    /// The total length, header included, as the header declares it.
    pub fn total_len(&self) -> u16 {
        self.half(2)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        self.half(4)
    }

    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        self.half(6) & FLAG_DF != 0
    }

    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        self.half(6) & FLAG_MF != 0
    }

    /// The reserved flag bit (RFC 3514's evil bit), which senders leave zero.
    pub fn reserved_flag(&self) -> bool {
        self.half(6) & FLAG_RESERVED != 0
    }

    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.half(6) & OFFSET_MASK) * 8
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.byte(8)
    }

    /// The protocol of the payload (IANA protocol number).
    pub fn protocol(&self) -> u8 {
        self.byte(9)
    }

    /// The header checksum field as stored.
    pub fn checksum(&self) -> u16 {
        self.half(10)
    }

    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        self.addr(12)
    }

    /// The destination address.
    pub fn dst(&self) -> Ipv4Addr {
        self.addr(16)
    }

    fn header(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..self.header_len().min(b.len())]
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.header()) == 0
    }

    /// The checksum the header should carry: its sum with the checksum field
    /// taken as zero.
    pub fn computed_checksum(&self) -> u16 {
        let mut h = [0u8; MAX_HEADER_LEN];
        let header = self.header();
        h[..header.len()].copy_from_slice(header);
        h[10..12].fill(0);
        internet_checksum(&h[..header.len()])
    }

    /// Where the payload lies in the buffer: after the header, up to the
    /// total length or the end of the buffer, whichever comes first. Always
    /// within the buffer (empty if it ends before the payload).
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().min(len);
        let end = usize::from(self.total_len()).min(len).max(start);
        start..end
    }

    /// The bytes of [`payload_range`](Self::payload_range).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// An IPv4 header of a whole datagram, as plain data. Options are not
/// kept: parsing a header with options reads past them, emitting writes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// The source address.
    pub src: Ipv4Addr,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The payload's protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// The type-of-service byte.
    pub tos: u8,
    /// The identification field.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// Bytes after the header, by the total length.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Reads the header of `packet`, checking it and its checksum; fragments
    /// are refused.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, Error> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(Error::Fragment);
        }
        Ok(Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
        })
    }

    /// Writes the header, checksum included, into `buf[..HEADER_LEN]` (the
    /// payload, if the caller has it, follows); returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let total = HEADER_LEN + self.payload_len;
        let total = u16::try_from(total).map_err(|_| Error::TooLong(total))?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags = if self.dont_frag { FLAG_DF } else { 0 };
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let sum = internet_checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A UDP header from RFC 1071's neighbourhood: 192.168.0.1 > .199,
    /// 115 bytes, DF, TTL 64, checksum 0xb861.
    const REAL: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn with_payload(header: &[u8], payload: &[u8]) -> Vec<u8> {
        [header, payload].concat()
    }

    #[test]
    fn reads_every_field_of_a_real_header() {
        let p = Ipv4Packet::new_checked(&REAL[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.tos()), (4, 20, 0));
        assert_eq!(
            (p.total_len(), p.ident(), p.ttl(), p.protocol()),
            (115, 0, 64, 17)
        );
        assert!(p.dont_frag() && !p.more_frags() && !p.reserved_flag());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.checksum(), 0xb861);
        assert!(p.verify_checksum());
        assert_eq!(p.computed_checksum(), 0xb861);
        // The capture holds only the header: the payload is empty, not missing.
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn checks_in_tcpdump_order() {
        let check = |b: &[u8]| Ipv4Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&REAL[..19]), Err(Error::Truncated));
        let mut b = REAL;
        b[0] = 0x65;
        assert_eq!(check(&b), Err(Error::Version(6)));
        b[0] = 0x44;
        assert_eq!(check(&b), Err(Error::HeaderLen(16)));
        b[0] = 0x45;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(check(&b), Err(Error::TotalLen(19)));
        // Version is named before a short IHL, which is named before length.
        b[0] = 0x64;
        assert_eq!(check(&b), Err(Error::Version(6)));
        // Options announced but cut off.
        let mut opts = REAL;
        opts[0] = 0x46;
        assert_eq!(check(&opts), Err(Error::Truncated));
        assert_eq!(check(&with_payload(&opts, &[1, 1, 1, 0])), Ok(()));
    }

    #[test]
    fn payload_ends_at_the_total_length_or_the_buffer() {
        let mut h = REAL;
        h[2..4].copy_from_slice(&24u16.to_be_bytes());
        // Ethernet padding after the datagram is not payload.
        let padded = with_payload(&h, &[1, 2, 3, 4, 0xaa, 0xaa]);
        assert_eq!(
            Ipv4Packet::new_checked(&padded).unwrap().payload(),
            &[1, 2, 3, 4]
        );
        // A capture cut short keeps what it has.
        let cut = with_payload(&h, &[1, 2]);
        assert_eq!(Ipv4Packet::new_checked(&cut).unwrap().payload(), &[1, 2]);
        // Options come before the payload.
        let mut o = REAL;
        o[0] = 0x46;
        o[2..4].copy_from_slice(&26u16.to_be_bytes());
        let b = with_payload(&o, &[7, 7, 7, 7, 9, 9]);
        let p = Ipv4Packet::new_checked(&b).unwrap();
        assert_eq!((p.header_len(), p.payload()), (24, &[9u8, 9][..]));
        assert_eq!(p.payload_range(), 24..26);
        // Unchecked and shorter than its IHL: an empty range inside the buffer.
        assert_eq!(Ipv4Packet::new_unchecked(&o[..10]).payload_range(), 10..10);
    }

    #[test]
    fn a_wrong_checksum_reads_with_the_right_one() {
        let mut b = REAL;
        b[8] = 1; // TTL changed, checksum left
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(p.checksum(), 0xb861);
        let right = p.computed_checksum();
        b[10..12].copy_from_slice(&right.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&REAL[..2])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn fragment_fields() {
        let mut b = REAL;
        b[6..8].copy_from_slice(&(0x8000u16 | 0x2000 | 185).to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.reserved_flag() && p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn repr_emits_and_parses() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: 17,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            payload_len: 95,
        };
        let mut b = [0u8; 20];
        assert_eq!(repr.emit(&mut b), Ok(20));
        assert_eq!(b, REAL);
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()),
            Ok(repr)
        );
        assert_eq!(repr.emit(&mut [0u8; 19]), Err(Error::BufferTooSmall));
        let huge = Ipv4Repr {
            payload_len: 65516,
            ..repr
        };
        assert_eq!(huge.emit(&mut b), Err(Error::TooLong(65536)));
    }

    #[test]
    fn repr_refuses_bad_sums_and_fragments() {
        let mut b = REAL;
        b[11] ^= 1;
        let parse = |b: &[u8]| Ipv4Repr::parse(&Ipv4Packet::new_unchecked(b));
        assert_eq!(parse(&b), Err(Error::Checksum));
        let mut f = REAL;
        f[6] = 0x20; // MF, DF clear: the checksum changes with it
        let sum = Ipv4Packet::new_unchecked(&f[..]).computed_checksum();
        f[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&f), Err(Error::Fragment));
    }

    #[test]
    fn unchecked_view_of_short_buffer_does_not_panic() {
        for n in 0..REAL.len() {
            let p = Ipv4Packet::new_unchecked(&REAL[..n]);
            let _ = (p.src(), p.dst(), p.ttl(), p.protocol(), p.total_len());
            let _ = (p.verify_checksum(), p.computed_checksum(), p.payload());
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(Error::Version(6).to_string(), "ip version 6 is not 4");
        assert_eq!(
            Error::HeaderLen(16).to_string(),
            "ipv4 header length 16 is below 20 bytes"
        );
        assert_eq!(
            Error::TotalLen(19).to_string(),
            "ipv4 total length 19 is shorter than its header"
        );
    }

    fn any_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<(u8, u8, u8, u16, bool)>(),
            0..2000usize,
        )
            .prop_map(
                |(s, d, (protocol, ttl, tos, ident, dont_frag), payload_len)| Ipv4Repr {
                    src: s.into(),
                    dst: d.into(),
                    protocol,
                    ttl,
                    tos,
                    ident,
                    dont_frag,
                    payload_len,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_inverts_emit(repr in any_repr()) {
            let mut b = vec![0u8; HEADER_LEN + repr.payload_len];
            prop_assert_eq!(repr.emit(&mut b), Ok(HEADER_LEN));
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
            prop_assert_eq!(p.payload().len(), repr.payload_len);
            prop_assert_eq!(p.computed_checksum(), p.checksum());
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), plausible: bool) {
            if plausible && !bytes.is_empty() {
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
            }
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() >= HEADER_LEN && p.header_len() <= bytes.len());
                prop_assert!(p.payload().len() <= bytes.len() - p.header_len());
                prop_assert_eq!(p.payload_range().start, p.header_len());
                let _ = (p.verify_checksum(), p.computed_checksum(), Ipv4Repr::parse(&p));
            }
            let u = Ipv4Packet::new_unchecked(&bytes[..]);
            let _ = (u.payload(), u.computed_checksum(), u.frag_offset());
            prop_assert_eq!(u.into_inner().len(), bytes.len());
        }
    }
}
