//! The fast path: moving onto it and off, what it leaves to the stack,
//! ECN, outer IDs and DF, and what the stats say.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::Duration;

use super::fixture::*;
use crate::dataplane::read_stats;
use crate::dataplane::sock::{raw_socket, setsockopt};
use crate::model::TunnelKind;
use crate::sys::netns;
use crate::wire::gre;

/// The in-kernel fast path at one end, the userspace path at the other:
/// the same wire format both ways, IPv4 and IPv6 inside and outside,
/// keys, gretap, TCP streams, and forged packets still left to
/// userspace to drop.
#[test]
fn fast_path_interworks_with_the_userspace_path() {
    let lab = Lab::new("fast");
    let (mut a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    (a.ttl, a.tos) = (255, 0x20);
    let (mut ka, mut kb) = pair(&lab, "k7", TunnelKind::Gre);
    for e in [&mut ka, &mut kb] {
        (e.ikey, e.okey) = (Some(7), Some(7));
    }
    let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
    // Over the IPv6 underlay: ip6gre, and ip6gretap with a key.
    let (sa, sb) = pair(&lab, "six0", TunnelKind::Ip6gre);
    let (mut xa, mut xb) = pair(&lab, "six1", TunnelKind::Ip6gretap);
    for e in [&mut xa, &mut xb] {
        (e.ikey, e.okey) = (Some(9), Some(9));
    }
    let fast = Dp::start_with(&lab, vec![a, ka, ta, sa, xa], true, true);
    let user = Dp::start(&lab, vec![b, kb, tb, sb, xb]);
    for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
        ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
        ip(ns, &format!("addr add fd00:50::{n}/64 dev tun0 nodad"));
        ip(ns, &format!("addr add 192.168.57.{n}/30 dev k7"));
        ip(ns, &format!("addr add 192.168.52.{n}/30 dev tap0"));
        ip(ns, &format!("addr add 192.168.66.{n}/30 dev six0"));
        ip(ns, &format!("addr add 192.168.67.{n}/30 dev six1"));
    }
    // A few packets stay in userspace; a flow gets the fast path.
    ping(&lab.a, "192.168.50.2", 3).unwrap_or_else(|o| panic!("ping failed:\n{o}"));
    assert!(!read_stats(&fast.stats).unwrap().tunnels[0].fast_path);
    const LEN: usize = 8 << 20;
    let streams = || {
        tcp_transfer(&lab.a, &lab.b, "192.168.50.2".parse().unwrap(), LEN);
        tcp_transfer(&lab.b, &lab.a, "192.168.57.1".parse().unwrap(), LEN);
        tcp_transfer(&lab.a, &lab.b, "192.168.52.2".parse().unwrap(), LEN);
        tcp_transfer(&lab.b, &lab.a, "192.168.52.1".parse().unwrap(), LEN);
        tcp_transfer(&lab.a, &lab.b, "192.168.66.2".parse().unwrap(), LEN);
        tcp_transfer(&lab.b, &lab.a, "192.168.66.1".parse().unwrap(), LEN);
        tcp_transfer(&lab.a, &lab.b, "192.168.67.2".parse().unwrap(), LEN);
        tcp_transfer(&lab.b, &lab.a, "192.168.67.1".parse().unwrap(), LEN);
    };
    streams();
    fast.wait_for("the fast path on every tunnel", |s| {
        s.tunnels.iter().all(|t| t.fast_path)
    });
    let p = echo_on_the_wire(&lab, "192.168.50.2", [0, 0, 8, 0]);
    assert_eq!(gre::internet_checksum(&p[..20]), 0, "outer header checksum");
    assert_eq!((p[0], p[1], p[8]), (0x45, 0x20, 255), "version, TOS, TTL");
    assert_eq!(u16::from_be_bytes([p[6], p[7]]), 0x4000, "DF, no fragment");
    assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
    assert_eq!(p[16..20], [152, 16, 10, 2], "outer destination");
    assert_eq!(p[20..24], [0, 0, 0x08, 0x00], "plain GRE carrying IPv4");
    // k7 inherits the TTL (0): its echo requests go out with the inner one.
    let k = echo_on_the_wire(&lab, "192.168.57.2", [0x20, 0, 8, 0]);
    assert_eq!(k[24..28], 7u32.to_be_bytes(), "the key");
    assert_eq!((k[8], k[28] >> 4), (k[28 + 8], 4), "outer TTL = inner TTL");
    assert_eq!(gre::internet_checksum(&k[..20]), 0, "outer header checksum");
    // ARP, not IP: gretap's slow path still carries it.
    ip(&lab.a, "neigh flush dev tap0");
    for to in [
        "192.168.57.2",
        "fd00:50::2",
        "192.168.52.2",
        "192.168.66.2",
        "192.168.67.2",
    ] {
        ping(&lab.a, to, 3).unwrap_or_else(|o| panic!("ping {to} failed:\n{o}"));
    }
    streams();

    // Forged at a's fast path: a wrong key, a wrong source.
    let forger = Forger::new(&lab.b);
    let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
    let echo = [
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 57, 2, 192, 168, 57, 1,
    ];
    forger.send(
        peer,
        me,
        &gre_packet(gre::ETHERTYPE_IPV4, false, Some(8), None, &echo),
    );
    forger.send(
        Ipv4Addr::new(152, 16, 10, 9),
        me,
        &gre_packet(gre::ETHERTYPE_IPV4, false, Some(7), None, &echo),
    );
    let s = fast.wait_for("both forgeries dropped", |s| {
        s.unmatched >= 1 && s.tunnels.iter().any(|t| t.drop_key >= 1)
    });
    for name in ["tun0", "k7", "tap0", "six0", "six1"] {
        let t = stat(&s, &lab.a, name);
        assert!(t.fast_tx_packets >= 3 && t.fast_rx_packets >= 3, "{t:?}");
        assert_eq!((t.tx_errors, t.rx_errors), (0, 0), "{t:?}");
    }
    assert!(
        stat(&s, &lab.a, "tun0").fast_tx_bytes >= LEN as u64,
        "{s:?}"
    );
    assert!(stat(&s, &lab.a, "k7").fast_rx_bytes >= LEN as u64, "{s:?}");
    for name in ["tap0", "six0", "six1"] {
        let t = stat(&s, &lab.a, name);
        assert!(
            t.fast_tx_bytes >= LEN as u64 && t.fast_rx_bytes >= LEN as u64,
            "{t:?}"
        );
    }
    let u = user.finish();
    for t in &u.tunnels {
        assert!(!t.fast_path && t.fast_tx_packets == 0, "{t:?}");
    }
    for name in ["tun0", "tap0", "six0", "six1"] {
        assert!(stat(&u, &lab.b, name).rx_bytes >= LEN as u64, "{u:?}");
    }
}

