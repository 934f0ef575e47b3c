//! `grelab exec`: a command inside a node's namespace.

use anyhow::Result;

use super::labs::node_ns;
use crate::error;

/// Replaces grelab with `cmd` inside the namespace of `node`.
pub(super) fn run(lab: Option<String>, node: &str, cmd: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let ns = node_ns(lab, node)?;
    crate::sys::netns::enter(&crate::sys::netns::open(&ns)?)?;
    let err = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    Err(error::environment(format!(
        "running `{}` in node `{node}`: {err}",
        cmd[0]
    )))
}
