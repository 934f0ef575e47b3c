//! The programs run by the kernel on frames of bytes (BPF_PROG_TEST_RUN),
//! with the tables filled as a dataplane fills them: what they take out
//! must be the bytes wire:: builds for the same packet; what they leave
//! must come back untouched, with the verdict that passes it on.
//!
//! The kernel presents every test frame as received on an Ethernet device
//! (loopback, whose address is all zeros: so a zero destination MAC is
//! "for this host"), so a TUN egress program (gre, ip6gre: IP at offset
//! 0) cannot be run this way; its bytes are checked on the wire by
//! `outer_id_and_df_as_ip_gre_on_the_fast_path`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;

use super::super::bpf::{load, test_run};
use super::super::programs::{decap_program, encap_program};
use super::super::*;
use crate::dataplane::testing::{encap, end};
use crate::model::TunnelKind;
use crate::wire::checksum::internet_checksum;
use crate::wire::gre;
use crate::wire::ipv4::{HEADER_LEN, Ipv4Repr};

/// Verdicts: TC_ACT_REDIRECT (to the tunnel's device, or the underlay's
/// neighbour), and TCX_NEXT (on to the stack) as the kernel returns it.
const REDIRECT: u32 = 7;
const NEXT: u32 = u32::MAX;

const HOST: [u8; 6] = [0; 6];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const A: [u8; 4] = [172, 16, 10, 2];
const B: [u8; 4] = [152, 16, 10, 2];

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src, &ethertype.to_be_bytes(), payload].concat()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, tos: u8, ttl: u8, id: u16, p: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src: src.into(),
        dst: dst.into(),
        protocol,
        ttl,
        tos,
        ident: id,
        dont_frag: true,
        payload_len: p.len(),
    };
    let mut b = [&[0; HEADER_LEN][..], p].concat();
    repr.emit(&mut b).unwrap();
    b
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop: u8, p: &[u8]) -> Vec<u8> {
    let len = (p.len() as u16).to_be_bytes();
    [
        &[0x60, 0, 0, 0, len[0], len[1], next, hop][..],
        &src.octets(),
        &dst.octets(),
        p,
    ]
    .concat()
}

fn gre(protocol: u16, key: Option<u32>, p: &[u8]) -> Vec<u8> {
    let repr = gre::Repr {
        protocol,
        checksum: false,
        key,
        sequence: None,
    };
    let mut b = [&vec![0; repr.header_len()][..], p].concat();
    repr.emit(&mut b).unwrap();
    b
}

/// The inner packet: 192.168.50.1 -> .2, some ICMP-looking bytes.
fn inner(tos: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..40).collect();
    ipv4(
        [192, 168, 50, 1],
        [192, 168, 50, 2],
        1,
        tos,
        64,
        0x1234,
        &data,
    )
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A fast path whose namespace 1 has an IPv4 gre tunnel with key 42
/// (tunnel 0), an unkeyed gretap one (1) and an ip6gre one (2), all from
/// A (or fd00:a::2) to B (fd00:b::2); and its receive program.
fn receiver() -> (FastPath, OwnedFd) {
    let fp = FastPath::new(4).expect("eBPF maps");
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
    let mut gre = end("k", "n", TunnelKind::Gre, &ip(B), &ip(A));
    gre.ikey = Some(42);
    fp.add_route(1, &gre, 9, 0).unwrap();
    let tap = end("t", "n", TunnelKind::Gretap, &ip(B), &ip(A));
    fp.add_route(1, &tap, 10, 1).unwrap();
    let six = end("s", "n", TunnelKind::Ip6gre, "fd00:b::2", "fd00:a::2");
    fp.add_route(1, &six, 11, 2).unwrap();
    let code = decap_program(1, [fp.table.fd(), fp.table6.fd()], fp.counters.fd());
    let prog = load(&code, "t_decap").expect("decap loads");
    (fp, prog)
}

/// GRE from A to B with key `key`, outer TOS `tos`, as it reaches B.
fn over_v4(tos: u8, key: Option<u32>, protocol: u16, payload: &[u8]) -> Vec<u8> {
    let g = gre(protocol, key, payload);
    eth(HOST, PEER_MAC, 0x0800, &ipv4(A, B, 47, tos, 64, 7, &g))
}

/// The known gre tunnel's packet: key 42, outer TOS `tos`.
fn keyed(tos: u8, payload: &[u8]) -> Vec<u8> {
    over_v4(tos, Some(42), 0x0800, payload)
}

