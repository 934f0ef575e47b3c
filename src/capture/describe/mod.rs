//! Frames as `tcpdump -v -n` prints them: the link layer, ARP, IPv4, IPv6
//! and GRE here; what IP carries besides GRE in `upper`.

mod upper;

use std::fmt::Write as _;

use self::upper::upper;
use super::ip::Ip;
use super::{ETH_HLEN, ETHERTYPE_ARP, be16, be32, ipv4_at, mac_at};
use crate::wire::gre;
use crate::wire::ipv4;

/// Describes an Ethernet frame as `tcpdump -v -n` prints it, one string per
/// line, for GRE (every flag), IPv4, IPv6, ICMP and ICMPv6 echo, UDP and ARP;
/// other protocols get a shorter summary. Unlike tcpdump -v, a gretap payload
/// shows its Ethernet header (as `tcpdump -e` prints it): the MACs matter there.
pub fn describe(frame: &[u8]) -> Vec<String> {
    let mut out = String::new();
    ether(&mut out, frame, false, 0);
    out.lines().map(str::to_owned).collect()
}

fn mac(m: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = m;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn ethertype_name(t: u16) -> &'static str {
    match t {
        gre::ETHERTYPE_IPV4 => "IPv4",
        gre::ETHERTYPE_IPV6 => "IPv6",
        ETHERTYPE_ARP => "ARP",
        gre::ETHERTYPE_TEB => "TEB",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        0x8847 => "MPLS unicast",
        _ => "Unknown",
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        0 => "Options",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPIP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6",
        43 => "Routing",
        44 => "Fragment",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        103 => "PIM",
        112 => "VRRP",
        132 => "SCTP",
        143 => "Ethernet",
        _ => "unknown",
    }
}

/// How deep packets may nest (GRE in GRE, ICMP quoting GRE...) before the
/// text stops: crafted frames must not exhaust the stack.
const MAX_DEPTH: usize = 8;

/// An Ethernet frame; `eflag` prints its header as `tcpdump -e` does;
/// `depth` counts the packets this one is nested in.
fn ether(out: &mut String, frame: &[u8], eflag: bool, depth: usize) {
    let Some(ethertype) = be16(frame, 12) else {
        out.push_str(" [|ether]");
        return;
    };
    let header = format!(
        "{} > {}, ethertype {} (0x{ethertype:04x}), length {}: ",
        mac(mac_at(frame, 6)),
        mac(mac_at(frame, 0)),
        ethertype_name(ethertype),
        frame.len()
    );
    if eflag {
        out.push_str(&header);
    }
    let payload = &frame[ETH_HLEN..];
    match ethertype {
        gre::ETHERTYPE_IPV4 => ip4(out, payload, eflag, depth),
        gre::ETHERTYPE_IPV6 => ip6(out, payload, eflag, depth),
        ETHERTYPE_ARP => arp(out, payload, eflag),
        _ if !eflag => out.push_str(header.trim_end()),
        _ => {}
    }
}

fn arp(out: &mut String, b: &[u8], eflag: bool) {
    let (Some(htype), Some(ptype), Some(&hlen), Some(&plen), Some(op)) =
        (be16(b, 0), be16(b, 2), b.get(4), b.get(5), be16(b, 6))
    else {
        out.push_str(" [|arp]");
        return;
    };
    if b.len() < 8 + 2 * usize::from(hlen) + 2 * usize::from(plen) {
        out.push_str(" [|arp]");
        return;
    }
    if !eflag {
        out.push_str("ARP, ");
    }
    if htype != 1 || ptype != gre::ETHERTYPE_IPV4 || hlen != 6 || plen != 4 {
        let _ = write!(
            out,
            "hardware type {htype}, protocol 0x{ptype:04x}, length {}",
            b.len()
        );
        return;
    }
    let (sha, spa, tha, tpa) = (mac_at(b, 8), ipv4_at(b, 14), mac_at(b, 18), ipv4_at(b, 24));
    let (Some(spa), Some(tpa)) = (spa, tpa) else {
        return;
    };
    out.push_str("Ethernet (len 6), IPv4 (len 4), ");
    let _ = match op {
        1 if tha == [0; 6] => write!(out, "Request who-has {tpa} tell {spa}"),
        1 => write!(out, "Request who-has {tpa} ({}) tell {spa}", mac(tha)),
        2 => write!(out, "Reply {spa} is-at {}", mac(sha)),
        3 => write!(out, "Reverse Request who-is {} tell {}", mac(tha), mac(sha)),
        4 => write!(out, "Reverse Reply {} at {tpa}", mac(tha)),
        _ => write!(out, "Unknown ({op})"),
    };
    let _ = write!(out, ", length {}", b.len());
}

