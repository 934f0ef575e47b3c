use super::*;
use crate::wire::gre::internet_checksum;
use proptest::prelude::*;

/// Bytes from a xorshift generator: payloads that differ everywhere.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const ACK_PSH: u8 = TCP_ACK | TCP_PSH;

/// A TCP packet (IPv4 with DF, or IPv6) with a 12-byte timestamp
/// option, behind an Ethernet header if `l2`; checksums valid
/// unless `partial`, which leaves the pseudo-header sum in the TCP
/// checksum field as the kernel hands it to a device.
fn tcp_packet(v6: bool, l2: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_packet_from(40000, v6, l2, seq, flags, payload)
}

fn tcp_packet_from(port: u16, v6: bool, l2: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    if l2 {
        p.extend([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        p.extend(if v6 { [0x86, 0xdd] } else { [0x08, 0x00] });
    }
    let l3 = p.len();
    let tcp_len = 32 + payload.len();
    if v6 {
        p.extend([0x60, 0, 0, 0]);
        p.extend((tcp_len as u16).to_be_bytes());
        p.extend([IPPROTO_TCP, 64]);
        p.extend([0xfd, 0, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend([0xfd, 0, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        p.extend([0x45, 0]);
        p.extend(((20 + tcp_len) as u16).to_be_bytes());
        p.extend([0x12, 0x34, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
        p.extend([192, 168, 50, 1, 192, 168, 50, 2]);
        let sum = internet_checksum(&p[l3..]);
        p[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    }
    let l4 = p.len();
    p.extend(port.to_be_bytes());
    p.extend([0x13, 0x89]);
    p.extend(seq.to_be_bytes());
    p.extend(0x0102_0304u32.to_be_bytes());
    p.extend([0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    p.extend([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    p.extend(payload);
    let t = tcp_layout(&p, l2).expect("a TCP packet");
    let sum = !csum_fold(csum_add(t.pseudo(&p, tcp_len), &p[l4..]));
    p[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Checks every header field of `seg` as segment `i` of `whole`
/// (cut at `mss`), and its payload.
fn check_segment(whole: &[u8], l2: bool, mss: usize, segs: usize, i: usize, seg: &[u8]) {
    let t = tcp_layout(seg, l2).expect("segment is TCP");
    let w = tcp_layout(whole, l2).unwrap();
    let payload = &whole[w.end..][i * mss..((i + 1) * mss).min(whole.len() - w.end)];
    assert_eq!(&seg[t.end..], payload, "segment {i} payload");
    assert_eq!(seg[..t.l3], whole[..t.l3], "link header");
    if t.v6 {
        let plen = u16::from_be_bytes([seg[t.l3 + 4], seg[t.l3 + 5]]);
        assert_eq!(usize::from(plen), seg.len() - t.l3 - 40);
    } else {
        let h = &seg[t.l3..t.l4];
        assert_eq!(internet_checksum(h), 0, "segment {i} IPv4 header checksum");
        assert_eq!(
            usize::from(u16::from_be_bytes([h[2], h[3]])),
            seg.len() - t.l3
        );
        assert_eq!(u16::from_be_bytes([h[4], h[5]]), 0x1234 + i as u16, "ip id");
    }
    let seq0 = t.seq(whole);
    assert_eq!(
        t.seq(seg),
        seq0.wrapping_add((i * mss) as u32),
        "seq of {i}"
    );
    let (f, f0) = (seg[t.l4 + 13], whole[t.l4 + 13]);
    let last = i + 1 == segs;
    assert_eq!(
        f & (TCP_FIN | TCP_PSH),
        if last { f0 & (TCP_FIN | TCP_PSH) } else { 0 }
    );
    assert_eq!(f & TCP_CWR, if i == 0 { f0 & TCP_CWR } else { 0 });
    assert_eq!(f & TCP_ACK, f0 & TCP_ACK);
    assert_eq!(
        seg[t.l4 + 14..t.l4 + 16],
        whole[t.l4 + 14..t.l4 + 16],
        "window"
    );
    assert_eq!(seg[t.l4 + 18..t.end], whole[t.l4 + 18..w.end], "options");
    // The TCP checksum, verified from scratch over the pseudo-header.
    let mut pseudo = Vec::new();
    if t.v6 {
        pseudo.extend(&seg[t.l3 + 8..t.l3 + 40]);
        pseudo.extend(((seg.len() - t.l4) as u32).to_be_bytes());
        pseudo.extend([0, 0, 0, IPPROTO_TCP]);
    } else {
        pseudo.extend(&seg[t.l3 + 12..t.l3 + 20]);
        pseudo.extend([0, IPPROTO_TCP]);
        pseudo.extend(((seg.len() - t.l4) as u16).to_be_bytes());
    }
    pseudo.extend(&seg[t.l4..]);
    assert_eq!(internet_checksum(&pseudo), 0, "segment {i} TCP checksum");
}

/// Cuts `whole` as the dataplane does; each segment made contiguous.
fn cut(whole: &[u8], l2: bool, vh: &VnetHdr) -> Vec<Vec<u8>> {
    let g = gso_layout(whole, l2, vh, 220).expect("a valid super-packet");
    (0..g.segs)
        .map(|i| {
            let mut hdr = [0u8; 220];
            let r = segment(whole, &g, i, &mut hdr);
            let mut seg = hdr[..g.tcp.end].to_vec();
            seg.extend(&whole[r]);
            seg
        })
        .collect()
}

fn tso_hdr(v6: bool, l2: bool, mss: u16) -> VnetHdr {
    let l4 = if l2 { 14 } else { 0 } + if v6 { 40 } else { 20 };
    VnetHdr {
        flags: NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (l4 + 32) as u16,
        gso_size: mss,
        csum_start: l4 as u16,
        csum_offset: 16,
    }
}

#[test]
fn vnet_header_round_trip() {
    let vh = tso_hdr(true, false, 1400);
    let mut b = [0u8; 10];
    vh.emit(&mut b);
    assert_eq!(b[..2], [NEEDS_CSUM, GSO_TCPV6]);
    assert_eq!(VnetHdr::parse(&b), vh);
}

#[test]
fn segments_of_ipv4_ipv6_and_ethernet_super_packets() {
    let payload = noise(7, 3500);
    for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
        // The sequence number wraps within the packet.
        let flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR;
        let whole = tcp_packet(v6, l2, 0xffff_fc00, flags, &payload);
        let segs = cut(&whole, l2, &tso_hdr(v6, l2, 1000));
        assert_eq!(segs.len(), 4, "v6 {v6} l2 {l2}");
        for (i, seg) in segs.iter().enumerate() {
            check_segment(&whole, l2, 1000, 4, i, seg);
        }
        assert_eq!(segs[3].len() - tcp_layout(&segs[3], l2).unwrap().end, 500);
    }
}

#[test]
fn super_packets_that_cannot_be_cut_are_refused() {
    let whole = tcp_packet(false, false, 1, TCP_ACK, &noise(1, 3000));
    let vh = tso_hdr(false, false, 1000);
    assert!(gso_layout(&whole, false, &vh, 220).is_some());
    assert!(gso_layout(&whole, false, &VnetHdr { gso_size: 0, ..vh }, 220).is_none());
    assert!(
        gso_layout(&whole, false, &tso_hdr(true, false, 1000), 220).is_none(),
        "v6 type, v4 packet"
    );
    assert!(
        gso_layout(&whole, false, &VnetHdr { gso_type: 3, ..vh }, 220).is_none(),
        "UDP"
    );
    assert!(
        gso_layout(&whole, false, &vh, 40).is_none(),
        "headers beyond the room"
    );
    assert!(
        gso_layout(&whole[..45], false, &vh, 220).is_none(),
        "cut short"
    );
    let mut udp = whole.clone();
    udp[9] = 17;
    assert!(gso_layout(&udp, false, &vh, 220).is_none());
}

#[test]
fn partial_checksums_are_finished() {
    // A UDP datagram as the kernel leaves it: the pseudo-header sum
    // (length 12, protocol 17) in the checksum field.
    let mut p = vec![
        0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p.extend([0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'h', b'e', b'l', b'o']);
    let pseudo = csum_fold(csum_add(17 + 12, &p[12..20]));
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    assert!(finish_checksum(&mut p, 20, 6));
    let mut check = p[12..20].to_vec();
    check.extend([0, 17, 0, 12]);
    check.extend(&p[20..]);
    assert_eq!(internet_checksum(&check), 0);
    assert!(
        !finish_checksum(&mut p, 20, 11),
        "checksum field beyond the end"
    );
    assert!(!finish_checksum(&mut p, 32, 0), "start beyond the end");
}

#[test]
fn joined_segments_cut_again_give_the_same_segments() {
    for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
        let whole = tcp_packet(v6, l2, 77, ACK_PSH, &noise(3, 5000));
        let segs = cut(&whole, l2, &tso_hdr(v6, l2, 1400));
        let t = tcp_layout(&segs[0], l2).unwrap();
        for s in &segs {
            assert!(mergeable(s, &t), "v6 {v6} l2 {l2}");
        }
        for w in segs.windows(2) {
            assert!(same_flow(&w[0], &t, &w[1], &t) && continues(&w[0], &w[1], &t));
        }
        // Join as the receive side does: first packet whole, then payloads.
        let mut joined = segs[0].clone();
        for s in &segs[1..] {
            joined.extend(&s[t.end..]);
        }
        let len = joined.len();
        let psh = has_psh(segs.last().unwrap(), &t);
        let vh = seal(&mut joined, &t, len, 1400, psh);
        assert_eq!(
            (vh.gso_type, vh.gso_size, usize::from(vh.hdr_len)),
            (if v6 { GSO_TCPV6 } else { GSO_TCPV4 }, 1400, t.end)
        );
        // The kernel finishes a partial checksum: do it here.
        let mut whole_again = joined.clone();
        assert!(finish_checksum(&mut whole_again, t.l4, 16));
        let mut again = whole_again.clone();
        again[t.l4 + 13] = ACK_PSH;
        assert_eq!(
            &again[t.l3..],
            &whole[t.l3..],
            "the joined packet is the original"
        );
        assert_eq!(cut(&joined, l2, &vh), segs, "v6 {v6} l2 {l2}");
    }
}

#[test]
fn segments_that_must_not_be_joined() {
    let segs = cut(
        &tcp_packet(false, false, 5, TCP_ACK, &noise(4, 3000)),
        false,
        &tso_hdr(false, false, 1000),
    );
    let t = tcp_layout(&segs[0], false).unwrap();
    assert!(!continues(&segs[0], &segs[2], &t), "a gap in the sequence");
    assert!(!continues(&segs[1], &segs[0], &t), "going back");
    let mut bad = segs[1].clone();
    bad[t.end + 5] ^= 1;
    assert!(!mergeable(&bad, &t), "corrupt payload");
    let mut ttl = segs[1].clone();
    ttl[8] = 63;
    ttl[10..12].fill(0);
    let sum = internet_checksum(&ttl[..20]);
    ttl[10..12].copy_from_slice(&sum.to_be_bytes());
    assert!(!continues(&segs[0], &ttl, &t), "another TTL");
    let fin = tcp_packet(false, false, 5, TCP_ACK | TCP_FIN, b"bye");
    assert!(!mergeable(&fin, &tcp_layout(&fin, false).unwrap()), "FIN");
    let ack = tcp_packet(false, false, 5, TCP_ACK, b"");
    assert!(
        !mergeable(&ack, &tcp_layout(&ack, false).unwrap()),
        "no payload"
    );
    let mut no_df = segs[1].clone();
    no_df[6] = 0;
    assert!(!mergeable(&no_df, &t), "no DF (checksum now wrong too)");
    let mut other = segs[1].clone();
    other[t.l4] ^= 1;
    assert!(!same_flow(&segs[0], &t, &other, &t), "another port");
}

#[test]
fn received_segments_join_per_flow_in_order() {
    let vh = tso_hdr(false, false, 1400);
    let a = cut(
        &tcp_packet(false, false, 100, ACK_PSH, &noise(1, 4200)),
        false,
        &vh,
    );
    let b = cut(
        &tcp_packet_from(40001, false, false, 9, TCP_ACK, &noise(2, 4200)),
        false,
        &vh,
    );
    let a4 = tcp_packet(false, false, 4300, TCP_ACK, &noise(5, 1400));
    let b4 = tcp_packet_from(40001, false, false, 9 + 4200, TCP_ACK, &noise(6, 1400));
    let icmp = [
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 192, 168, 50, 1, 192, 168, 50, 2,
    ];
    // a1 b1 a2 b2 a3(PSH) a4 icmp b4 (b3 lost): runs a1-a3, b1-b2, a4, icmp, b4.
    let order: [&[u8]; 8] = [&a[0], &b[0], &a[1], &b[1], &a[2], &a4, &icmp, &b4];
    for gro in [true, false] {
        let mut rx = crate::dataplane::rx::Rx::new(2048);
        for (k, pkt) in order.iter().enumerate() {
            let start = k * 2048 + 16;
            rx.data[start..start + pkt.len()].copy_from_slice(pkt);
        }
        for (k, pkt) in order.iter().enumerate() {
            rx.add(
                0,
                false,
                1500,
                k * 2048 + 16,
                k * 2048 + 16 + pkt.len(),
                gro,
            );
        }
        let runs: Vec<(usize, usize)> = rx.runs.iter().map(|r| (r.head, r.count)).collect();
        if gro {
            assert_eq!(runs, [(0, 3), (1, 2), (5, 1), (6, 1), (7, 1)]);
            let r = rx.runs[0];
            assert_eq!((r.len, r.mss), (a[0].len() + 2800, 1400));
        } else {
            assert_eq!(runs, (0..8).map(|k| (k, 1)).collect::<Vec<_>>());
        }
    }
}

/// `pkt` (TCP) with the pseudo-header sum in its checksum field,
/// as a kernel leaves it for the device.
fn partial(mut pkt: Vec<u8>, l2: bool) -> Vec<u8> {
    let t = tcp_layout(&pkt, l2).unwrap();
    let sum = csum_fold(t.pseudo(&pkt, pkt.len() - t.l4));
    pkt[t.l4 + 16..t.l4 + 18].copy_from_slice(&sum.to_be_bytes());
    pkt
}

#[test]
fn received_packets_left_unfinished_get_their_virtio_header() {
    for (v6, l2) in [(false, false), (true, false), (false, true), (true, true)] {
        let what = format!("v6 {v6} l2 {l2}");
        let whole = tcp_packet(v6, l2, 9, TCP_ACK, &noise(8, 1000));
        let t = tcp_layout(&whole, l2).unwrap();
        assert_eq!(unfinished(&whole, l2, 1476), None, "{what}: finished");
        let mut corrupt = whole.clone();
        corrupt[t.end] ^= 1;
        assert_eq!(unfinished(&corrupt, l2, 1476), None, "{what}: corrupt");
        let mut p = partial(whole.clone(), l2);
        let vh = unfinished(&p, l2, 1476).expect("a partial checksum");
        assert_eq!(
            vh,
            VnetHdr {
                flags: NEEDS_CSUM,
                csum_start: t.l4 as u16,
                csum_offset: 16,
                ..VnetHdr::default()
            },
            "{what}"
        );
        // What the kernel does with it: the packet as it was sent.
        assert!(finish_checksum(&mut p, t.l4, 16));
        assert_eq!(p, whole, "{what}");

        // A super-packet, cut where the MTU allows, CWR kept.
        let flags = TCP_ACK | TCP_PSH | TCP_CWR;
        let big = partial(tcp_packet(v6, l2, 9, flags, &noise(9, 5000)), l2);
        let vh = unfinished(&big, l2, 1476).expect("a super-packet");
        let ty = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        let mss = 1476 - (t.end - t.l3);
        assert_eq!(vh.gso_type, ty | GSO_ECN, "{what}");
        assert_eq!(usize::from(vh.gso_size), mss, "{what}");
        assert_eq!(usize::from(vh.hdr_len), t.end, "{what}");
        let segs = cut(&big, l2, &vh);
        assert_eq!(segs.len(), 5000_usize.div_ceil(mss), "{what}");
        for (i, seg) in segs.iter().enumerate() {
            assert!(seg.len() - t.l3 <= 1476, "{what}: segment {i} fits the MTU");
            check_segment(&big, l2, mss, segs.len(), i, seg);
        }
    }
    // UDP: the checksum is 6 bytes into its header.
    let mut udp = vec![
        0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    udp.extend([0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'h', b'e', b'l', b'o']);
    let pseudo = csum_fold(csum_add(17 + 12, &udp[12..20]));
    udp[26..28].copy_from_slice(&pseudo.to_be_bytes());
    let vh = unfinished(&udp, false, 1476).expect("a partial UDP checksum");
    assert_eq!(
        (vh.flags, vh.csum_start, vh.csum_offset, vh.gso_type),
        (NEEDS_CSUM, 20, 6, GSO_NONE)
    );
    assert!(finish_checksum(&mut udp, 20, 6));
    assert_eq!(unfinished(&udp, false, 1476), None, "finished UDP");
    let mut icmp = udp.clone();
    icmp[9] = 1;
    assert_eq!(unfinished(&icmp, false, 1476), None, "not TCP or UDP");

    // The receive path writes such a packet with that header.
    let big = partial(tcp_packet(false, false, 9, TCP_ACK, &noise(9, 5000)), false);
    let mut rx = crate::dataplane::rx::Rx::new(8192);
    rx.data[16..16 + big.len()].copy_from_slice(&big);
    rx.add(0, false, 1476, 16, 16 + big.len(), true);
    assert_eq!(rx.runs[0].count, 1);
    assert_eq!(Some(rx.runs[0].vh), unfinished(&big, false, 1476));
}

proptest! {
    #[test]
    fn pieces_sum_like_the_whole(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
        let cut = (cut * 2).min(data.len() & !1);
        let sum = csum_add(csum_add(0, &data[..cut]), &data[cut..]);
        prop_assert_eq!(!csum_fold(sum), internet_checksum(&data));
    }
}
