//! Which dataplane builds a tunnel.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which dataplane builds a tunnel (the command line's `--backend` maps
/// onto it; see `cli`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
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

impl Backend {
    /// Its name in a topology file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_shows_as_it_is_written() {
        for b in [Backend::Auto, Backend::Kernel, Backend::Userspace] {
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{b}\""));
        }
    }
}
