//! The ping check: a node's echo requests to an address are all answered,
//! or (expect: failure) none is, or the path's loss and average round trip
//! are within the bounds given.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::{Outcome, fail, pass};
use crate::check::ping::{self, PingOptions};
use crate::model::{Micros, Share};
use crate::sys::netns;
use crate::topology::{Expect, PathExpect};

/// Pings `to` `count` times from `ns` and judges the replies by `expect`.
pub(super) fn check(
    ns: &str,
    to: IpAddr,
    count: u32,
    expect: Expect,
    interval: Duration,
    timeout: Duration,
) -> Result<Outcome> {
    netns::run_in(ns, move || {
        let opts = PingOptions {
            count,
            interval,
            timeout,
            ..PingOptions::default()
        };
        let report = ping::ping(to, &opts).map_err(|e| anyhow!("{e}"))?;
        let got = report.received();
        let mut summary = format!("{got}/{count} replies");
        if let Some((_, avg, _, _)) = report.rtt_stats() {
            summary.push_str(&format!(", rtt avg {:.3} ms", avg.as_secs_f64() * 1e3));
        }
        let details = report.lines();
        Ok(match expect {
            Expect::Success if got == count => pass(summary, details),
            Expect::Success => fail(
                format!("{summary}: {to} did not answer every echo request"),
                details,
            ),
            Expect::Failure if got == 0 => {
                pass(format!("{summary}, isolated as expected"), details)
            }
            Expect::Failure => fail(
                format!("{summary}: {to} answered, but should not be reachable"),
                details,
            ),
            Expect::Path(p) => {
                let loss = Share((report.loss_percent() * 1e4).round() as u32);
                let rtt = report
                    .rtt_stats()
                    .map(|(_, avg, _, _)| Micros(avg.as_micros() as u64));
                let summary = format!("{summary}, loss {loss}");
                let mut wrong = Vec::new();
                if let Some(b) = p.loss
                    && !b.holds(loss)
                {
                    wrong.push(format!("loss {loss} is not {b}"));
                }
                match (p.rtt, rtt) {
                    (Some(b), Some(r)) if !b.holds(r) => {
                        wrong.push(format!("rtt avg {r} is not {b}"));
                    }
                    (Some(_), None) => wrong.push("no reply to time".to_owned()),
                    _ => {}
                }
                if wrong.is_empty() {
                    pass(summary, details)
                } else {
                    fail(format!("{summary}: {}", wrong.join(", ")), details)
                }
            }
        })
    })
}

/// `loss < 5%, rtt < 50ms`: the bounds, for a check's name.
pub(super) fn bounds(p: &PathExpect) -> String {
    let mut parts = Vec::new();
    if let Some(b) = p.loss {
        parts.push(format!("loss {b}"));
    }
    if let Some(b) = p.rtt {
        parts.push(format!("rtt {b}"));
    }
    parts.join(", ")
}
