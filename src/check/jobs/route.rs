//! The route check: the kernel's route from a node to an address leaves
//! through the expected interface (the lookup `ip route get` makes).

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::{Outcome, fail, pass};
use crate::sys::{netns, rtnl};

/// Asks `ns`'s routing for the way to `to` and names the interface it
/// leaves through.
pub(super) fn check(ns: &str, to: IpAddr, dev: String) -> Result<Outcome> {
    netns::run_in(ns, move || {
        let Some(oif) = rtnl::route_oif(to)? else {
            return Ok(fail(
                format!("no route to {to}, expected one via {dev}"),
                vec![],
            ));
        };
        let out = nix::net::if_::if_indextoname(oif)
            .with_context(|| format!("naming interface {oif}, the route's way out"))?;
        let out = out.to_string_lossy();
        Ok(if out == dev {
            pass(format!("leaves through {dev}"), vec![])
        } else {
            fail(format!("leaves through {out}, expected {dev}"), vec![])
        })
    })
}