/// What ip_gre refuses, the fast path leaves to the stack (which drops
/// it, as with kernel GRE): frames for another MAC, 802.1Q-tagged
/// frames, IPv4 with a bad header checksum. A good frame beside them is
/// carried.
#[test]
fn the_fast_path_leaves_what_ip_gre_refuses_to_the_stack() {
    let lab = Lab::new("refuse");
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let fast = Dp::start_with(&lab, vec![a], true, true);
    let _peer = Dp::start(&lab, vec![b]);
    ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
    flood(&lab.a, "192.168.50.2");
    fast.wait_for("the fast path", |s| s.tunnels[0].fast_path);
    let (to_a, from_r) = (mac(&lab.a, "veth0"), mac(&lab.r, "veth1"));
    let frame = |dst: [u8; 6], vlan: Option<u16>, bad_sum: bool, n: u16| {
        let mut gre = vec![0, 0, 8, 0];
        gre.extend(echo4([192, 168, 50, 2], [192, 168, 50, 1], 0, 0x7700 + n));
        let mut ip = ipv4_packet([152, 16, 10, 2], [172, 16, 10, 2], 47, 0, 9, &gre);
        if bad_sum {
            ip[10] ^= 0x5a;
        }
        let mut f = dst.to_vec();
        f.extend(from_r);
        if let Some(vid) = vlan {
            f.extend([0x81, 0x00]);
            f.extend(vid.to_be_bytes());
        }
        f.extend([0x08, 0x00]);
        f.extend(ip);
        f
    };
    let cap = tap_packets(&lab.a, "tun0", libc::ETH_P_IP as u16);
    let before = read_stats(&fast.stats).unwrap();
    inject(
        &lab.r,
        "veth1",
        frame([0x02, 0, 0, 0, 0, 0x99], None, false, 1),
    );
    inject(&lab.r, "veth1", frame(to_a, Some(5), false, 2));
    inject(&lab.r, "veth1", frame(to_a, None, true, 3));
    inject(&lab.r, "veth1", frame(to_a, None, false, 4));
    let seen: Vec<u16> = packets(&cap, Duration::from_millis(1500), |p| marked(p).is_some())
        .iter()
        .filter_map(|p| marked(p))
        .collect();
    assert_eq!(seen, [4], "the inner packets that reached tun0");
    let s = fast.wait_for("the good frame carried by the fast path", |s| {
        s.tunnels[0].fast_rx_packets > before.tunnels[0].fast_rx_packets
    });
    let (t, t0) = (&s.tunnels[0], &before.tunnels[0]);
    assert!(t.fast_path, "{t:?}");
    assert_eq!(
        (t.rx_packets, s.malformed, s.unmatched),
        (t0.rx_packets, before.malformed, before.unmatched),
        "the stack dropped the refused frames before userspace saw them: {s:#?}"
    );
}

