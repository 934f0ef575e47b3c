//! Frames for the tests: the seed lab's ping over GRE and the other
//! shapes tcpdump was asked about, built byte by byte.

use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime};

use super::{ETH_HLEN, Frame, Inner};
use crate::wire::checksum::internet_checksum;
use crate::wire::gre;
use crate::wire::ipv4::{HEADER_LEN, Ipv4Repr};

pub(super) const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub(super) const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub(super) const HOST1: [u8; 4] = [172, 16, 10, 2];
pub(super) const HOST2: [u8; 4] = [152, 16, 10, 2];
pub(super) const TUN1: [u8; 4] = [192, 168, 50, 1];
pub(super) const TUN2: [u8; 4] = [192, 168, 50, 2];

pub(super) fn v6(last: u16, net: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, net, 0, 0, 0, last)
}

pub(super) fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes(), payload].concat()
}

/// The outer IPv4 fields a frame varies.
pub(super) struct V4 {
    pub(super) ttl: u8,
    pub(super) id: u16,
    pub(super) tos: u8,
    pub(super) df: bool,
}
pub(super) const V4_DEFAULT: V4 = V4 {
    ttl: 64,
    id: 0,
    tos: 0,
    df: true,
};

pub(super) fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, o: V4, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src: src.into(),
        dst: dst.into(),
        protocol: proto,
        ttl: o.ttl,
        tos: o.tos,
        ident: o.id,
        dont_frag: o.df,
        payload_len: payload.len(),
    };
    let mut h = [&[0; HEADER_LEN][..], payload].concat();
    repr.emit(&mut h).unwrap();
    h
}

pub(super) fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

pub(super) fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = [
        &[8, 0, 0, 0][..],
        &id.to_be_bytes(),
        &seq.to_be_bytes(),
        data,
    ]
    .concat();
    let sum = internet_checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

pub(super) fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = icmp_echo(id, seq, data);
    m[0] = 128;
    m[2..4].fill(0);
    let pseudo = [
        &src.octets()[..],
        &dst.octets(),
        &(m.len() as u32).to_be_bytes(),
        &[0, 0, 0, 58],
        &m,
    ]
    .concat();
    let sum = internet_checksum(&pseudo);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

pub(super) fn gre_packet(repr: gre::Repr, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0; repr.header_len()];
    b.extend_from_slice(payload);
    repr.emit(&mut b).unwrap();
    b
}

pub(super) fn repr(
    protocol: u16,
    checksum: bool,
    key: Option<u32>,
    sequence: Option<u32>,
) -> gre::Repr {
    gre::Repr {
        protocol,
        checksum,
        key,
        sequence,
    }
}

/// The seed lab's ping: 192.168.50.1 > .2 inside 172.16.10.2 > 152.16.10.2.
pub(super) const ECHO_ID: u16 = 43241;
pub(super) const ECHO_ID6: u16 = 0x1234;

pub(super) fn inner_ping() -> Vec<u8> {
    let data: Vec<u8> = (0..56).collect();
    ipv4(
        TUN1,
        TUN2,
        1,
        V4 {
            id: 16117,
            ..V4_DEFAULT
        },
        &icmp_echo(43241, 1, &data),
    )
}

/// The seed's inner ping as [`decode`](super::decode) gives it.
pub(super) fn seed_inner() -> Inner {
    Inner::Ip {
        src: TUN1.into(),
        dst: TUN2.into(),
        proto: 1,
        ttl: 64,
        df: true,
        len: 84,
        echo_id: Some(ECHO_ID),
    }
}

pub(super) fn over_v4(g: gre::Repr, o: V4, payload: &[u8]) -> Vec<u8> {
    eth(
        M2,
        M1,
        0x0800,
        &ipv4(HOST1, HOST2, 47, o, &gre_packet(g, payload)),
    )
}

pub(super) fn seed() -> Vec<u8> {
    over_v4(
        repr(0x0800, false, None, None),
        V4 {
            ttl: 255,
            id: 18951,
            ..V4_DEFAULT
        },
        &inner_ping(),
    )
}

pub(super) fn gretap_inner() -> Vec<u8> {
    eth(
        [2, 0, 0, 0, 0, 0xa],
        [2, 0, 0, 0, 0, 0xb],
        0x0800,
        &inner_ping(),
    )
}

pub(super) fn inner6() -> Vec<u8> {
    ipv6(
        v6(1, 1),
        v6(2, 1),
        58,
        &icmp6_echo(v6(1, 1), v6(2, 1), 0x1234, 3, &(0..16).collect::<Vec<u8>>()),
    )
}

pub(super) fn arp_frame(op: u8, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let a = [&[0, 1, 8, 0, 6, 4, 0, op][..], &sha, &spa, &tha, &tpa].concat();
    eth(if op == 1 { [0xff; 6] } else { tha }, sha, 0x0806, &a)
}

pub(super) fn arp_request() -> Vec<u8> {
    arp_frame(1, M1, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
}

/// What a kernel without GRE answers the seed's packet: protocol 47 unreachable.
pub(super) fn gre_unreachable() -> Vec<u8> {
    let quoted = &seed()[ETH_HLEN..ETH_HLEN + 28];
    let mut m = [&[3, 2, 0, 0, 0, 0, 0, 0][..], quoted].concat();
    let sum = internet_checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    eth(
        M1,
        M2,
        0x0800,
        &ipv4(
            HOST2,
            HOST1,
            1,
            V4 {
                ttl: 64,
                id: 7,
                tos: 0xc0,
                df: false,
            },
            &m,
        ),
    )
}

pub(super) fn echo_reply() -> Vec<u8> {
    let mut m = icmp_echo(9, 2, b"abc");
    m[0] = 0;
    let sum = internet_checksum(&[&m[..2], &[0, 0], &m[4..]].concat());
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    eth(M1, M2, 0x0800, &ipv4(TUN2, TUN1, 1, V4_DEFAULT, &m))
}

pub(super) fn udp6() -> Vec<u8> {
    let (src, dst) = (v6(1, 1), v6(2, 1));
    let mut u = vec![0x30, 0x39, 0x01, 0xbb, 0, 12, 0, 0, 1, 2, 3, 4];
    let pseudo = [
        &src.octets()[..],
        &dst.octets(),
        &[0, 0, 0, 12, 0, 0, 0, 17],
        &u,
    ]
    .concat();
    let sum = internet_checksum(&pseudo);
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    eth(M2, M1, 0x86dd, &ipv6(src, dst, 17, &u))
}

pub(super) fn frame(data: Vec<u8>, secs: u64) -> Frame {
    let wire_len = data.len();
    let timestamp = SystemTime::UNIX_EPOCH + Duration::new(secs, 250_000_000);
    Frame {
        data,
        wire_len,
        timestamp,
        outgoing: false,
    }
}
