//! The userspace path: pings, TCP streams, keys, IPv6 underlays.

use std::net::Ipv6Addr;

use super::fixture::*;
use crate::model::TunnelKind;

#[test]
fn gre_ping_outer_header_and_rtt() {
    let lab = Lab::new("gre");
    let (mut a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    (a.ttl, a.tos) = (255, 0x20);
    let dp = Dp::start(&lab, vec![a, b]);
    ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
    let tunnel =
        ping(&lab.a, "192.168.50.2", 10).unwrap_or_else(|o| panic!("ping over gre failed:\n{o}"));
    let plain =
        ping(&lab.a, "152.16.10.2", 10).unwrap_or_else(|o| panic!("plain ping failed:\n{o}"));
    eprintln!(
        "RTT avg: over the userspace gre tunnel {:.3} ms, plain underlay {:.3} ms",
        avg_rtt(&tunnel),
        avg_rtt(&plain)
    );

    // What host1 puts on the wire, seen at the router.
    let p = echo_on_the_wire(&lab, "192.168.50.2", [0, 0, 8, 0]);
    assert_eq!(p[8], 255, "outer TTL");
    assert_eq!(
        u16::from_be_bytes([p[6], p[7]]) & 0x4000,
        0x4000,
        "outer DF (pmtudisc)"
    );
    assert_eq!(p[1], 0x20, "outer TOS");
    assert_eq!(p[16..20], [152, 16, 10, 2], "outer destination");
    assert_eq!(
        p[20..24],
        [0, 0, 0x08, 0x00],
        "a plain 4-byte GRE header carrying IPv4"
    );
    assert_eq!(p[24] >> 4, 4, "the inner IPv4 packet follows");

    let s = dp.finish();
    for ns in [&lab.a, &lab.b] {
        let t = stat(&s, ns, "tun0");
        assert!(t.tx_packets >= 13 && t.rx_packets >= 13, "{t:?}");
        assert_eq!(
            (
                t.drop_key,
                t.drop_checksum,
                t.drop_sequence,
                t.drop_protocol,
                t.tx_errors
            ),
            (0, 0, 0, 0, 0),
            "{t:?}"
        );
    }
}

#[test]
fn tcp_streams_arrive_intact_through_gre_and_gretap() {
    let lab = Lab::new("tcp");
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let (mut ka, mut kb) = pair(&lab, "kcs0", TunnelKind::Gre);
    for e in [&mut ka, &mut kb] {
        (e.ikey, e.okey, e.checksum, e.sequence) = (Some(5), Some(5), true, true);
    }
    let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
    let dp = Dp::start(&lab, vec![a, b, ka, kb, ta, tb]);
    for (dev, net) in [("tun0", "50"), ("kcs0", "51"), ("tap0", "52")] {
        ip(&lab.a, &format!("addr add 192.168.{net}.1/24 dev {dev}"));
        ip(&lab.b, &format!("addr add 192.168.{net}.2/24 dev {dev}"));
    }
    ip(&lab.a, "addr add fd00:51::1/64 dev kcs0 nodad");
    ip(&lab.b, "addr add fd00:51::2/64 dev kcs0 nodad");
    const LEN: usize = 8 << 20;
    for (dev, to) in [
        ("tun0", "192.168.50.2"),
        ("kcs0 (key, checksum, sequence; inner IPv6)", "fd00:51::2"),
        ("tap0", "192.168.52.2"),
    ] {
        let took = tcp_transfer(&lab.a, &lab.b, to.parse().unwrap(), LEN);
        eprintln!("{dev}: 8 MiB in {took:?}");
    }
    // And back: the other end cuts and the first joins.
    tcp_transfer(&lab.b, &lab.a, "192.168.52.1".parse().unwrap(), LEN);
    let s = dp.finish();
    for t in &s.tunnels {
        assert_eq!(
            (t.tx_errors, t.rx_errors, t.drop_checksum, t.drop_sequence),
            (0, 0, 0, 0),
            "{t:?}"
        );
        // Both ends send data on tap0; on the others, a sends and b receives.
        if t.netns == lab.a || t.name == "tap0" {
            assert!(
                t.tx_gso > 0,
                "the device handed over no super-packet: {t:?}"
            );
        }
        if t.netns == lab.b || t.name == "tap0" {
            assert!(t.rx_bytes >= LEN as u64, "{t:?}");
            assert!(t.rx_gro > 0, "no received segments were joined: {t:?}");
        }
    }
}

#[test]
fn tcp_stream_arrives_intact_without_offloads() {
    let lab = Lab::new("tcpoff");
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let dp = Dp::start_with(&lab, vec![a, b], false, false);
    ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
    tcp_transfer(&lab.a, &lab.b, "192.168.50.2".parse().unwrap(), 4 << 20);
    let s = dp.finish();
    for t in &s.tunnels {
        assert_eq!(
            (t.tx_gso, t.rx_gro, t.tx_errors, t.rx_errors),
            (0, 0, 0, 0),
            "{t:?}"
        );
    }
    assert!(stat(&s, &lab.b, "tun0").rx_bytes >= 4 << 20);
}

#[test]
fn gretap_resolves_arp_and_pings() {
    let lab = Lab::new("tap");
    let (a, b) = pair(&lab, "tap0", TunnelKind::Gretap);
    let dp = Dp::start(&lab, vec![a, b]);
    ip(&lab.a, "addr add 192.168.50.1/30 dev tap0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tap0");
    ping(&lab.a, "192.168.50.2", 3).unwrap_or_else(|o| panic!("ping over gretap failed:\n{o}"));
    let neigh = ip(&lab.a, "neigh show 192.168.50.2 dev tap0");
    assert!(
        neigh.contains("lladdr"),
        "ARP did not resolve over gretap: {neigh}"
    );
    let s = dp.finish();
    assert!(stat(&s, &lab.b, "tap0").rx_packets >= 4, "{s:?}");
}

#[test]
fn keys_separate_tunnels_between_the_same_pair() {
    let lab = Lab::new("key");
    let mut ends = vec![];
    for (name, ka, kb) in [("k1", 1, 1), ("k2", 2, 2), ("k3", 3, 4)] {
        let (mut a, mut b) = pair(&lab, name, TunnelKind::Gre);
        (a.ikey, a.okey, b.ikey, b.okey) = (Some(ka), Some(ka), Some(kb), Some(kb));
        ends.extend([a, b]);
    }
    let dp = Dp::start(&lab, ends);
    for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
        ip(
            &lab.a,
            &format!("addr add 192.168.5{}.1/30 dev {name}", i + 1),
        );
        ip(
            &lab.b,
            &format!("addr add 192.168.5{}.2/30 dev {name}", i + 1),
        );
    }
    ping(&lab.a, "192.168.51.2", 3).unwrap_or_else(|o| panic!("ping over key 1 failed:\n{o}"));
    ping(&lab.a, "192.168.52.2", 3).unwrap_or_else(|o| panic!("ping over key 2 failed:\n{o}"));
    assert!(
        ping(&lab.a, "192.168.53.2", 2).is_err(),
        "a tunnel with mismatched keys must not pass traffic"
    );
    let s = dp.finish();
    for name in ["k1", "k2"] {
        let (ta, tb) = (stat(&s, &lab.a, name), stat(&s, &lab.b, name));
        assert!(ta.rx_packets >= 3 && tb.rx_packets >= 3, "{ta:?} {tb:?}");
    }
    assert_eq!(stat(&s, &lab.b, "k3").rx_packets, 0);
    let b_wrong_keys: u64 = s
        .tunnels
        .iter()
        .filter(|t| t.netns == lab.b)
        .map(|t| t.drop_key)
        .sum();
    assert!(
        b_wrong_keys >= 2,
        "key 3 packets at b must count as wrong keys: {s:#?}"
    );
}

