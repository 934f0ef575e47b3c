//! The route check: the kernel's route from a node to an address leaves
//! through the expected interface.

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::{Outcome, fail, pass};
use crate::sys::netns;

/// Asks `ns`'s routing for the way to `to` and names the interface whose
/// address (among `sources`, the plan's) it would send from.
pub(super) fn check(
    ns: &str,
    to: IpAddr,
    dev: String,
    sources: Vec<(IpAddr, String)>,
) -> Result<Outcome> {
    netns::run_in(ns, move || {
        let sock = std::net::UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
            .context("opening a probe socket")?;
        // connect() asks the kernel's routing for the way out; nothing is sent.
        if let Err(e) = sock.connect((to, 9)) {
            return Ok(fail(format!("no route to {to}: {e}"), vec![]));
        }
        let src = sock.local_addr()?.ip();
        let out = sources
            .iter()
            .find(|(a, _)| *a == src)
            .map(|(_, d)| d.as_str());
        Ok(match out {
            Some(d) if d == dev => pass(format!("leaves through {dev} (source {src})"), vec![]),
            Some(d) => fail(
                format!("leaves through {d} (source {src}), expected {dev}"),
                vec![],
            ),
            None => fail(
                format!("source {src} is on no interface of the plan, expected {dev}"),
                vec![],
            ),
        })
    })
}
