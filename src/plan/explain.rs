//! What the tutorial teaches, computed for each tunnel of a plan: the
//! packet's layers with their byte counts, the MTU arithmetic, the outer
//! TTL, DF and protocol 47, and the tcpdump reading a ping across it gives.
//! Pure: from the plan alone.

use std::fmt::Write;

use super::{Plan, Step};
use crate::model::TunnelEnd;

/// The underlay interface of a tunnel end (the one holding its `local`
/// address) and that interface's MTU.
fn underlay(plan: &Plan, end: &TunnelEnd) -> Option<(String, u32)> {
    let dev = plan.steps.iter().find_map(|s| match s {
        Step::Address { ns, dev, addr } if *ns == end.netns && addr.addr == end.local => {
            Some(dev.clone())
        }
        _ => None,
    })?;
    let mtu = plan.steps.iter().find_map(|s| match s {
        Step::Veth { ns, name, mtu, .. } if *ns == end.netns && *name == dev => Some(*mtu),
        Step::Veth {
            peer_ns, peer, mtu, ..
        } if *peer_ns == end.netns && *peer == dev => Some(*mtu),
        _ => None,
    })?;
    Some((dev, mtu))
}

/// The overlay address of a tunnel end's device, if it has one.
fn overlay(plan: &Plan, end: &TunnelEnd) -> Option<std::net::IpAddr> {
    plan.steps.iter().find_map(|s| match s {
        Step::Address { ns, dev, addr } if *ns == end.netns && *dev == end.name => Some(addr.addr),
        _ => None,
    })
}

/// One row of the layer drawing.
fn row(out: &mut String, what: &str, bytes: &str, note: &str) {
    let _ = writeln!(out, "    | {what:<26} {bytes:>13} | {note}");
}

/// The explanation of one tunnel, seen from `end` (the sending side).
pub fn tunnel(plan: &Plan, end: &TunnelEnd, node: &str, peer_node: &str) -> String {
    let mut out = String::new();
    let kind = end.kind.as_str();
    let _ = writeln!(
        out,
        "tunnel {} ({kind}) from {node} ({}) to {peer_node} ({})",
        end.name, end.local, end.remote
    );
    let v6 = end.kind.is_ipv6();
    let o = crate::model::Overhead::of(end.kind, &end.options());
    let (outer, ghdr, eth) = (o.outer, o.gre, o.ethernet);
    let keyed = end.okey.is_some();
    let _ = writeln!(out, "  the packet on the underlay, outermost first:");
    let _ = writeln!(out, "    +{}+", "-".repeat(42));
    let ttl = if end.ttl == 0 {
        "inherited from the inner packet".to_owned()
    } else {
        end.ttl.to_string()
    };
    let df = if end.pmtudisc {
        "DF set"
    } else {
        "DF copied from the inner IPv4 packet"
    };
    let family = if v6 { "IPv6" } else { "IPv4" };
    row(
        &mut out,
        &format!("outer {family} header"),
        &format!("{outer} bytes"),
        &format!(
            "{} > {}, {} GRE (47), {} {ttl}{}",
            end.local,
            end.remote,
            if v6 { "next header" } else { "protocol" },
            if v6 { "hop limit" } else { "ttl" },
            if v6 { String::new() } else { format!(", {df}") }
        ),
    );
    let flags = format!(
        "C={} K={} S={}, version 0",
        u8::from(end.checksum),
        u8::from(keyed),
        u8::from(end.sequence)
    );
    row(&mut out, "GRE header", "4 bytes", &flags);
    if end.checksum {
        row(
            &mut out,
            "  checksum + reserved",
            "4 bytes",
            "over the GRE header and payload",
        );
    }
    if let Some(k) = end.okey {
        row(&mut out, "  key", "4 bytes", &format!("{k} (0x{k:08x})"));
    }
    if end.sequence {
        row(
            &mut out,
            "  sequence number",
            "4 bytes",
            "counts up per packet",
        );
    }
    let proto = if end.kind.is_l2() {
        "0x6558 (Transparent Ethernet Bridging)"
    } else {
        "0x0800 (IPv4) or 0x86dd (IPv6), as the inner packet"
    };
    let _ = writeln!(out, "    |   protocol type: {proto}");
    if eth > 0 {
        row(
            &mut out,
            "inner Ethernet header",
            "14 bytes",
            "the frame as the TAP device sent it",
        );
    }
    row(
        &mut out,
        "inner packet",
        &format!("<= {} bytes", end.mtu),
        "what the tunnel device sends",
    );
    let _ = writeln!(out, "    +{}+", "-".repeat(42));

    mtu_arithmetic(&mut out, plan, end, outer, ghdr, eth);
    if let (Some(src), Some(dst)) = (overlay(plan, end), peer_overlay(plan, end)) {
        explain_tcpdump(&mut out, end, src, dst, outer, ghdr + eth);
    }
    out
}

