//! Receive classification, sans-IO: which configured tunnel end a received
//! GRE packet belongs to, or the typed reason it is dropped. The dataplane
//! counts the reasons; this module only decides (and keeps each end's last
//! accepted sequence number).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::wire::gre;

/// Receive lookup: (socket, outer destination, outer source, key, carries Ethernet).
pub type Route = (usize, IpAddr, IpAddr, Option<u32>, bool);

/// (socket, outer destination, outer source): the tunnels between two addresses.
pub type Pair = (usize, IpAddr, IpAddr);

/// What classification needs of one configured tunnel end.
pub trait End {
    /// Whether the end expects a GRE checksum on every packet.
    fn checksum(&self) -> bool;
    /// Whether the end expects in-order sequence numbers.
    fn sequence(&self) -> bool;
    /// The sequence number of the last packet accepted (None before the first).
    fn last_sequence(&mut self) -> &mut Option<u32>;
}

/// A tunnel end's receive config and state as plain data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndState {
    pub checksum: bool,
    pub sequence: bool,
    pub last_sequence: Option<u32>,
}

impl End for EndState {
    fn checksum(&self) -> bool {
        self.checksum
    }
    fn sequence(&self) -> bool {
        self.sequence
    }
    fn last_sequence(&mut self) -> &mut Option<u32> {
        &mut self.last_sequence
    }
}

/// The configured tunnel ends: indices in `routes` and `pairs` index `ends`.
pub struct Table<'a, E> {
    /// Each tunnel end by what it receives.
    pub routes: &'a HashMap<Route, usize>,
    /// The first tunnel end of each address pair, which wrong keys are counted on.
    pub pairs: &'a HashMap<Pair, usize>,
    pub ends: &'a mut [E],
}

/// A packet for tunnel end `tunnel`, its payload at `bytes[payload_offset..]`
/// (never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub tunnel: usize,
    pub payload_offset: usize,
}

/// Why a received packet is dropped, and on which tunnel end it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a GRE version 0 header whose flagged fields fit.
    Malformed,
    /// No tunnel end between these addresses on this socket.
    Unmatched,
    /// The right addresses, but a key no tunnel end of theirs expects.
    Key { tunnel: usize },
    /// A payload type the end does not carry (IP on gretap, Ethernet on gre, other).
    Protocol { tunnel: usize },
    /// Checksum presence differs from the end's config, or the checksum is wrong.
    Checksum { tunnel: usize },
    /// Sequence number missing, or not newer than the last accepted.
    Sequence { tunnel: usize },
    /// A valid header with nothing after it: no packet for the device.
    Empty { tunnel: usize },
}

impl Drop {
    /// The tunnel end the drop counts on, if any.
    pub fn tunnel(self) -> Option<usize> {
        match self {
            Drop::Malformed | Drop::Unmatched => None,
            Drop::Key { tunnel }
            | Drop::Protocol { tunnel }
            | Drop::Checksum { tunnel }
            | Drop::Sequence { tunnel }
            | Drop::Empty { tunnel } => Some(tunnel),
        }
    }
}

