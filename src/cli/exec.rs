//! `grelab exec`: a command inside a node: in the node's view (its files,
//! /run, /sys and the lab's PID namespace) when the lab has a keeper, else
//! in its network namespace.

use anyhow::Result;

use super::labs::{record, the_lab};
use crate::error;
use crate::lab::state::LabDir;

/// Runs `cmd` in `node` and exits with its exit code.
pub(super) fn run(lab: Option<String>, node: &str, cmd: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let lab = the_lab(lab)?;
    let s = record(&lab)?;
    s.trust();
    let Some(ns) = s.plan.ns_of(node) else {
        return Err(error::bad_input(format!(
            "lab `{lab}` has no node `{node}`; nodes: {}",
            s.plan
                .nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let running = |e: std::io::Error| {
        error::environment(format!("running `{}` in node `{node}`: {e}", cmd[0]))
    };
    let Some(keeper) = s.keeper else {
        crate::sys::netns::enter(&crate::sys::netns::open(ns)?)?;
        return Err(running(
            std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec(),
        ));
    };
    let ns_id = s
        .identities
        .iter()
        .find(|(n, _)| n == ns)
        .map(|(_, id)| *id)
        .ok_or_else(|| error::environment(format!("namespace `{ns}` has no recorded identity")))?;
    let dir = LabDir::open(&lab)?
        .ok_or_else(|| error::environment(format!("lab `{lab}` has no state")))?;
    let mut c = crate::lab::keeper::command(&dir, &keeper, node, ns_id, cmd)?;
    // The child, in the lab's PID namespace, takes the terminal's signals;
    // this process waits for it and passes on its exit code.
    // SAFETY: setting dispositions; the child gets the defaults back below.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        c.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let status = c.status().map_err(running)?;
    use std::os::unix::process::ExitStatusExt;
    std::process::exit(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    )
}