fn ip4(out: &mut String, b: &[u8], eflag: bool, depth: usize) {
    if b.is_empty() {
        out.push_str(" [|ip]");
        return;
    }
    if !eflag {
        out.push_str("IP ");
    }
    // The view checks in tcpdump's order, so bad headers read the same.
    let ip = match Ip::v4(b) {
        Ok(ip) => ip,
        Err(e) => {
            let _ = match e {
                ipv4::Error::Version(v) => write!(out, "bad version {v}"),
                ipv4::Error::HeaderLen(l) => write!(out, "bad-hlen {l}"),
                ipv4::Error::TotalLen(l) => write!(out, "bad-len {l}"),
                // Cut before the end of the fixed header or of its options.
                _ => write!(out, " [|ip]"),
            };
            return;
        }
    };
    let _ = write!(out, "(tos 0x{:x}", ip.tos);
    out.push_str(["", ",ECT(1)", ",ECT(0)", ",CE"][usize::from(ip.tos & 3)]);
    if ip.ttl >= 1 {
        let _ = write!(out, ", ttl {}", ip.ttl);
    }
    let flags: Vec<&str> = [(ip.mf, "+"), (ip.df, "DF"), (ip.evil, "rsvd")]
        .iter()
        .filter(|f| f.0)
        .map(|f| f.1)
        .collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags.join(", ")
    };
    let _ = write!(
        out,
        ", id {}, offset {}, flags [{flags}], proto {} ({}), length {}",
        ip.id,
        ip.offset,
        proto_name(ip.proto),
        ip.proto,
        ip.len
    );
    if let Some((stored, correct)) = ip.bad_sum {
        let _ = write!(out, ", bad cksum {stored:x} (->{correct:x})!");
    }
    out.push_str(")\n    ");
    if ip.offset != 0 {
        let _ = write!(out, "{} > {}: ip-proto-{}", ip.src, ip.dst, ip.proto);
        return;
    }
    upper(out, &ip, depth);
}

fn ip6(out: &mut String, b: &[u8], eflag: bool, depth: usize) {
    let Some(ip) = Ip::parse6(b) else {
        out.push_str(" [|ip6]");
        return;
    };
    if !eflag {
        out.push_str("IP6 ");
    }
    out.push('(');
    if ip.flow & 0x0ff0_0000 != 0 {
        let _ = write!(out, "class 0x{:02x}, ", ip.tos);
    }
    if ip.flow & 0x000f_ffff != 0 {
        let _ = write!(out, "flowlabel 0x{:05x}, ", ip.flow & 0x000f_ffff);
    }
    let _ = write!(
        out,
        "hlim {}, next-header {} ({}) payload length: {}) ",
        ip.ttl,
        proto_name(ip.next_header),
        ip.next_header,
        ip.len - 40
    );
    upper(out, &ip, depth);
}