/// IPv6 GRE packets from namespace `ns` with any traffic class.
struct Forger6(OwnedFd);

impl Forger6 {
    fn new(ns: &str) -> Forger6 {
        Forger6(netns::run_in(ns, || raw_socket(true)).unwrap())
    }

    fn send(&self, dst: Ipv6Addr, tclass: u8, gre: &[u8]) {
        setsockopt(
            &self.0,
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            tclass.into(),
        )
        .unwrap();
        send_to(&self.0, IpAddr::V6(dst), gre);
    }
}

/// RFC 6040 on receipt: outer CE marks an ECN-capable inner packet CE,
/// outer ECT(1) makes ECT(0) ECT(1), CE over Not-ECT is dropped and
/// counted; for IPv4 inside IPv4 (gre), IPv6 inside IPv6 (ip6gre) and
/// IPv4 in Ethernet (gretap), received by the userspace path or the
/// fast path.
fn ecn_marks_arrive(fast: bool) {
    let lab = Lab::new(if fast { "ecnf" } else { "ecnu" });
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let (sa, sb) = pair(&lab, "six0", TunnelKind::Ip6gre);
    let (ta, tb) = pair(&lab, "tap0", TunnelKind::Gretap);
    let dp = Dp::start_with(&lab, vec![a, sa, ta], true, fast);
    let _peer = Dp::start(&lab, vec![b, sb, tb]);
    for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
        ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
        ip(ns, &format!("addr add fd00:66::{n}/64 dev six0 nodad"));
        ip(ns, &format!("addr add 192.168.52.{n}/30 dev tap0"));
    }
    let ready = (0..5).any(|_| ping(&lab.a, "fd00:b::2", 1).is_ok());
    assert!(ready, "the IPv6 underlay never answered a ping");
    if fast {
        for to in ["192.168.50.2", "fd00:66::2", "192.168.52.2"] {
            flood(&lab.a, to);
        }
        dp.wait_for("the fast path on every tunnel", |s| {
            s.tunnels.iter().all(|t| t.fast_path)
        });
    }
    let caps = [
        tap_packets(&lab.a, "tun0", libc::ETH_P_IP as u16),
        tap_packets(&lab.a, "six0", libc::ETH_P_IPV6 as u16),
        tap_packets(&lab.a, "tap0", libc::ETH_P_IP as u16),
    ];
    let before = read_stats(&dp.stats).unwrap();
    let (forger, forger6) = (Forger::new(&lab.b), Forger6::new(&lab.b));
    let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
    let gre = |proto: u16, inner: &[u8]| gre_packet(proto, false, None, None, inner);
    let v4 = |ecn: u8, n: u16| echo4([192, 168, 50, 2], [192, 168, 50, 1], 0xb8 | ecn, 0x7700 + n);
    // (outer ECN, inner ECN, marker): carried to tun0 but for 3.
    for (outer, inner, n) in [(3, 2, 1), (1, 2, 2), (3, 0, 3), (3, 3, 4), (0, 2, 5)] {
        forger.send_tos(peer, me, outer, &gre(gre::ETHERTYPE_IPV4, &v4(inner, n)));
    }
    // IPv6 inside, ECT(1) under an outer CE; flow label 0x66 tells it apart.
    let mut v6 = vec![0x6b, 0x80 | (1 << 4), 0, 0x66, 0, 0, 59, 64];
    v6.extend("fd00:66::2".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend("fd00:66::1".parse::<Ipv6Addr>().unwrap().octets());
    forger6.send(
        "fd00:a::2".parse().unwrap(),
        0xb8 | 3,
        &gre(gre::ETHERTYPE_IPV6, &v6),
    );
    // IPv4 ECT(0) in a broadcast frame, under an outer CE.
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 0x52, 0x08, 0x00]);
    frame.extend(echo4([192, 168, 52, 2], [192, 168, 52, 1], 2, 0x7752));
    forger.send_tos(peer, me, 3, &gre(gre::ETHERTYPE_TEB, &frame));

    let wait = Duration::from_millis(1500);
    let tun0: Vec<(u16, u8)> = packets(&caps[0], wait, |p| marked(p).is_some())
        .iter()
        .inspect(|p| assert_eq!(gre::internet_checksum(&p[..20]), 0, "inner checksum"))
        .map(|p| (marked(p).unwrap(), p[1]))
        .collect();
    assert_eq!(
        tun0,
        [(1, 0xb8 | 3), (2, 0xb8 | 1), (4, 0xb8 | 3), (5, 0xb8 | 2)],
        "(marker, TOS) of what reached tun0"
    );
    let six0 = packets(&caps[1], wait, |p| p.len() >= 40 && p[2..4] == [0, 0x66]);
    assert_eq!(six0.len(), 1, "the IPv6 packet reached six0");
    assert_eq!(
        (six0[0][0], six0[0][1]),
        (0x6b, 0x80 | (3 << 4)),
        "CE in its traffic class"
    );
    let tap0 = packets(&caps[2], wait, |p| p.len() >= 20 && p[4..6] == [0x77, 0x52]);
    assert_eq!(tap0.len(), 1, "the frame's IPv4 packet reached tap0");
    assert_eq!(tap0[0][1] & 3, 3, "CE inside the frame");
    assert_eq!(gre::internet_checksum(&tap0[0][..20]), 0, "its checksum");

    let s = dp.wait_for("the CE-marked Not-ECT packet dropped and counted", |s| {
        stat(s, &lab.a, "tun0").drop_ecn == 1
    });
    if fast {
        // The fast path marked them: userspace saw only the dropped one.
        let s = dp.wait_for("the fast path's counts", |s| {
            stat(s, &lab.a, "tun0").fast_rx_packets
                >= stat(&before, &lab.a, "tun0").fast_rx_packets + 4
                && stat(s, &lab.a, "six0").fast_rx_packets
                    > stat(&before, &lab.a, "six0").fast_rx_packets
                && stat(s, &lab.a, "tap0").fast_rx_packets
                    > stat(&before, &lab.a, "tap0").fast_rx_packets
        });
        for name in ["tun0", "six0"] {
            assert_eq!(
                stat(&s, &lab.a, name).rx_packets,
                stat(&before, &lab.a, name).rx_packets,
                "{name}: {s:#?}"
            );
        }
    } else {
        let (now, then) = (stat(&s, &lab.a, "tun0"), stat(&before, &lab.a, "tun0"));
        assert!(now.rx_packets >= then.rx_packets + 4, "{now:?}");
    }
}

