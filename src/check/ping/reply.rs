//! What a packet received on a ping's socket means for it: an echo reply
//! to one of its requests, an ICMP error quoting one, or nothing of its own.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ECHO_REPLY_V4, ECHO_REPLY_V6, ECHO_REQUEST_V4, ECHO_REQUEST_V6, ICMP_HDR};
use crate::wire::checksum::internet_checksum as checksum;
use crate::wire::ipv4::Ipv4Packet;

/// What a received packet means for this ping.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    Reply { seq: u16, bytes: usize, ttl: u8 },
    Error { seq: u16, what: String },
}

/// Parses an IPv4 packet (raw ICMP sockets get the IP header too).
pub(super) fn parse_v4(pkt: &[u8], target: Ipv4Addr, id: u16) -> Option<Seen> {
    let ip = Ipv4Packet::new_checked(pkt).ok()?;
    let icmp = ip.payload();
    if icmp.len() < ICMP_HDR {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    if ty == ECHO_REPLY_V4 {
        if code != 0 || be16(icmp, 4)? != id || checksum(icmp) != 0 {
            return None;
        }
        return Some(Seen::Reply {
            seq: be16(icmp, 6)?,
            bytes: icmp.len(),
            ttl: ip.ttl(),
        });
    }
    // An error quotes our request: its IP header, then the first 8 ICMP bytes.
    let quoted = Ipv4Packet::new_checked(icmp.get(ICMP_HDR..)?).ok()?;
    let qicmp = quoted.payload().get(..ICMP_HDR)?;
    if quoted.protocol() != 1
        || quoted.dst() != target
        || qicmp[0] != ECHO_REQUEST_V4
        || be16(qicmp, 4)? != id
    {
        return None;
    }
    let what = match (ty, code) {
        (3, 0) => "Destination Net Unreachable".into(),
        (3, 1) => "Destination Host Unreachable".into(),
        (3, 2) => "Destination Protocol Unreachable".into(),
        (3, 3) => "Destination Port Unreachable".into(),
        (3, 4) => format!("Frag needed and DF set (mtu = {})", be16(icmp, 6)?),
        (3, 5) => "Source Route Failed".into(),
        (3, 6) => "Destination Net Unknown".into(),
        (3, 7) => "Destination Host Unknown".into(),
        (3, 9) => "Destination Net Prohibited".into(),
        (3, 10) => "Destination Host Prohibited".into(),
        (3, 13) => "Packet filtered".into(),
        (3, c) => format!("Dest Unreachable, Bad Code: {c}"),
        (11, 0) => "Time to live exceeded".into(),
        (11, _) => "Frag reassembly time exceeded".into(),
        (12, _) => format!("Parameter problem: pointer = {}", icmp[4]),
        _ => return None,
    };
    Some(Seen::Error {
        seq: be16(qicmp, 6)?,
        what,
    })
}

/// Parses an ICMPv6 message (raw ICMPv6 sockets get no IP header; the hop
/// limit comes as a control message).
pub(super) fn parse_v6(icmp: &[u8], target: Ipv6Addr, id: u16, hop_limit: u8) -> Option<Seen> {
    if icmp.len() < ICMP_HDR {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    if ty == ECHO_REPLY_V6 {
        if code != 0 || be16(icmp, 4)? != id {
            return None;
        }
        return Some(Seen::Reply {
            seq: be16(icmp, 6)?,
            bytes: icmp.len(),
            ttl: hop_limit,
        });
    }
    // An error quotes our request: the 40-byte IPv6 header, then ICMPv6
    // (no extension headers: we send none).
    let quoted = icmp.get(ICMP_HDR..)?;
    let qdst = Ipv6Addr::from(<[u8; 16]>::try_from(quoted.get(24..40)?).ok()?);
    let qicmp = quoted.get(40..40 + ICMP_HDR)?;
    if quoted[6] != 58 || qdst != target || qicmp[0] != ECHO_REQUEST_V6 || be16(qicmp, 4)? != id {
        return None;
    }
    let what = match (ty, code) {
        (1, 0) => "Destination unreachable: No route".into(),
        (1, 1) => "Destination unreachable: Administratively prohibited".into(),
        (1, 2) => "Destination unreachable: Beyond scope of source address".into(),
        (1, 3) => "Destination unreachable: Address unreachable".into(),
        (1, 4) => "Destination unreachable: Port unreachable".into(),
        (1, c) => format!("Destination unreachable: Unknown code {c}"),
        (2, _) => format!(
            "Packet too big: mtu={}",
            u32::from_be_bytes(icmp[4..8].try_into().ok()?)
        ),
        (3, 0) => "Time exceeded: Hop limit".into(),
        (3, _) => "Time exceeded: Defrag".into(),
        (4, _) => format!("Parameter problem: code {code}"),
        _ => return None,
    };
    Some(Seen::Error {
        seq: be16(qicmp, 6)?,
        what,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::{HEADER_LEN, Ipv4Repr};

    /// An IPv4 packet (no options) from `src` to `dst` carrying `proto`.
    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src: src.into(),
            dst: dst.into(),
            protocol: proto,
            ttl,
            tos: 0,
            ident: 0,
            dont_frag: false,
            payload_len: payload.len(),
        };
        let mut p = [&[0; HEADER_LEN][..], payload].concat();
        repr.emit(&mut p).unwrap();
        p
    }

    fn icmp4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0];
        m.extend(rest);
        m.extend(body);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn parses_v4_replies_and_quoted_errors() {
        let target = Ipv4Addr::new(192, 0, 2, 2);
        let reply = icmp4(0, 0, [0x12, 0x34, 0, 7], &[0u8; 56]);
        let mut pkt = ipv4([192, 0, 2, 2], [192, 0, 2, 1], 1, 63, &reply);
        assert_eq!(
            parse_v4(&pkt, target, 0x1234),
            Some(Seen::Reply {
                seq: 7,
                bytes: 64,
                ttl: 63
            })
        );
        assert_eq!(
            parse_v4(&pkt, target, 0x1235),
            None,
            "another ping's identifier"
        );
        let last = pkt.len() - 1;
        pkt[last] ^= 1;
        assert_eq!(parse_v4(&pkt, target, 0x1234), None, "bad checksum");

        // Frag needed from a router, quoting our request to `target`.
        let quoted = ipv4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            1,
            64,
            &icmp4(8, 0, [0x12, 0x34, 0, 2], &[]),
        );
        let frag_needed = |quoted: &[u8]| {
            let icmp = icmp4(3, 4, [0, 0, 0x05, 0x78], quoted);
            ipv4([198, 51, 100, 1], [192, 0, 2, 1], 1, 64, &icmp)
        };
        let err = frag_needed(&quoted);
        assert_eq!(
            parse_v4(&err, target, 0x1234),
            Some(Seen::Error {
                seq: 2,
                what: "Frag needed and DF set (mtu = 1400)".into()
            })
        );
        assert_eq!(
            parse_v4(&err, Ipv4Addr::new(192, 0, 2, 3), 0x1234),
            None,
            "other target"
        );
        // A router may quote only the first 8 bytes of a longer request:
        // the quoted header's length is the request's, not what is quoted.
        let mut long = quoted.clone();
        long[2..4].copy_from_slice(&1428u16.to_be_bytes());
        assert_eq!(
            parse_v4(&frag_needed(&long), target, 0x1234),
            parse_v4(&err, target, 0x1234)
        );
        assert_eq!(parse_v4(&err[..30], target, 0x1234), None, "truncated");
        assert_eq!(parse_v4(&[], target, 0x1234), None);
        assert_eq!(
            parse_v4(&[0x4f; 10], target, 0x1234),
            None,
            "header longer than packet"
        );
        let mut short = ipv4([192, 0, 2, 2], [192, 0, 2, 1], 1, 63, &reply);
        short[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            parse_v4(&short, target, 0x1234),
            None,
            "total length shorter than the header"
        );
    }

    #[test]
    fn parses_v6_replies_and_quoted_errors() {
        let target: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let reply = [129, 0, 0, 0, 0xab, 0xcd, 0, 3];
        assert_eq!(
            parse_v6(&reply, target, 0xabcd, 64),
            Some(Seen::Reply {
                seq: 3,
                bytes: 8,
                ttl: 64
            })
        );
        assert_eq!(parse_v6(&reply[..7], target, 0xabcd, 64), None);

        let mut err = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        ip6.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        ip6.extend(target.octets());
        err.extend(ip6);
        err.extend([128, 0, 0, 0, 0xab, 0xcd, 0, 1]);
        assert_eq!(
            parse_v6(&err, target, 0xabcd, 64),
            Some(Seen::Error {
                seq: 1,
                what: "Packet too big: mtu=1400".into()
            })
        );
        assert_eq!(parse_v6(&err, target, 0xabce, 64), None);
        // Neighbour discovery and the like are not ours.
        assert_eq!(
            parse_v6(&[135, 0, 0, 0, 0, 0, 0, 0, 1, 2], target, 0xabcd, 255),
            None
        );
    }
}