/// A GRE packet; `len` is its length by the outer header (`b` may be cut short).
fn gre_v(out: &mut String, b: &[u8], len: usize, depth: usize) {
    let (Some(&f0), Some(&f1)) = (b.first(), b.get(1)) else {
        out.push_str(" [|gre]");
        return;
    };
    let version = f1 & 7;
    let _ = write!(out, "GREv{version}");
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE: not a tunnel grelab builds.
        let _ = match version {
            1 => write!(out, ", length {len}"),
            _ => write!(out, " ERROR: unknown-version"),
        };
        return;
    }
    let names = [
        (f0 & 0x80, "checksum present"),
        (f0 & 0x40, "routing present"),
        (f0 & 0x20, "key present"),
        (f0 & 0x10, "sequence# present"),
        (f0 & 0x08, "source routing present"),
        (f1 & 0x80, "ack present"),
    ];
    let flags: Vec<&str> = names.iter().filter(|n| n.0 != 0).map(|n| n.1).collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags.join(", ")
    };
    let _ = write!(out, ", Flags [{flags}]");
    let truncated = |out: &mut String| out.push_str(" [|gre]");
    let Some(protocol) = be16(b, 2) else {
        return truncated(out);
    };
    let mut at = 4;
    if f0 & 0xc0 != 0 {
        let (Some(sum), Some(off)) = (be16(b, at), be16(b, at + 2)) else {
            return truncated(out);
        };
        let _ = write!(out, ", sum 0x{sum:x}, off 0x{off:x}");
        at += 4;
    }
    if f0 & 0x20 != 0 {
        let Some(key) = be32(b, at) else {
            return truncated(out);
        };
        let _ = write!(out, ", key=0x{key:x}");
        at += 4;
    }
    if f0 & 0x10 != 0 {
        let Some(seq) = be32(b, at) else {
            return truncated(out);
        };
        let _ = write!(out, ", seq {seq}");
        at += 4;
    }
    if f0 & 0x40 != 0 {
        return truncated(out); // routing entries: not decoded
    }
    let _ = write!(out, ", length {len}\n\t");
    if depth >= MAX_DEPTH {
        out.push_str(" [|nested]");
        return;
    }
    let payload = &b[at..];
    match protocol {
        gre::ETHERTYPE_IPV4 => ip4(out, payload, false, depth + 1),
        gre::ETHERTYPE_IPV6 => ip6(out, payload, false, depth + 1),
        gre::ETHERTYPE_TEB => ether(out, payload, true, depth + 1),
        p => {
            let _ = write!(out, "gre-proto-0x{p:x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fixtures::*;
    use crate::capture::{PcapWriter, decode};
    use proptest::prelude::*;
    use std::process::Command;

    /// Frames with what `tcpdump -t -v -n` 4.99.3 printed for them (gretap:
    /// the inner Ethernet line as `-e` prints it).
    fn vectors() -> Vec<(Vec<u8>, &'static str)> {
        let t255 = |id| V4 {
            ttl: 255,
            id,
            ..V4_DEFAULT
        };
        vec![
            (seed(), "IP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, false, Some(0x2a), None), t255(1), &inner_ping()),
             "IP (tos 0x0, ttl 255, id 1, offset 0, flags [DF], proto GRE (47), length 112)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [key present], key=0x2a, length 92
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, true, None, Some(7)), t255(2), &inner_ping()),
             "IP (tos 0x0, ttl 255, id 2, offset 0, flags [DF], proto GRE (47), length 116)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [checksum present, sequence# present], sum 0x67f8, off 0x0, seq 7, length 96
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, true, Some(0xdead_beef), Some(7)), V4 { ttl: 255, id: 3, tos: 0xb8, df: false }, &inner_ping()),
             "IP (tos 0xb8, ttl 255, id 3, offset 0, flags [none], proto GRE (47), length 120)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [checksum present, key present, sequence# present], sum 0xaa5a, off 0x0, key=0xdeadbeef, seq 7, length 100
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x6558, false, Some(5), None), V4 { id: 4, ..V4_DEFAULT }, &gretap_inner()),
             "IP (tos 0x0, ttl 64, id 4, offset 0, flags [DF], proto GRE (47), length 126)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [key present], key=0x5, length 106
\t02:00:00:00:00:0b > 02:00:00:00:00:0a, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (eth(M2, M1, 0x86dd, &ipv6(v6(1, 0), v6(2, 0), 47, &gre_packet(repr(0x86dd, false, None, None), &inner6()))),
             "IP6 (hlim 64, next-header GRE (47) payload length: 68) fd00::1 > fd00::2: GREv0, Flags [none], length 68
\tIP6 (hlim 64, next-header ICMPv6 (58) payload length: 24) fd00:0:0:1::1 > fd00:0:0:1::2: [icmp6 sum ok] ICMP6, echo request, id 4660, seq 3"),
            (eth(M2, M1, 0x86dd, &ipv6(v6(1, 0), v6(2, 0), 47, &gre_packet(repr(0x6558, false, None, None), &gretap_inner()))),
             "IP6 (hlim 64, next-header GRE (47) payload length: 102) fd00::1 > fd00::2: GREv0, Flags [none], length 102
\t02:00:00:00:00:0b > 02:00:00:00:00:0a, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x86dd, false, None, None), t255(5), &inner6()),
             "IP (tos 0x0, ttl 255, id 5, offset 0, flags [DF], proto GRE (47), length 88)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 68