#[test]
fn ecn_marks_arrive_through_the_userspace_path() {
    ecn_marks_arrive(false);
}

#[test]
fn ecn_marks_arrive_through_the_fast_path() {
    ecn_marks_arrive(true);
}

/// The GRE packets from a (seen at the router) for `count` pings to
/// `to` with `ping -M pmtu`, whose GRE header starts with `gre`.
fn echoes_on_the_wire(
    lab: &Lab,
    to: &'static str,
    pmtu: &'static str,
    gre: [u8; 4],
) -> Vec<Vec<u8>> {
    let cap = tap_packets(&lab.r, "veth1", libc::ETH_P_IP as u16);
    let a = lab.a.clone();
    let pinger = std::thread::spawn(move || {
        Command::new("ip")
            .args([
                "netns", "exec", &a, "ping", "-n", "-c", "4", "-i", "0.1", "-M", pmtu, to,
            ])
            .output()
            .expect("running ping")
    });
    // ICMP echo requests inside, after GRE with or without a key.
    let inner = 20 + if gre[0] & 0x20 != 0 { 8 } else { 4 };
    let p = packets(&cap, Duration::from_millis(1500), |p| {
        p.len() > inner + 20
            && p[9] == 47
            && p[12..16] == [172, 16, 10, 2]
            && p[20..24] == gre
            && (p[inner + 9], p[inner + 20]) == (1, 8)
    });
    let out = pinger.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    p
}

