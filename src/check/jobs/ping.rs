//! The ping check: a node's echo requests to an address are all answered,
//! or (expect: failure) none is.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::{Outcome, fail, pass};
use crate::check::ping::{self, PingOptions};
use crate::sys::netns;
use crate::topology::Expect;

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
        })
    })
}