\tIP6 (hlim 64, next-header ICMPv6 (58) payload length: 24) fd00:0:0:1::1 > fd00:0:0:1::2: [icmp6 sum ok] ICMP6, echo request, id 4660, seq 3"),
            (over_v4(repr(0x1234, false, None, None), t255(6), b"xyz"),
             "IP (tos 0x0, ttl 255, id 6, offset 0, flags [DF], proto GRE (47), length 27)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 7
\tgre-proto-0x1234"),
            (arp_request(), "ARP, Ethernet (len 6), IPv4 (len 4), Request who-has 10.0.0.2 tell 10.0.0.1, length 28"),
            (arp_frame(2, M2, [10, 0, 0, 2], M1, [10, 0, 0, 1]),
             "ARP, Ethernet (len 6), IPv4 (len 4), Reply 10.0.0.2 is-at 02:00:00:00:00:02, length 28"),
            (gre_unreachable(), "IP (tos 0xc0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 56)
    152.16.10.2 > 172.16.10.2: ICMP 152.16.10.2 protocol 47 unreachable, length 36
\tIP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88
\tIP  [|ip]"),
            (echo_reply(), "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto ICMP (1), length 31)
    192.168.50.2 > 192.168.50.1: ICMP echo reply, id 9, seq 2, length 11"),
            (udp6(), "IP6 (hlim 64, next-header UDP (17) payload length: 12) fd00:0:0:1::1.12345 > fd00:0:0:1::2.443: [udp sum ok] UDP, length 4"),
            (eth(M2, M1, 0x0800, &ipv4([1, 2, 3, 4], [5, 6, 7, 8], 99, V4_DEFAULT, b"abcd")),
             "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto unknown (99), length 24)
    1.2.3.4 > 5.6.7.8:  ip-proto-99 4"),
            (eth(M2, M1, 0x0800, &ipv4([1, 2, 3, 4], [5, 6, 7, 8], 17, V4_DEFAULT, &[3, 232, 7, 208, 0, 12, 0, 0, 1, 2, 3, 4])),
             "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 32)
    1.2.3.4.1000 > 5.6.7.8.2000: UDP, length 4"),
        ]
    }

    #[test]
    fn describes_like_tcpdump() {
        for (frame, want) in vectors() {
            assert_eq!(describe(&frame).join("\n"), want);
        }
    }

    #[test]
    fn seed_packet_reads_exactly_as_in_the_blog() {
        let want = [
            "IP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)",
            "    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88",
            "\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)",
            "    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64",
        ];
        assert_eq!(describe(&seed()), want);
    }

    #[test]
    fn short_descriptions_for_odd_frames() {
        assert_eq!(describe(&[1, 2, 3]), [" [|ether]"]);
        assert_eq!(
            describe(&eth(M2, M1, 0x1234, b"hello")),
            ["02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype Unknown (0x1234), length 19:"]
        );
        assert_eq!(describe(&seed()[..ETH_HLEN + 10]), ["IP  [|ip]"]);
    }

    #[test]
    fn bad_ipv4_headers_are_named() {
        // tcpdump 4.99.3 prints bad-hlen and bad-len alike (version 6 it reads as IPv6).
        let frame = |first: u8, total: Option<u16>, cut: usize| {
            let mut f = eth(
                M2,
                M1,
                0x0800,
                &ipv4([1, 2, 3, 4], [5, 6, 7, 8], 99, V4_DEFAULT, b"abcd"),
            );
            f[ETH_HLEN] = first;
            if let Some(t) = total {
                f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&t.to_be_bytes());
            }
            f.truncate(cut);
            f
        };
        assert_eq!(describe(&frame(0x65, None, 38)), ["IP bad version 6"]);
        assert_eq!(describe(&frame(0x44, None, 38)), ["IP bad-hlen 16"]);
        assert_eq!(describe(&frame(0x45, Some(10), 38)), ["IP bad-len 10"]);
        // Options announced but not captured.
        assert_eq!(describe(&frame(0x46, Some(28), 36)), ["IP  [|ip]"]);
    }

    #[test]
    fn deep_nesting_stops_without_exhausting_the_stack() {
        // GRE in GRE in GRE...: 2000 levels would overflow the stack unchecked.
        let mut packet = inner_ping();
        for _ in 0..2000 {
            packet = ipv4(
                HOST1,
                HOST2,
                47,
                V4_DEFAULT,
                &gre_packet(repr(0x0800, false, None, None), &packet),
            );
        }
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || describe(&eth(M2, M1, 0x0800, &packet)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(text.len(), 2 * (MAX_DEPTH + 1) + 1);
        assert_eq!(text.last().unwrap(), "\t [|nested]");
    }

    fn tcpdump(path: &std::path::Path, extra: &[&str]) -> Vec<Vec<String>> {
        let out = Command::new("tcpdump")
            .args(["-t", "-v", "-n"])
            .args(extra)
            .arg("-r")
            .arg(path)
            .output()
            .expect("this test needs tcpdump (Debian package `tcpdump`)");
        assert!(
            out.status.success(),
            "tcpdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut packets: Vec<Vec<String>> = Vec::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if line.starts_with([' ', '\t']) {
                packets
                    .last_mut()
                    .expect("a packet's first line")
                    .push(line.to_owned());
            } else {
                packets.push(vec![line.to_owned()]);
            }
        }
        packets
    }

    /// Writes the vectors with PcapWriter and checks tcpdump reads the same
    /// text that describe() gives.
    #[test]
    fn tcpdump_reads_our_pcap_as_describe_does() {
        let vectors = vectors();
        let path =
            std::env::temp_dir().join(format!("grelab-capture-test-{}.pcap", std::process::id()));
        // Also the seed cut short, as a small snap length would.
        let mut frames: Vec<Vec<u8>> = vectors.iter().map(|v| v.0.clone()).collect();
        let cuts = [36, 40, 50, 80];
        frames.extend(cuts.iter().map(|&n| seed()[..n].to_vec()));
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for (i, data) in frames.iter().enumerate() {
            let mut f = frame(data.clone(), i as u64);
            f.wire_len = f
                .wire_len
                .max(if i >= vectors.len() { seed().len() } else { 0 });
            w.write(&f).unwrap();
        }
        drop(w);
        let plain = tcpdump(&path, &[]);
        let with_e = tcpdump(&path, &["-e"]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(plain.len(), frames.len());
        assert!(plain[0][1].contains("GREv0"));
        for (i, data) in frames.iter().enumerate() {
            let mut want = plain[i].clone();
            if decode(data).is_some_and(|e| e.gre.protocol == gre::ETHERTYPE_TEB) {
                // The inner Ethernet header only shows with -e: take the
                // lines after the GRE line from there.
                let after = want.iter().position(|l| l.contains("GREv0")).unwrap() + 1;
                want.truncate(after);
                want.extend(with_e[i][after..].iter().cloned());
            }
            assert_eq!(describe(data), want, "frame {i}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = describe(&bytes);
        }

        #[test]
        fn arbitrary_gre_after_real_headers_never_panics(
            v6 in any::<bool>(),
            mut gre in proptest::collection::vec(any::<u8>(), 0..120),
            flags in prop::sample::select(vec![0x00u8, 0x80, 0x20, 0x10, 0xb0]),
            protocol in prop::sample::select(vec![0x0800u16, 0x86dd, 0x6558, 0x0806]),
        ) {
            if gre.len() >= 4 {
                gre[0] = flags;
                gre[1] = 0;
                gre[2..4].copy_from_slice(&protocol.to_be_bytes());
            }
            let frame = if v6 {
                eth(M2, M1, 0x86dd, &ipv6(super::tests::v6(1, 0), super::tests::v6(2, 0), 47, &gre))
            } else {
                eth(M2, M1, 0x0800, &ipv4(HOST1, HOST2, 47, V4_DEFAULT, &gre))
            };
            let _ = decode(&frame);
            prop_assert!(!describe(&frame).is_empty());
        }
    }
}