/// The outer IPv4 header as ip_gre writes it: DF always with pmtudisc,
/// else the inner packet's; an ID from a counter, never a constant 0.
fn outer_id_and_df(fast: bool) {
    let lab = Lab::new(if fast { "idf" } else { "idu" });
    let (mut a, mut b) = pair(&lab, "tun0", TunnelKind::Gre);
    (a.pmtudisc, b.pmtudisc) = (false, false);
    let (mut ka, mut kb) = pair(&lab, "k7", TunnelKind::Gre);
    for e in [&mut ka, &mut kb] {
        (e.ikey, e.okey) = (Some(7), Some(7));
    }
    let dp = Dp::start_with(&lab, vec![a, ka], true, fast);
    let _peer = Dp::start(&lab, vec![b, kb]);
    for (ns, n) in [(&lab.a, 1), (&lab.b, 2)] {
        ip(ns, &format!("addr add 192.168.50.{n}/30 dev tun0"));
        ip(ns, &format!("addr add 192.168.57.{n}/30 dev k7"));
    }
    if fast {
        flood(&lab.a, "192.168.50.2");
        flood(&lab.a, "192.168.57.2");
        dp.wait_for("the fast path", |s| s.tunnels.iter().all(|t| t.fast_path));
    }
    // (tunnel, its GRE header, ping's DF, the outer DF)
    for (to, gre, pmtu, df) in [
        ("192.168.50.2", [0, 0, 8, 0], "do", true),
        ("192.168.50.2", [0, 0, 8, 0], "dont", false),
        ("192.168.57.2", [0x20, 0, 8, 0], "dont", true),
    ] {
        let what = format!("{to}, ping -M {pmtu}");
        let ps = echoes_on_the_wire(&lab, to, pmtu, gre);
        assert_eq!(ps.len(), 4, "{what}: the echo requests");
        let mut ids = Vec::new();
        for p in &ps {
            assert_eq!(gre::internet_checksum(&p[..20]), 0, "{what}: checksum");
            let inner = 20 + if gre[0] & 0x20 != 0 { 8 } else { 4 };
            assert_eq!(
                p[inner + 6] & 0x40 != 0,
                pmtu == "do",
                "{what}: the inner DF"
            );
            let flags = u16::from_be_bytes([p[6], p[7]]);
            assert_eq!(
                flags,
                if df { 0x4000 } else { 0 },
                "{what}: DF, no fragment"
            );
            ids.push(u16::from_be_bytes([p[4], p[5]]));
        }
        // One tunnel's packets, one counter: each ID a little past the last.
        for w in ids.windows(2) {
            let step = w[1].wrapping_sub(w[0]);
            assert!((1..16).contains(&step), "{what}: outer IDs {ids:?}");
        }
    }
    let s = read_stats(&dp.stats).unwrap();
    for t in &s.tunnels {
        assert_eq!(t.fast_path, fast, "{t:?}");
    }
}

#[test]
fn outer_id_and_df_as_ip_gre_on_the_userspace_path() {
    outer_id_and_df(false);
}

#[test]
fn outer_id_and_df_as_ip_gre_on_the_fast_path() {
    outer_id_and_df(true);
}

/// Why a tunnel end is not on the fast path, in its stats.
#[test]
fn the_stats_say_why_the_fast_path_does_not_carry_an_end() {
    let lab = Lab::new("why");
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let (mut ca, _) = pair(&lab, "sum0", TunnelKind::Gre);
    (ca.ikey, ca.okey, ca.checksum) = (Some(3), Some(3), true);
    let fast = Dp::start_with(&lab, vec![a, ca], true, true);
    let checksums = "GRE checksums or sequence numbers are configured (userspace keeps them)";
    let s = fast.wait_for("the reasons", |s| {
        s.tunnels[1].fast_path_off.as_deref() == Some(checksums)
    });
    assert_eq!(
        s.tunnels[0].fast_path_off.as_deref(),
        Some("waits for 64 packets through userspace")
    );
    let off = Dp::start_with(&lab, vec![b], true, false);
    let s = read_stats(&off.stats).unwrap();
    assert_eq!(
        s.tunnels[0].fast_path_off.as_deref(),
        Some("disabled by GRELAB_DP_FASTPATH=0")
    );
    // Once on it, no reason.
    ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
    flood(&lab.a, "192.168.50.2");
    let s = fast.wait_for("the fast path", |s| s.tunnels[0].fast_path);
    assert_eq!(s.tunnels[0].fast_path_off, None);
}
