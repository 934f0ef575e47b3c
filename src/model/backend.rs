//! Which dataplane builds a tunnel.

use serde::{Deserialize, Serialize};

/// Which dataplane builds a tunnel (the command line's `--backend` maps
/// onto it; see `cli`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel GRE where the kernel has it, else userspace.
    #[default]
    Auto,
    /// The kernel's ip_gre / ip6_gre.
    Kernel,
    /// grelab's userspace dataplane (TUN/TAP + raw sockets).
    Userspace,
}