#[test]
fn decap_takes_the_outer_headers_off_known_gre() {
    let (fp, prog) = receiver();
    let frame = keyed(0, &inner(0));
    let (verdict, out) = test_run(&prog, &frame).expect("test run");
    assert_eq!(verdict, REDIRECT, "to the tunnel's device");
    assert_eq!(out, eth(HOST, PEER_MAC, 0x0800, &inner(0)));
    let c = fp.counters(0).unwrap();
    assert_eq!((c.rx_packets, c.rx_bytes), (1, inner(0).len() as u64));

    // gretap: the inner frame, whole, in place of the outer one.
    let frame_in = eth(
        [2, 0, 0, 0, 0, 0xa],
        [2, 0, 0, 0, 0, 0xb],
        0x0800,
        &inner(0),
    );
    let g = gre(0x6558, None, &frame_in);
    let (verdict, out) = test_run(
        &prog,
        &eth(HOST, PEER_MAC, 0x0800, &ipv4(A, B, 47, 0, 64, 8, &g)),
    )
    .unwrap();
    assert_eq!((verdict, &out), (REDIRECT, &frame_in));
    assert_eq!(fp.counters(1).unwrap().rx_bytes, frame_in.len() as u64);

    // ip6gre, with an IPv6 packet inside.
    let inner6 = ipv6(v6("fd00:66::1"), v6("fd00:66::2"), 59, 64, &[1, 2, 3, 4]);
    let g = gre(0x86dd, None, &inner6);
    let outer6 = ipv6(v6("fd00:a::2"), v6("fd00:b::2"), 47, 64, &g);
    let (verdict, out) = test_run(&prog, &eth(HOST, PEER_MAC, 0x86dd, &outer6)).unwrap();
    assert_eq!(
        (verdict, out),
        (REDIRECT, eth(HOST, PEER_MAC, 0x86dd, &inner6))
    );
    assert_eq!(fp.counters(2).unwrap().rx_packets, 1);
}

#[test]
fn decap_marks_congestion_as_rfc_6040_says() {
    let (_fp, prog) = receiver();
    // Outer CE over an ECT(0) packet: the inner packet leaves CE, with its
    // header checksum updated.
    let (verdict, out) = test_run(&prog, &keyed(0xb8 | 3, &inner(0x28 | 2))).unwrap();
    assert_eq!(verdict, REDIRECT);
    assert_eq!(out, eth(HOST, PEER_MAC, 0x0800, &inner(0x28 | 3)));
    // CE over a Not-ECT packet: left to userspace, which drops it.
    let frame = keyed(3, &inner(0x28));
    assert_eq!(test_run(&prog, &frame).unwrap(), (NEXT, frame));
}

/// `frame` with the IPv4 header at `at` changed by `f`, its checksum
/// made right again.
fn edit_ipv4(mut frame: Vec<u8>, at: usize, f: impl Fn(&mut [u8])) -> Vec<u8> {
    f(&mut frame[at..at + HEADER_LEN]);
    frame[at + 10..at + 12].fill(0);
    let sum = internet_checksum(&frame[at..at + HEADER_LEN]);
    frame[at + 10..at + 12].copy_from_slice(&sum.to_be_bytes());
    frame
}

