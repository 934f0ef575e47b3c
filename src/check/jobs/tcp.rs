//! The tcp check: a connection from a node to an address and port is
//! accepted (a listener answers), within the attempt's timeout.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Outcome, fail, pass};
use crate::sys::netns;

/// Connects from `ns` to `to`:`port`; the connection is closed at once.
pub(super) fn check(ns: &str, to: IpAddr, port: u16, timeout: Duration) -> Result<Outcome> {
    let dest = SocketAddr::new(to, port);
    netns::run_in(ns, move || {
        let start = Instant::now();
        Ok(match TcpStream::connect_timeout(&dest, timeout) {
            Ok(s) => {
                let from = s
                    .local_addr()
                    .map(|a| format!(" from {}", a.ip()))
                    .unwrap_or_default();
                pass(
                    format!(
                        "connected to {dest}{from} in {:.3} ms",
                        start.elapsed().as_secs_f64() * 1e3
                    ),
                    vec![],
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => fail(
                format!("no answer from {dest} within {timeout:?} (a firewall or a lost route?)"),
                vec![],
            ),
            Err(e) => fail(format!("connecting to {dest}: {e}"), vec![]),
        })
    })
}
