//! `grelab exec`: a command inside a node: in its own view (its files,
//! /run, /sys and the lab's PID namespace) when the lab runs software, else
//! in its network namespace with its own /sys, as `ip netns exec` does.

use anyhow::Result;

use super::labs::the_lab;
use crate::error;

/// Runs `cmd` in `node` and exits with its exit code.
pub(super) fn run(lab: Option<String>, node: &str, cmd: &[String]) -> Result<()> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let lab = the_lab(lab)?;
    let mut c = crate::lab::keeper::node_command(&lab, node, cmd)?;
    // The child takes the terminal's signals; this process waits for it and
    // passes on its exit code.
    // SAFETY: setting dispositions; the child gets the defaults back.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        c.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let status = c
        .status()
        .map_err(|e| error::environment(format!("running `{}` in node `{node}`: {e}", cmd[0])))?;
    std::process::exit(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    )
}