#[test]
fn decap_passes_what_it_must_not_take_untouched() {
    let (fp, prog) = receiver();
    let good = keyed(0, &inner(0));
    let vlan = {
        let mut f = good[..12].to_vec();
        f.extend([0x81, 0, 0, 5]);
        f.extend(&good[12..]);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a wrong key", over_v4(0, Some(43), 0x0800, &inner(0))),
        (
            "an unknown sender",
            edit_ipv4(good.clone(), 14, |h| h[12] = 10),
        ),
        ("not GRE", edit_ipv4(good.clone(), 14, |h| h[9] = 17)),
        (
            "a first fragment",
            edit_ipv4(good.clone(), 14, |h| h[6] |= 0x20),
        ),
        (
            "a later fragment",
            edit_ipv4(good.clone(), 14, |h| h[7] = 1),
        ),
        ("IPv4 options", edit_ipv4(good.clone(), 14, |h| h[0] = 0x46)),
        ("a bad header checksum", {
            let mut f = good.clone();
            f[14 + 10] ^= 1;
            f
        }),
        ("a VLAN tag", vlan),
        ("another host's MAC", [&PEER_MAC[..], &good[6..]].concat()),
        ("broadcast", [&[0xff; 6][..], &good[6..]].concat()),
        ("padding after the packet", [&good[..], &[0; 4]].concat()),
        ("a GRE checksum", {
            let g = [&[0x80, 0, 8, 0, 0, 0, 0, 0][..], &inner(0)].concat();
            eth(HOST, PEER_MAC, 0x0800, &ipv4(A, B, 47, 0, 64, 7, &g))
        }),
        ("GRE version 1", {
            let mut f = good.clone();
            f[14 + 21] = 1;
            f
        }),
        (
            "a GRE type not carried (ARP)",
            over_v4(0, Some(42), 0x0806, &[0; 28]),
        ),
        ("ARP", eth(HOST, PEER_MAC, 0x0806, &[0; 28])),
    ];
    for (what, frame) in cases {
        let run = test_run(&prog, &frame).expect("test run");
        assert_eq!(run, (NEXT, frame), "{what}: passed on as it is");
    }
    assert_eq!(
        fp.counters(0).unwrap(),
        Counters::default(),
        "nothing counted"
    );
    // Another namespace's program does not know namespace 1's tunnels.
    let other = decap_program(2, [fp.table.fd(), fp.table6.fd()], fp.counters.fd());
    let other = load(&other, "t_decap2").unwrap();
    assert_eq!(test_run(&other, &good).unwrap(), (NEXT, good));
}

/// A gretap frame from the TAP device: IPv4 inside, TOS `tos`.
fn tap_frame(tos: u8) -> Vec<u8> {
    eth(
        [2, 0, 0, 0, 0, 0xb],
        [2, 0, 0, 0, 0, 0xa],
        0x0800,
        &inner(tos),
    )
}

#[test]
fn encap_puts_ip_gre_headers_in_front_of_a_frame() {
    let fp = FastPath::new(4).expect("eBPF maps");
    let e = Encap {
        index: 1,
        key: Some(7),
        tos: 1,
        l2: true,
        id_base: 100,
        ..encap()
    };
    let prog = load(&encap_program(&e, fp.counters.fd()), "t_encap").unwrap();
    let frame = tap_frame(0xb8 | 3);
    for id in [100, 101] {
        let (verdict, out) = test_run(&prog, &frame).expect("test run");
        assert_eq!(verdict, REDIRECT, "to the underlay's neighbour");
        // An Ethernet header for the neighbour table to fill, outer IPv4 of
        // the inner DSCP and CE sent as ECT(0) (RFC 6040), the IDs going on
        // from id_base, GRE with the key.
        let g = gre(0x6558, Some(7), &frame);
        let want = [&[0; 14][..], &ipv4(A, B, 47, 0xb8 | 2, 255, id, &g)].concat();
        assert_eq!(out, want, "packet with ID {id}");
    }
    let c = fp.counters(1).unwrap();
    assert_eq!((c.tx_packets, c.tx_bytes), (2, 2 * frame.len() as u64));

    // Over IPv6, unkeyed, the hop limit inherited.
    let e6 = Encap {
        local: "fd00:a::2".parse().unwrap(),
        remote: "fd00:b::2".parse().unwrap(),
        ttl: 0,
        l2: true,
        ..encap()
    };
    let prog6 = load(&encap_program(&e6, fp.counters.fd()), "t_encap6").unwrap();
    let frame = tap_frame(0);
    let (verdict, out) = test_run(&prog6, &frame).unwrap();
    let g = gre(0x6558, None, &frame);
    let want = ipv6(v6("fd00:a::2"), v6("fd00:b::2"), 47, 64, &g);
    assert_eq!((verdict, out), (REDIRECT, [&[0; 14][..], &want].concat()));
}

#[test]
fn encap_passes_what_it_does_not_carry_untouched() {
    let fp = FastPath::new(4).expect("eBPF maps");
    let e = Encap {
        l2: true,
        ..encap()
    };
    let prog = load(&encap_program(&e, fp.counters.fd()), "t_encap").unwrap();
    let ip = tap_frame(0);
    let vlan = [&ip[..12], &[0x81, 0, 0, 5], &ip[12..]].concat();
    for (what, frame) in [
        ("ARP", eth([0xff; 6], PEER_MAC, 0x0806, &[0; 28])),
        ("a VLAN-tagged frame", vlan),
    ] {
        let run = test_run(&prog, &frame).expect("test run");
        assert_eq!(run, (NEXT, frame), "{what}: left to userspace");
    }
    assert_eq!(fp.counters(e.index).unwrap(), Counters::default());
}
