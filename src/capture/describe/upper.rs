//! What IP carries besides GRE, as tcpdump -v prints it: ICMP (with the
//! packet an error quotes), ICMPv6, UDP, and a TCP summary.

use std::fmt::Write as _;

use super::{MAX_DEPTH, gre_v, ip4};
use crate::capture::ip::Ip;
use crate::capture::{
    PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, be16, be32, ipv6_at,
};

/// The upper layer of a first fragment (or whole packet).
pub(super) fn upper(out: &mut String, ip: &Ip, depth: usize) {
    let (src, dst, b) = (ip.src, ip.dst, ip.payload);
    match ip.proto {
        PROTO_GRE => {
            let _ = write!(out, "{src} > {dst}: ");
            gre_v(out, b, ip.upper_len, depth);
        }
        PROTO_ICMP if !ip.v6 => icmp(out, ip, depth),
        PROTO_ICMPV6 if ip.v6 => icmp6(out, ip),
        PROTO_UDP => udp(out, ip),
        PROTO_TCP => tcp(out, ip),
        p => {
            let _ = write!(out, "{src} > {dst}:  ip-proto-{p} {}", ip.upper_len);
        }
    }
}

fn icmp(out: &mut String, ip: &Ip, depth: usize) {
    let b = ip.payload;
    let _ = write!(out, "{} > {}: ", ip.src, ip.dst);
    let (Some(&ty), Some(&code), true) = (b.first(), b.get(1), b.len() >= 8) else {
        out.push_str(" [|icmp]");
        return;
    };
    // The packet an ICMP error quotes starts at byte 8.
    let quoted = b.get(8..).and_then(Ip::parse4);
    let qdst = quoted
        .as_ref()
        .map_or_else(|| "?".to_owned(), |q| q.dst.to_string());
    let text = match (ty, code) {
        (0 | 8, _) => format!(
            "echo {}, id {}, seq {}",
            if ty == 8 { "request" } else { "reply" },
            be16(b, 4).unwrap_or(0),
            be16(b, 6).unwrap_or(0)
        ),
        (3, 0) => format!("net {qdst} unreachable"),
        (3, 1) => format!("host {qdst} unreachable"),
        (3, 2) => format!(
            "{qdst} protocol {} unreachable",
            quoted.as_ref().map_or(0, |q| q.proto)
        ),
        (3, 3) => match quoted
            .as_ref()
            .filter(|q| matches!(q.proto, PROTO_UDP | PROTO_TCP))
        {
            Some(q) => format!(
                "{qdst} {} port {} unreachable",
                if q.proto == PROTO_UDP { "udp" } else { "tcp" },
                be16(q.payload, 2).unwrap_or(0)
            ),
            None => format!("{qdst} port unreachable"),
        },
        (3, 4) => format!(
            "{qdst} unreachable - need to frag (mtu {})",
            be16(b, 6).unwrap_or(0)
        ),
        (11, 0) => "time exceeded in-transit".to_owned(),
        (11, 1) => "ip reassembly time exceeded".to_owned(),
        _ => format!("type-#{ty}"),
    };
    let _ = write!(out, "ICMP {text}, length {}", ip.upper_len);
    if ip.whole
        && !ip.fragmented()
        && let Some((stored, correct)) = ip.check_upper(PROTO_ICMP, 2, false)
    {
        let _ = write!(out, " (wrong icmp cksum {stored:x} (->{correct:x})!)");
    }
    // Errors quote the packet that caused them: show it, as tcpdump -v does.
    if matches!(ty, 3 | 4 | 5 | 11 | 12) {
        out.push_str("\n\t");
        if depth >= MAX_DEPTH {
            out.push_str(" [|nested]");
            return;
        }
        ip4(out, &b[8..], false, depth + 1);
    }
}

fn icmp6(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let _ = write!(out, "{} > {}: ", ip.src, ip.dst);
    let Some(&ty) = b.first() else {
        out.push_str(" [|icmp6]");
        return;
    };
    if ip.whole && !ip.fragmented() && b.len() >= 4 {
        match ip.check_upper(PROTO_ICMPV6, 2, true) {
            None => out.push_str("[icmp6 sum ok] "),
            Some((stored, correct)) => {
                let _ = write!(out, "[bad icmp6 cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
            }
        }
    }
    let target = || ipv6_at(b, 8).map_or_else(|| "?".to_owned(), |a| a.to_string());
    let _ = match ty {
        128 | 129 => write!(
            out,
            "ICMP6, echo {}, id {}, seq {}",
            if ty == 128 { "request" } else { "reply" },
            be16(b, 4).unwrap_or(0),
            be16(b, 6).unwrap_or(0)
        ),
        2 => write!(
            out,
            "ICMP6, packet too big, mtu {}",
            be32(b, 4).unwrap_or(0)
        ),
        135 => write!(
            out,
            "ICMP6, neighbor solicitation, length {}, who has {}",
            ip.upper_len,
            target()
        ),
        136 => write!(
            out,
            "ICMP6, neighbor advertisement, length {}, tgt is {}",
            ip.upper_len,
            target()
        ),
        _ => {
            let name = match ty {
                1 => "destination unreachable",
                3 => "time exceeded in-transit",
                133 => "router solicitation",
                134 => "router advertisement",
                _ => "unknown icmp6 type",
            };
            write!(out, "ICMP6, {name}, length {}", ip.upper_len)
        }
    };
}

fn udp(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let (Some(sport), Some(dport), Some(ulen)) = (be16(b, 0), be16(b, 2), be16(b, 4)) else {
        let _ = write!(out, "{} > {}:  [|udp]", ip.src, ip.dst);
        return;
    };
    let _ = write!(out, "{}.{sport} > {}.{dport}: ", ip.src, ip.dst);
    // tcpdump -v checks UDP checksums over IPv6 only (IPv4 needs -vv).
    if ip.v6 && ip.whole && !ip.fragmented() {
        match ip.check_upper(PROTO_UDP, 6, true) {
            None => out.push_str("[udp sum ok] "),
            Some((stored, correct)) => {
                let _ = write!(out, "[bad udp cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
            }
        }
    }
    let _ = write!(out, "UDP, length {}", ulen.saturating_sub(8));
}

/// A summary only: tcpdump's TCP line depends on earlier packets (relative
/// sequence numbers) and on options.
fn tcp(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let (Some(sport), Some(dport), Some(seq), Some(&off), Some(&fl), Some(win)) = (
        be16(b, 0),
        be16(b, 2),
        be32(b, 4),
        b.get(12),
        b.get(13),
        be16(b, 14),
    ) else {
        let _ = write!(out, "{} > {}:  [|tcp]", ip.src, ip.dst);
        return;
    };
    let letters = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    let flags: String = letters
        .iter()
        .filter(|l| fl & l.0 != 0)
        .map(|l| l.1)
        .collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags
    };
    let len = ip.upper_len.saturating_sub(usize::from(off >> 4) * 4);
    let _ = write!(
        out,
        "{}.{sport} > {}.{dport}: Flags [{flags}], seq {seq}, win {win}, length {len}",
        ip.src, ip.dst
    );
}