#[test]
fn ip6gre_and_ip6gretap_over_an_ipv6_underlay() {
    let lab = Lab::new("v6");
    let (mut a, b) = pair(&lab, "g6", TunnelKind::Ip6gre);
    (a.ttl, a.tos) = (200, 0x20);
    let (ta, tb) = pair(&lab, "t6", TunnelKind::Ip6gretap);
    let dp = Dp::start(&lab, vec![a, b, ta, tb]);
    ip(&lab.a, "addr add 192.168.60.1/30 dev g6");
    ip(&lab.b, "addr add 192.168.60.2/30 dev g6");
    ip(&lab.a, "addr add fd00:60::1/64 dev g6 nodad");
    ip(&lab.b, "addr add fd00:60::2/64 dev g6 nodad");
    // A fresh IPv6 underlay loses its first packets (neighbour
    // discovery while link-local addresses are tentative): wait for it.
    let ready = (0..5).any(|_| ping(&lab.a, "fd00:b::2", 1).is_ok());
    assert!(ready, "the IPv6 underlay never answered a ping");
    ip(&lab.a, "addr add 192.168.61.1/30 dev t6");
    ip(&lab.b, "addr add 192.168.61.2/30 dev t6");
    ping(&lab.a, "192.168.60.2", 3)
        .unwrap_or_else(|o| panic!("IPv4 ping over ip6gre failed:\n{o}"));
    ping(&lab.a, "fd00:60::2", 3).unwrap_or_else(|o| panic!("IPv6 ping over ip6gre failed:\n{o}"));
    ping(&lab.a, "192.168.61.2", 3).unwrap_or_else(|o| panic!("ping over ip6gretap failed:\n{o}"));

    // Hop limit, traffic class and source come from per-packet cmsgs.
    let cap = tap_packets(&lab.r, "veth1", libc::ETH_P_IPV6 as u16);
    let pinger = std::thread::spawn({
        let a = lab.a.clone();
        move || ping(&a, "192.168.60.2", 3)
    });
    let src: [u8; 16] = "fd00:a::2".parse::<Ipv6Addr>().unwrap().octets();
    // g6 packets only: t6 (ip6gretap, TTL inherited) shares the addresses.
    let p = first_packet(&cap, |p| {
        p.len() > 44 && p[6] == 47 && p[8..24] == src && p[42..44] != [0x65, 0x58]
    });
    pinger.join().unwrap().unwrap();
    assert_eq!(p[7], 200, "outer hop limit");
    assert_eq!(
        ((p[0] & 0x0f) << 4) | (p[1] >> 4),
        0x20,
        "outer traffic class"
    );
    assert!(
        matches!(p[40..44], [0, 0, 0x08, 0x00] | [0, 0, 0x86, 0xdd]),
        "GRE right after the IPv6 header"
    );
    let s = dp.finish();
    assert!(stat(&s, &lab.b, "t6").rx_packets >= 3, "{s:?}");
}
