//! The encap check: one probe crossing a tunnel, captured on the sending
//! node's underlay interface, carries every header field the tunnel's
//! configuration asks for.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::{Outcome, fail, pass};
use crate::capture::{self, Encap};
use crate::check::ping::{self, PingOptions};
use crate::model::TunnelEnd;
use crate::sys::netns;
use crate::wire::gre;

/// One probe of a tunnel end: from `ns`, a ping `from` > `to` that must
/// leave `iface` encapsulated as `end` says, within `timeout`.
#[derive(Debug, Clone)]
pub(in crate::check) struct Probe {
    pub(in crate::check) ns: String,
    pub(in crate::check) iface: String,
    pub(in crate::check) end: TunnelEnd,
    pub(in crate::check) from: IpAddr,
    pub(in crate::check) to: IpAddr,
    pub(in crate::check) timeout: Duration,
}

/// Captures one probe crossing the tunnel on the sending node's underlay
/// interface and checks every header field against the configuration.
pub(super) fn check(probe: Probe) -> Result<Outcome> {
    netns::run_in(&probe.ns.clone(), move || {
        let found = capture_probe(&probe)?;
        let Probe {
            iface,
            end,
            from,
            to,
            timeout,
            ..
        } = probe;
        let Some((e, lines)) = found else {
            return Ok(fail(
                format!(
                    "no GRE packet {} > {} carrying {from} > {to} seen on {iface} within {timeout:?}",
                    end.local, end.remote
                ),
                vec![],
            ));
        };
        let wrong = wrong_fields(&e, &end, to);
        let summary = format!(
            "proto GRE (47) {} > {}, ttl {}, {}GREv0{}, inner {from} > {to}",
            e.outer_src,
            e.outer_dst,
            e.ttl,
            if e.df { "DF, " } else { "" },
            e.gre.key.map(|k| format!(" key {k}")).unwrap_or_default()
        );
        Ok(if wrong.is_empty() {
            pass(summary, lines)
        } else {
            fail(format!("{summary}: wrong {}", wrong.join(", ")), lines)
        })
    })
}

/// In the probe's namespace (the calling thread's): pings `to` with an
/// identifier of its own and returns the first GRE frame `iface` sends from
/// `end.local` to `end.remote` carrying one of those requests from `from`,
/// decoded and described.
fn capture_probe(probe: &Probe) -> Result<Option<(Encap, Vec<String>)>> {
    let (end, from, to, timeout) = (&probe.end, probe.from, probe.to, probe.timeout);
    let mut cap = capture::Capture::open(&probe.iface)?;
    // Its own echo identifier: other checks' probes cross the same tunnel.
    let ident = ping::next_id();
    let pinger = {
        let ns = probe.ns.clone();
        std::thread::spawn(move || {
            netns::run_in(&ns, move || {
                let opts = PingOptions {
                    count: 2,
                    interval: crate::topology::DEFAULT_PING_INTERVAL.std(),
                    timeout,
                    ident: Some(ident),
                    ..PingOptions::default()
                };
                ping::ping(to, &opts).map_err(|e| anyhow!("{e}"))
            })
        })
    };
    let deadline = Instant::now() + timeout;
    let mut found = None;
    while let Some(frame) = cap.next(deadline)? {
        if !frame.outgoing {
            continue;
        }
        if let Some(e) = capture::decode(&frame.data) {
            let inner = match &e.inner {
                capture::Inner::Ip {
                    src, dst, echo_id, ..
                } => Some((*src, *dst, *echo_id)),
                capture::Inner::Ethernet {
                    ip: Some((src, dst, _)),
                    echo_id,
                    ..
                } => Some((*src, *dst, *echo_id)),
                _ => None,
            };
            if e.outer_src == end.local
                && e.outer_dst == end.remote
                && inner == Some((from, to, Some(ident)))
            {
                found = Some((e, capture::describe(&frame.data)));
                break;
            }
        }
    }
    let _ = pinger.join();
    Ok(found)
}

/// What in `e` differs from what tunnel end `end` asks for.
fn wrong_fields(e: &Encap, end: &TunnelEnd, to: IpAddr) -> Vec<String> {
    let mut wrong = Vec::new();
    let (inner_ttl, inner_df) = match &e.inner {
        capture::Inner::Ip { ttl, df, .. } => (Some(*ttl), *df),
        _ => (None, false),
    };
    let want_ttl = if end.ttl != 0 {
        Some(end.ttl)
    } else {
        inner_ttl
    };
    if let Some(t) = want_ttl
        && e.ttl != t
    {
        wrong.push(format!("outer ttl {} (expected {t})", e.ttl));
    }
    // ip_gre copies an IPv4 inner DF when pmtudisc is off.
    let want_df = end.pmtudisc || (!end.kind.is_l2() && inner_df);
    if end.local.is_ipv4() && e.df != want_df {
        wrong.push(format!(
            "DF {} (pmtudisc is {})",
            if e.df { "set" } else { "clear" },
            if end.pmtudisc { "on" } else { "off" }
        ));
    }
    if e.gre.key != end.okey {
        let show = |k: Option<u32>| k.map_or("none".to_owned(), |k| k.to_string());
        wrong.push(format!(
            "GRE key {} (expected {})",
            show(e.gre.key),
            show(end.okey)
        ));
    }
    if e.gre.checksum != end.checksum {
        wrong.push(format!(
            "GRE checksum {} (expected {})",
            e.gre.checksum, end.checksum
        ));
    }
    if e.gre.sequence.is_some() != end.sequence {
        wrong.push(format!(
            "GRE sequence numbers {} (expected {})",
            e.gre.sequence.is_some(),
            end.sequence
        ));
    }
    let want_proto = if end.kind.is_l2() {
        gre::ETHERTYPE_TEB
    } else if to.is_ipv4() {
        gre::ETHERTYPE_IPV4
    } else {
        gre::ETHERTYPE_IPV6
    };
    if e.gre.protocol != want_proto {
        wrong.push(format!(
            "GRE protocol 0x{:04x} (expected 0x{want_proto:04x})",
            e.gre.protocol
        ));
    }
    wrong
}