/// The MTU arithmetic of `end`: its underlay's MTU less each header.
fn mtu_arithmetic(out: &mut String, plan: &Plan, end: &TunnelEnd, outer: u32, ghdr: u32, eth: u32) {
    let overhead = outer + ghdr + eth;
    let family = if end.kind.is_ipv6() { "IPv6" } else { "IPv4" };
    let keyed = end.okey.is_some();
    match underlay(plan, end) {
        Some((dev, mtu)) => {
            let mut sum = format!("{mtu} ({dev}) - {outer} (outer {family})");
            let _ = write!(sum, " - {ghdr} (GRE");
            let mut extras = Vec::new();
            if end.checksum {
                extras.push("checksum");
            }
            if keyed {
                extras.push("key");
            }
            if end.sequence {
                extras.push("sequence");
            }
            if !extras.is_empty() {
                let _ = write!(sum, " with {}", extras.join(", "));
            }
            sum.push(')');
            if eth > 0 {
                sum.push_str(" - 14 (inner Ethernet)");
            }
            let derived = mtu.saturating_sub(overhead);
            let _ = writeln!(out, "  MTU: {sum} = {derived}");
            if derived != end.mtu {
                let _ = writeln!(out, "  (the file sets mtu {} instead)", end.mtu);
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  MTU: {} = the device's, {overhead} bytes of headers on top",
                end.mtu
            );
        }
    }
}

/// The overlay address of the other end of `end`'s tunnel.
fn peer_overlay(plan: &Plan, end: &TunnelEnd) -> Option<std::net::IpAddr> {
    overlay(plan, plan.peer(end)?)
}

/// What `tcpdump -v` on the underlay shows of a 64-byte ping across.
fn explain_tcpdump(
    out: &mut String,
    end: &TunnelEnd,
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    outer: u32,
    gre_and_eth: u32,
) {
    if end.kind.is_ipv6() || !src.is_ipv4() || end.kind.is_l2() {
        let _ = writeln!(
            out,
            "  a ping {src} > {dst} crosses as {} bytes of headers plus the inner packet",
            outer + gre_and_eth
        );
        return;
    }
    // A 64-byte ICMP payload: 84 bytes of inner IPv4, then GRE, then outer.
    let inner = 84;
    let gre_len = inner + gre_and_eth;
    let total = inner + gre_and_eth + outer;
    let ttl = if end.ttl == 0 { 64 } else { end.ttl };
    let flags = if end.pmtudisc {
        "[DF]"
    } else {
        "[DF] (copied)"
    };
    let _ = writeln!(
        out,
        "  tcpdump -v on the underlay reads a ping {src} > {dst} as:"
    );
    let _ = writeln!(
        out,
        "    IP (tos 0x{:x}, ttl {ttl}, id ..., offset 0, flags {flags}, proto GRE (47), length {total})",
        end.tos
    );
    let key = end.okey.map_or(String::new(), |k| format!(", key=0x{k:x}"));
    let gflags = if end.okey.is_some() {
        "[key present]"
    } else {
        "[none]"
    };
    let _ = writeln!(
        out,
        "        {} > {}: GREv0, Flags {gflags}{key}, length {gre_len}",
        end.local, end.remote
    );
    let _ = writeln!(
        out,
        "            IP (tos 0x0, ttl 64, id ..., offset 0, flags [DF], proto ICMP (1), length {inner})"
    );
    let _ = writeln!(
        out,
        "        {src} > {dst}: ICMP echo request, id ..., seq 1, length 64"
    );
}
