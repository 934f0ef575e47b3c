//! The structured decode: an Ethernet frame holding GRE over IPv4 or IPv6,
//! as the fields a check asserts on.

use std::net::IpAddr;

use super::ip::Ip;
use super::{ETH_HLEN, PROTO_GRE, be16, mac_at};
use crate::wire::gre;

/// A GRE packet as seen on the wire, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encap {
    /// The tunnel's local end, as sent.
    pub outer_src: IpAddr,
    /// The tunnel's remote end.
    pub outer_dst: IpAddr,
    /// TTL, or the hop limit for IPv6.
    pub ttl: u8,
    /// TOS, or the traffic class for IPv6.
    pub tos: u8,
    /// Don't-fragment (always false for IPv6).
    pub df: bool,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// Length of the outer IP packet, header included.
    pub outer_len: usize,
    /// The GRE header (checksum flag, key, sequence, protocol type).
    pub gre: gre::Repr,
    /// Whether the GRE checksum is right (true when there is none).
    pub checksum_ok: bool,
    /// What the GRE packet carries.
    pub inner: Inner,
}

/// What a GRE packet carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// An IPv4 or IPv6 packet (gre, ip6gre); `ttl` is the hop limit for IPv6.
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        ttl: u8,
        /// Don't Fragment (IPv4; false for IPv6).
        df: bool,
        len: usize,
        /// The identifier, when it is an ICMP or ICMPv6 echo request.
        echo_id: Option<u16>,
    },
    /// An Ethernet frame (gretap, ip6gretap), with its IP addresses and protocol if IP.
    Ethernet {
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        ethertype: u16,
        ip: Option<(IpAddr, IpAddr, u8)>,
        /// The identifier, when the IP packet is an ICMP or ICMPv6 echo request.
        echo_id: Option<u16>,
    },
    /// A payload not decoded: another protocol type, or too short to read.
    Other(u16),
}

