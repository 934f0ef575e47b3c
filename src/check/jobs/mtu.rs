//! The MTU check: a probe of exactly the tunnel's MTU passes with DF set,
//! and one byte more is refused.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::{Outcome, fail, pass};
use crate::check::ping::{self, PingError, PingOptions};
use crate::sys::netns;

/// DF probes from `ns` to `to` of `mtu` and `mtu + 1` bytes.
pub(super) fn check(ns: &str, to: IpAddr, mtu: u32, timeout: Duration) -> Result<Outcome> {
    netns::run_in(ns, move || {
        let header = if to.is_ipv4() { 28 } else { 48 };
        let fits = mtu as usize - header;
        let probe = |payload| {
            let opts = PingOptions {
                count: 1,
                timeout,
                payload,
                dont_fragment: true,
                ..PingOptions::default()
            };
            ping::ping(to, &opts)
        };
        let mut details = Vec::new();
        match probe(fits) {
            Ok(r) if r.received() == 1 => details.push(format!(
                "DF probe of {mtu} bytes ({fits} payload) to {to}: answered"
            )),
            Ok(r) => {
                let d = r.lines();
                return Ok(fail(
                    format!(
                        "a DF probe of {mtu} bytes ({fits} payload) got no answer: the path MTU is below the tunnel MTU {mtu}"
                    ),
                    d,
                ));
            }
            Err(PingError::MessageTooLong { mtu: m }) => {
                return Ok(fail(
                    format!(
                        "a DF probe of {mtu} bytes was refused locally (message too long{}): the tunnel device's MTU is below {mtu}",
                        m.map(|m| format!(", MTU {m}")).unwrap_or_default()
                    ),
                    details,
                ));
            }
            Err(e) => return Err(anyhow!("{e}")),
        }
        match probe(fits + 1) {
            Err(PingError::MessageTooLong { .. }) => {
                details.push(format!(
                    "DF probe of {} bytes: refused locally, message too long",
                    mtu + 1
                ));
                Ok(pass(
                    format!("{mtu} bytes pass with DF, {} are refused", mtu + 1),
                    details,
                ))
            }
            Ok(r) => Ok(fail(
                format!(
                    "a DF probe of {} bytes was not refused ({} replies): the MTU is above the expected {mtu}",
                    mtu + 1,
                    r.received()
                ),
                details,
            )),
            Err(e) => Err(anyhow!("{e}")),
        }
    })
}
