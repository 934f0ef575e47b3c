//! `grelab capture`: packets on a node's interface, decoded, and a pcap file.

use std::path::PathBuf;

use anyhow::Result;

use super::labs::node_ns;
use super::output::{self, Output};

/// Captures on `iface` of `node`, and into the pcap file `write` if given.
pub(super) fn run(
    lab: Option<String>,
    node: &str,
    iface: &str,
    count: u32,
    timeout: f64,
    write: Option<PathBuf>,
    force: bool,
) -> Result<()> {
    let ns = node_ns(lab, node)?;
    let pcap = write
        .map(|p| output::create(&p, output::existing(force)))
        .transpose()?;
    capture(&ns, iface, count, timeout, pcap)
}

/// A number of seconds for `--timeout`: finite, 0 to a day.
pub(super) fn seconds(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=86400.0).contains(&t) {
        return Err(format!("{s} is out of range: use 0 to 86400 seconds"));
    }
    Ok(t)
}

/// Shows packets on `iface` in namespace `ns`; each is written to `pcap` as
/// it arrives, unbuffered: a new file is whole at any moment, and a Ctrl-C
/// keeps what was captured (a replacement takes its name at the end).
fn capture(ns: &str, iface: &str, count: u32, timeout: f64, pcap: Option<Output>) -> Result<()> {
    let iface = iface.to_owned();
    crate::sys::netns::run_in(ns, move || {
        let mut cap = crate::capture::Capture::open(&iface)?;
        let mut pcap = pcap.map(crate::capture::PcapWriter::new).transpose()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout);
        let mut seen = 0;
        // A failed read ends the capture; what was captured is still kept.
        let mut failed = None;
        while seen < count {
            let frame = match cap.next(deadline) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            seen += 1;
            let dir = if frame.outgoing { "out" } else { "in" };
            for (i, line) in crate::capture::describe(&frame.data).iter().enumerate() {
                if i == 0 {
                    println!("{dir:>3} {line}");
                } else {
                    println!("    {line}");
                }
            }
            if let Some(w) = pcap.as_mut() {
                w.write(&frame)?;
            }
        }
        if let Some(w) = pcap {
            w.into_inner().commit()?;
        }
        eprintln!(
            "{seen} packets captured on {node_iface}",
            node_iface = iface
        );
        failed.map_or(Ok(()), Err)
    })
}