/// Decodes an Ethernet frame holding IPv4 or IPv6 carrying GRE; `None` for
/// anything else (or a non-first fragment).
pub fn decode(frame: &[u8]) -> Option<Encap> {
    let ip = Ip::parse(be16(frame, 12)?, frame.get(ETH_HLEN..)?)?;
    if ip.proto != PROTO_GRE || ip.offset != 0 {
        return None;
    }
    let packet = gre::Packet::new_checked(ip.payload).ok()?;
    let repr = gre::Repr {
        protocol: packet.protocol(),
        checksum: packet.checksum_present(),
        key: packet.key(),
        sequence: packet.sequence(),
    };
    let payload = packet.payload();
    let inner = match repr.protocol {
        gre::ETHERTYPE_TEB if payload.len() >= ETH_HLEN => {
            let ethertype = be16(payload, 12).unwrap_or(0);
            Inner::Ethernet {
                dst_mac: mac_at(payload, 0),
                src_mac: mac_at(payload, 6),
                ethertype,
                ip: Ip::parse(ethertype, &payload[ETH_HLEN..]).map(|i| (i.src, i.dst, i.proto)),
                echo_id: Ip::parse(ethertype, &payload[ETH_HLEN..])
                    .and_then(|i| i.echo_request_id()),
            }
        }
        p => match Ip::parse(p, payload) {
            Some(i) => Inner::Ip {
                src: i.src,
                dst: i.dst,
                proto: i.proto,
                ttl: i.ttl,
                df: i.df,
                len: i.len,
                echo_id: i.echo_request_id(),
            },
            None => Inner::Other(p),
        },
    };
    Some(Encap {
        outer_src: ip.src,
        outer_dst: ip.dst,
        ttl: ip.ttl,
        tos: ip.tos,
        df: ip.df,
        ip_id: ip.id,
        outer_len: ip.len,
        gre: repr,
        checksum_ok: packet.verify_checksum(),
        inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::describe;
    use crate::capture::fixtures::*;

    #[test]
    fn decodes_the_seed_packet() {
        let e = decode(&seed()).expect("the seed frame is GRE");
        assert_eq!(e.outer_src, IpAddr::from(HOST1));
        assert_eq!(e.outer_dst, IpAddr::from(HOST2));
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (255, 0, true, 18951, 108)
        );
        assert_eq!(e.gre, repr(0x0800, false, None, None));
        assert!(e.checksum_ok);
        assert_eq!(e.inner, seed_inner());
    }

    #[test]
    fn decodes_key_checksum_and_sequence() {
        let g = repr(0x0800, true, Some(0xdead_beef), Some(7));
        let e = decode(&over_v4(
            g,
            V4 {
                ttl: 9,
                id: 3,
                tos: 0xb8,
                df: false,
            },
            &inner_ping(),
        ))
        .unwrap();
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (9, 0xb8, false, 3, 120)
        );
        assert_eq!(e.gre, g);
        assert!(e.checksum_ok);
    }

    #[test]
    fn flags_a_wrong_gre_checksum() {
        let mut frame = over_v4(repr(0x0800, true, None, None), V4_DEFAULT, &inner_ping());
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        let e = decode(&frame).unwrap();
        assert!(e.gre.checksum);
        assert!(!e.checksum_ok);
    }

    #[test]
    fn decodes_gretap_inner_ethernet() {
        let e = decode(&over_v4(
            repr(0x6558, false, Some(5), None),
            V4_DEFAULT,
            &gretap_inner(),
        ))
        .unwrap();
        let inner = Inner::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 0xb],
            dst_mac: [2, 0, 0, 0, 0, 0xa],
            ethertype: 0x0800,
            ip: Some((TUN1.into(), TUN2.into(), 1)),
            echo_id: Some(ECHO_ID),
        };
        assert_eq!(e.inner, inner);
        assert_eq!(e.gre.key, Some(5));
    }

    #[test]
    fn vlan_tagged_gretap_frames_carry_no_inner_ip() {
        // capture reads no 802.1Q tag (the dataplane's offload skips one):
        // the inner frame is named by its tag's EtherType, with no IP.
        let tagged = [
            &gretap_inner()[..12],
            &[0x81, 0, 0, 5],
            &gretap_inner()[12..],
        ]
        .concat();
        let e = decode(&over_v4(
            repr(0x6558, false, None, None),
            V4_DEFAULT,
            &tagged,
        ))
        .unwrap();
        let inner = Inner::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 0xb],
            dst_mac: [2, 0, 0, 0, 0, 0xa],
            ethertype: 0x8100,
            ip: None,
            echo_id: None,
        };
        assert_eq!(e.inner, inner);
    }

    #[test]
    fn decodes_ip6gre() {
        let outer = ipv6(
            v6(1, 0),
            v6(2, 0),
            47,
            &gre_packet(repr(0x86dd, false, Some(1), None), &inner6()),
        );
        let e = decode(&eth(M2, M1, 0x86dd, &outer)).unwrap();
        assert_eq!(
            (e.outer_src, e.outer_dst),
            (IpAddr::from(v6(1, 0)), IpAddr::from(v6(2, 0)))
        );
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (64, 0, false, 0, outer.len())
        );
        let inner = Inner::Ip {
            src: v6(1, 1).into(),
            dst: v6(2, 1).into(),
            proto: 58,
            ttl: 64,
            df: false,
            len: 64,
            echo_id: Some(ECHO_ID6),
        };
        assert_eq!(e.inner, inner);
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_gre_packet() {
        // A short frame is padded to 60 bytes: the checksum covers only what
        // the outer IP length says.
        let mut frame = over_v4(repr(0x1234, true, None, None), V4_DEFAULT, b"x");
        frame.resize(60, 0xaa);
        let e = decode(&frame).unwrap();
        assert!(e.checksum_ok);
        assert_eq!(e.inner, Inner::Other(0x1234));
        assert!(describe(&frame)[1].ends_with("length 9"));
    }

    #[test]
    fn non_gre_frames_are_not_decoded() {
        assert_eq!(decode(&arp_request()), None);
        assert_eq!(decode(&eth(M2, M1, 0x0800, &inner_ping())), None);
        assert_eq!(decode(&[]), None);
        // A later fragment carries no GRE header.
        let mut frag = seed();
        frag[ETH_HLEN + 6] = 0x00;
        frag[ETH_HLEN + 7] = 0x10;
        assert_eq!(decode(&frag), None);
    }
}
