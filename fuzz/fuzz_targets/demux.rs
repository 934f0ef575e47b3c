//! The dataplane's receive classification over a fixed table of tunnel
//! ends: no packet makes it panic, every verdict agrees with the packet and
//! the table, and only an accepted (or empty) packet moves its end's
//! sequence state.
//!
//! Input: packets one after another, each `[via, len, len bytes]` (the last
//! may be shorter), so sequence numbers meet each other.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use grelab::dataplane::demux::{Accepted, Drop, EndState, Pair, Route, Table, classify};
use grelab::wire::gre;
use libfuzzer_sys::fuzz_target;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

/// One configured tunnel end, as the dataplane's setup enters it.
struct Conf {
    sock: usize,
    local: IpAddr,
    remote: IpAddr,
    key: Option<u32>,
    gretap: bool,
    checksum: bool,
    sequence: bool,
}

const fn end(sock: usize, local: IpAddr, remote: IpAddr, key: Option<u32>, gretap: bool) -> Conf {
    Conf {
        sock,
        local,
        remote,
        key,
        gretap,
        checksum: false,
        sequence: false,
    }
}

const ENDS: [Conf; 6] = [
    Conf {
        checksum: true,
        sequence: true,
        ..end(0, A, B, Some(7), false)
    },
    end(0, A, B, None, true),
    Conf {
        sequence: true,
        ..end(0, A, B, Some(9), true)
    },
    Conf {
        checksum: true,
        ..end(0, A, C, None, false)
    },
    Conf {
        sequence: true,
        ..end(1, A6, B6, None, false)
    },
    Conf {
        checksum: true,
        ..end(1, A6, B6, Some(1), true)
    },
];

/// (socket, outer source, outer destination) a packet arrives with.
const VIAS: [(usize, IpAddr, IpAddr); 7] = [
    (0, B, A),
    (0, C, A),
    (1, B6, A6),
    (0, A, B),
    (1, B, A),
    (2, B, A),
    (0, B6, A6),
];

fuzz_target!(|data: &[u8]| {
    let mut routes: HashMap<Route, usize> = HashMap::new();
    let mut pairs: HashMap<Pair, usize> = HashMap::new();
    let mut ends = Vec::new();
    for (i, e) in ENDS.iter().enumerate() {
        routes.insert((e.sock, e.local, e.remote, e.key, e.gretap), i);
        pairs.entry((e.sock, e.local, e.remote)).or_insert(i);
        ends.push(EndState {
            checksum: e.checksum,
            sequence: e.sequence,
            last_sequence: None,
        });
    }
    let mut rest = data;
    while let [via, len, tail @ ..] = rest {
        let (bytes, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let (sock, src, dst) = VIAS[usize::from(*via) % VIAS.len()];
        let before = ends.clone();
        let verdict = classify(
            &mut Table {
                routes: &routes,
                pairs: &pairs,
                ends: &mut ends,
            },
            sock,
            src,
            dst,
            bytes,
        );
        let Ok(packet) = gre::Packet::new_checked(bytes) else {
            assert_eq!(verdict, Err(Drop::Malformed));
            assert_eq!(ends, before);
            continue;
        };
        let (protocol, key) = (packet.protocol(), packet.key());
        let l2 = protocol == gre::ETHERTYPE_TEB;
        let moved = match verdict {
            Ok(Accepted {
                tunnel,
                payload_offset,
            }) => {
                assert_eq!(routes.get(&(sock, dst, src, key, l2)), Some(&tunnel));
                assert_eq!(payload_offset, packet.header_len());
                assert!(payload_offset < bytes.len());
                let checksum = ENDS[tunnel].checksum;
                assert!(l2 || protocol == gre::ETHERTYPE_IPV4 || protocol == gre::ETHERTYPE_IPV6);
                assert_eq!(packet.checksum_present(), checksum);
                assert!(gre::Repr::parse(&packet).is_ok());
                Some(tunnel)
            }
            Err(Drop::Malformed) => panic!("a valid header was called malformed"),
            Err(Drop::Unmatched) => {
                assert!(!pairs.contains_key(&(sock, dst, src)));
                None
            }
            Err(Drop::Key { tunnel }) => {
                assert_eq!(pairs.get(&(sock, dst, src)), Some(&tunnel));
                assert!(!routes.contains_key(&(sock, dst, src, key, l2)));
                assert!(!routes.contains_key(&(sock, dst, src, key, !l2)));
                None
            }
            Err(Drop::Protocol { tunnel }) => {
                // Ethernet for gre or IP for gretap, or neither IP nor Ethernet.
                let gretap = ENDS[tunnel].gretap;
                assert_eq!(routes.get(&(sock, dst, src, key, gretap)), Some(&tunnel));
                let ip = protocol == gre::ETHERTYPE_IPV4 || protocol == gre::ETHERTYPE_IPV6;
                assert!(gretap != l2 || !(gretap || ip));
                None
            }
            Err(Drop::Checksum { tunnel }) => {
                assert_eq!(routes.get(&(sock, dst, src, key, l2)), Some(&tunnel));
                let checksum = ENDS[tunnel].checksum;
                assert!(packet.checksum_present() != checksum || !packet.verify_checksum());
                None
            }
            Err(Drop::Sequence { tunnel }) => {
                assert_eq!(routes.get(&(sock, dst, src, key, l2)), Some(&tunnel));
                assert!(ENDS[tunnel].sequence);
                let (seq, last) = (packet.sequence(), before[tunnel].last_sequence);
                assert!(seq.is_none() || last.is_some_and(|l| !gre::seq_newer(seq.unwrap(), l)));
                None
            }
            Err(Drop::Empty { tunnel }) => {
                assert_eq!(routes.get(&(sock, dst, src, key, l2)), Some(&tunnel));
                assert_eq!(packet.header_len(), bytes.len());
                Some(tunnel)
            }
        };
        for (i, (now, was)) in ends.iter().zip(&before).enumerate() {
            if moved == Some(i) && ENDS[i].sequence {
                // The number taken is the packet's, and newer than the last.
                let seq = packet
                    .sequence()
                    .expect("accepted without a sequence number");
                assert_eq!(now.last_sequence, Some(seq));
                assert!(was.last_sequence.is_none_or(|l| gre::seq_newer(seq, l)));
            } else {
                assert_eq!(now, was, "end {i} changed");
            }
        }
    }
});