/// Classifies the GRE packet `bytes` that socket `sock` received from `src`
/// for `dst`, checking it as ip_gre does. A sequence number that passes
/// becomes the end's last accepted one (also when the payload is empty).
pub fn classify<E: End>(
    table: &mut Table<'_, E>,
    sock: usize,
    src: IpAddr,
    dst: IpAddr,
    bytes: &[u8],
) -> Result<Accepted, Drop> {
    let packet = gre::Packet::new_checked(bytes).map_err(|_| Drop::Malformed)?;
    let protocol = packet.protocol();
    let l2 = protocol == gre::ETHERTYPE_TEB;
    let key = packet.key();
    let Some(&tunnel) = table.routes.get(&(sock, dst, src, key, l2)) else {
        // As ip_gre: an Ethernet payload belongs to gretap, others to gre.
        return Err(
            if let Some(&tunnel) = table.routes.get(&(sock, dst, src, key, !l2)) {
                Drop::Protocol { tunnel }
            } else if let Some(&tunnel) = table.pairs.get(&(sock, dst, src)) {
                Drop::Key { tunnel }
            } else {
                Drop::Unmatched
            },
        );
    };
    let end = &mut table.ends[tunnel];
    if !l2 && protocol != gre::ETHERTYPE_IPV4 && protocol != gre::ETHERTYPE_IPV6 {
        return Err(Drop::Protocol { tunnel });
    }
    // As ip_gre: checksum presence must match the config, and be valid.
    if packet.checksum_present() != end.checksum() || !packet.verify_checksum() {
        return Err(Drop::Checksum { tunnel });
    }
    if end.sequence() {
        let last = end.last_sequence();
        match packet.sequence() {
            Some(seq) if last.is_none_or(|last| gre::seq_newer(seq, last)) => *last = Some(seq),
            _ => return Err(Drop::Sequence { tunnel }),
        }
    }
    let payload_offset = packet.header_len();
    if payload_offset >= bytes.len() {
        return Err(Drop::Empty { tunnel });
    }
    Ok(Accepted {
        tunnel,
        payload_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

    fn packet(
        proto: u16,
        csum: bool,
        key: Option<u32>,
        seq: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = gre::Repr {
            protocol: proto,
            checksum: csum,
            key,
            sequence: seq,
        };
        let mut b = vec![0; repr.header_len()];
        b.extend_from_slice(payload);
        repr.emit(&mut b).unwrap();
        b
    }

    /// Three ends received from B at A on socket 0: 0 keyed IP with
    /// checksum and sequence, 1 unkeyed gretap, 2 keyed gretap; and one at
    /// A6 from B6 on socket 1: 3, plain IP.
    fn table() -> (HashMap<Route, usize>, HashMap<Pair, usize>, Vec<EndState>) {
        let routes = HashMap::from([
            ((0, A, B, Some(7), false), 0),
            ((0, A, B, None, true), 1),
            ((0, A, B, Some(9), true), 2),
            ((1, A6, B6, None, false), 3),
        ]);
        let pairs = HashMap::from([((0, A, B), 0), ((1, A6, B6), 3)]);
        let ends = vec![
            EndState {
                checksum: true,
                sequence: true,
                last_sequence: None,
            },
            EndState::default(),
            EndState::default(),
            EndState::default(),
        ];
        (routes, pairs, ends)
    }

    #[test]
    fn every_drop_reason_and_acceptance() {
        const IP4: u16 = gre::ETHERTYPE_IPV4;
        const IP6: u16 = gre::ETHERTYPE_IPV6;
        const TEB: u16 = gre::ETHERTYPE_TEB;
        const P: &[u8] = b"payload";
        // (socket, outer source, outer destination): socket 0 from B for A,
        // or socket 1 from B6 for A6.
        type Via = (usize, IpAddr, IpAddr);
        const V4: Via = (0, B, A);
        const V6: Via = (1, B6, A6);
        let g = |proto, csum, key, seq| packet(proto, csum, key, seq, P);
        let mut bad_sum = g(IP4, true, Some(7), Some(1));
        bad_sum[4] ^= 1;
        let ok = |tunnel, payload_offset| {
            Ok(Accepted {
                tunnel,
                payload_offset,
            })
        };
        // In order: the sequence numbers build on each other.
        #[rustfmt::skip]
        let cases = vec![
            ("too short", V4, vec![0, 0, 8], Err(Drop::Malformed)),
            ("version 1", V4, vec![0x20, 1, 0x88, 0x0b, 0, 0, 0, 7], Err(Drop::Malformed)),
            ("key announced, cut", V4, vec![0x20, 0, 8, 0, 0, 0], Err(Drop::Malformed)),
            ("routing bit", V4, vec![0x40, 0, 8, 0, 0, 0, 0, 0], Err(Drop::Malformed)),
            ("unknown source", (0, C, A), g(IP4, true, Some(7), Some(1)), Err(Drop::Unmatched)),
            ("wrong socket", (1, B, A), g(IP4, true, Some(7), Some(1)), Err(Drop::Unmatched)),
            ("swapped addresses", (0, A, B), g(IP4, true, Some(7), Some(1)), Err(Drop::Unmatched)),
            ("unknown key", V4, g(IP4, true, Some(8), Some(1)), Err(Drop::Key { tunnel: 0 })),
            ("unknown key, gretap", V4, g(TEB, false, Some(8), None), Err(Drop::Key { tunnel: 0 })),
            ("no key: only gretap has none", V4, g(IP4, true, None, Some(1)),
             Err(Drop::Protocol { tunnel: 1 })),
            ("Ethernet on keyed gre", V4, g(TEB, true, Some(7), Some(1)),
             Err(Drop::Protocol { tunnel: 0 })),
            ("IP on keyed gretap", V4, g(IP4, false, Some(9), None), Err(Drop::Protocol { tunnel: 2 })),
            ("ARP on gre", V4, g(0x0806, true, Some(7), Some(1)), Err(Drop::Protocol { tunnel: 0 })),
            ("no checksum where expected", V4, g(IP4, false, Some(7), Some(1)),
             Err(Drop::Checksum { tunnel: 0 })),
            ("wrong checksum", V4, bad_sum, Err(Drop::Checksum { tunnel: 0 })),
            ("checksum where none expected", V4, g(TEB, true, None, None),
             Err(Drop::Checksum { tunnel: 1 })),
            ("no sequence where expected", V4, g(IP4, true, Some(7), None),
             Err(Drop::Sequence { tunnel: 0 })),
            ("first sequence number", V4, g(IP4, true, Some(7), Some(100)), ok(0, 16)),
            ("replay", V4, g(IP4, true, Some(7), Some(100)), Err(Drop::Sequence { tunnel: 0 })),
            ("older", V4, g(IP4, true, Some(7), Some(99)), Err(Drop::Sequence { tunnel: 0 })),
            ("half the space ahead", V4, g(IP4, true, Some(7), Some(100 + (1 << 31))),
             Err(Drop::Sequence { tunnel: 0 })),
            ("newer, IPv6 payload", V4, g(IP6, true, Some(7), Some(101)), ok(0, 16)),
            ("header only: its number counts as seen", V4,
             packet(IP4, true, Some(7), Some(102), &[]), Err(Drop::Empty { tunnel: 0 })),
            ("that number again", V4, g(IP4, true, Some(7), Some(102)),
             Err(Drop::Sequence { tunnel: 0 })),
            ("a sequence number not expected is ignored", V4, g(TEB, false, None, Some(5)), ok(1, 8)),
            ("gretap, unkeyed", V4, g(TEB, false, None, None), ok(1, 4)),
            ("gretap, keyed", V4, g(TEB, false, Some(9), None), ok(2, 8)),
            ("header only, gretap", V4, packet(TEB, false, None, None, &[]),
             Err(Drop::Empty { tunnel: 1 })),
            ("IPv6 outer", V6, g(IP6, false, None, None), ok(3, 4)),
            ("IPv6 outer, a key", V6, g(IP6, false, Some(1), None), Err(Drop::Key { tunnel: 3 })),
        ];
        let (routes, pairs, mut ends) = table();
        let mut table = Table {
            routes: &routes,
            pairs: &pairs,
            ends: &mut ends,
        };
        for (what, (sock, src, dst), bytes, want) in cases {
            let got = classify(&mut table, sock, src, dst, &bytes);
            assert_eq!(got, want, "{what}");
            if let Ok(a) = got {
                assert_eq!(&bytes[a.payload_offset..], P, "{what}");
            }
        }
        assert_eq!(ends[0].last_sequence, Some(102));
        // Ends without sequence numbers keep no state.
        assert!(ends[1..].iter().all(|e| e.last_sequence.is_none()));
    }

    #[test]
    fn wrap_around_is_newer() {
        let (routes, pairs, mut ends) = table();
        ends[0].last_sequence = Some(u32::MAX);
        let mut table = Table {
            routes: &routes,
            pairs: &pairs,
            ends: &mut ends,
        };
        let bytes = packet(gre::ETHERTYPE_IPV4, true, Some(7), Some(0), b"x");
        assert_eq!(
            classify(&mut table, 0, B, A, &bytes),
            Ok(Accepted {
                tunnel: 0,
                payload_offset: 16
            })
        );
        assert_eq!(ends[0].last_sequence, Some(0));
    }

    #[test]
    fn drops_name_their_tunnel() {
        assert_eq!(Drop::Malformed.tunnel(), None);
        assert_eq!(Drop::Unmatched.tunnel(), None);
        assert_eq!(Drop::Key { tunnel: 3 }.tunnel(), Some(3));
        assert_eq!(Drop::Empty { tunnel: 1 }.tunnel(), Some(1));
    }
}
