//! The IP layer of a captured frame, IPv4 (on `wire::ipv4`) or IPv6 with
//! its extension headers: what `decode` and `describe` both read.

use std::net::IpAddr;

use super::{be16, be32, ipv6_at};
use crate::wire::checksum::internet_checksum;
use crate::wire::gre;
use crate::wire::ipv4::{self, Ipv4Packet};

/// An IPv4 or IPv6 header, and its upper-layer payload.
pub(super) struct Ip<'a> {
    pub(super) v6: bool,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) ttl: u8,
    pub(super) tos: u8,
    pub(super) df: bool,
    pub(super) mf: bool,
    pub(super) evil: bool,
    /// Fragment offset in bytes.
    pub(super) offset: usize,
    pub(super) id: u16,
    /// Total length, header included (from the header, not the capture).
    pub(super) len: usize,
    /// IPv4 header checksum: (stored, correct) when they differ.
    pub(super) bad_sum: Option<(u16, u16)>,
    /// IPv6 flow label word's class and label bits.
    pub(super) flow: u32,
    /// The IPv6 fixed header's next header.
    pub(super) next_header: u8,
    /// The upper-layer protocol, after any IPv6 extension headers.
    pub(super) proto: u8,
    /// The upper-layer bytes, bounded by `len` and by what was captured.
    pub(super) payload: &'a [u8],
    /// The upper layer's length as the header declares it.
    pub(super) upper_len: usize,
    /// Whether the whole packet was captured.
    pub(super) whole: bool,
}

impl<'a> Ip<'a> {
    /// The identifier of an ICMP or ICMPv6 echo request.
    pub(super) fn echo_request_id(&self) -> Option<u16> {
        let request = match self.proto {
            1 => 8,
            58 => 128,
            _ => return None,
        };
        (self.offset == 0 && self.payload.first() == Some(&request))
            .then(|| be16(self.payload, 4))
            .flatten()
    }

    pub(super) fn parse(ethertype: u16, b: &'a [u8]) -> Option<Ip<'a>> {
        match ethertype {
            gre::ETHERTYPE_IPV4 => Self::parse4(b),
            gre::ETHERTYPE_IPV6 => Self::parse6(b),
            _ => None,
        }
    }

    /// An IPv4 header; `None` where the view refuses it.
    pub(super) fn parse4(b: &'a [u8]) -> Option<Ip<'a>> {
        Self::v4(b).ok()
    }

    /// An IPv4 header, or why the view refuses it (`describe` names it).
    pub(super) fn v4(b: &'a [u8]) -> Result<Ip<'a>, ipv4::Error> {
        let p = Ipv4Packet::new_checked(b)?;
        let len = usize::from(p.total_len());
        Ok(Ip {
            v6: false,
            src: p.src().into(),
            dst: p.dst().into(),
            ttl: p.ttl(),
            tos: p.tos(),
            df: p.dont_frag(),
            mf: p.more_frags(),
            evil: p.reserved_flag(),
            offset: p.frag_offset(),
            id: p.ident(),
            len,
            bad_sum: (!p.verify_checksum()).then(|| (p.checksum(), p.computed_checksum())),
            flow: 0,
            next_header: p.protocol(),
            proto: p.protocol(),
            payload: &b[p.payload_range()],
            upper_len: len - p.header_len(),
            whole: b.len() >= len,
        })
    }

    pub(super) fn parse6(b: &'a [u8]) -> Option<Ip<'a>> {
        if b.len() < 40 || b[0] >> 4 != 6 {
            return None;
        }
        let len = 40 + usize::from(be16(b, 4)?);
        let end = len.min(b.len());
        let (mut proto, mut at) = (b[6], 40);
        let (mut offset, mut mf) = (0, false);
        // Walk the extension headers an upper layer may sit behind.
        while matches!(proto, 0 | 43 | 44 | 60) {
            let next = *b.get(at)?;
            let ext_len = if proto == 44 {
                let frag = be16(b, at + 2)?;
                offset = usize::from(frag & 0xfff8);
                mf = frag & 1 != 0;
                8
            } else {
                (usize::from(*b.get(at + 1)?) + 1) * 8
            };
            proto = next;
            at += ext_len;
        }
        Some(Ip {
            v6: true,
            src: ipv6_at(b, 8)?.into(),
            dst: ipv6_at(b, 24)?.into(),
            ttl: b[7],
            tos: ((be16(b, 0)? >> 4) & 0xff) as u8,
            df: false,
            mf,
            evil: false,
            offset,
            id: 0,
            len,
            bad_sum: None,
            flow: be32(b, 0)? & 0x0fff_ffff,
            next_header: b[6],
            proto,
            payload: b.get(at..end)?,
            upper_len: len.saturating_sub(at),
            whole: b.len() >= len,
        })
    }

    pub(super) fn fragmented(&self) -> bool {
        self.mf || self.offset != 0
    }

    /// The pseudo-header that UDP, TCP and ICMPv6 checksums cover.
    fn pseudo_header(&self, proto: u8, len: usize) -> Vec<u8> {
        let mut h = Vec::with_capacity(40);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&[0, proto]);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (s, d) => {
                for a in [s, d] {
                    if let IpAddr::V6(a) = a {
                        h.extend_from_slice(&a.octets());
                    }
                }
                h.extend_from_slice(&(len as u32).to_be_bytes());
                h.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        h
    }

    /// Checks the upper-layer checksum stored at `at`: None if right, else
    /// (stored, correct).
    pub(super) fn check_upper(&self, proto: u8, at: usize, pseudo: bool) -> Option<(u16, u16)> {
        let stored = be16(self.payload, at)?;
        let mut data = if pseudo {
            self.pseudo_header(proto, self.payload.len())
        } else {
            Vec::new()
        };
        data.extend_from_slice(self.payload);
        if internet_checksum(&data) == 0 {
            return None;
        }
        let field = data.len() - self.payload.len() + at;
        data[field..field + 2].fill(0);
        Some((stored, internet_checksum(&data)))
    }
}
