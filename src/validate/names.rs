//! Names: the lab's, the prefix, nodes', sysctl keys' and interfaces'.

use super::Checker;
use crate::topology::{Loc, Node};

/// An interface name the kernel accepts and a shell needs no quotes for:
/// 1-15 bytes of letters, digits, `.`, `_` and `-`; and one a topology may
/// declare: not `lo`, which every namespace has.
pub(crate) fn iface_name_problem(name: &str) -> Option<String> {
    if name == "lo" {
        Some("`lo` exists in every namespace already; pick another name".into())
    } else {
        device_name_problem(name)
    }
}

/// The rule of [`iface_name_problem`] for any interface grelab names to the
/// kernel (`sys::rtnl`), `lo` included.
pub(crate) fn device_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an interface name cannot be empty".into())
    } else if name.len() > 15 {
        Some(format!(
            "interface name `{name}` is {} bytes; Linux allows 15",
            name.len()
        ))
    } else if name == "."
        || name == ".."
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Some(format!(
            "`{name}` is not a valid interface name (letters, digits, `.`, `_` and `-` only; not `.` or `..`)"
        ))
    } else if name == "all" || name == "default" {
        Some(format!(
            "`{name}` cannot name an interface: it is reserved (net.ipv4.conf.{name})"
        ))
    } else {
        None
    }
}

/// A name usable for a lab, a prefix or a namespace: letters, digits, `._-`.
pub(crate) fn name_problem(what: &str, name: &str, max: usize) -> Option<String> {
    if name.is_empty() && what != "prefix" {
        Some(format!("the {what} cannot be empty"))
    } else if name.len() > max {
        Some(format!("{what} `{name}` is longer than {max} bytes"))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || name.starts_with(['.', '-'])
    {
        Some(format!(
            "{what} `{name}` may only hold letters, digits, `.`, `_` and `-`, and not start with `.` or `-`"
        ))
    } else {
        None
    }
}

impl Checker<'_> {
    /// The lab's name and prefix, the nodes' names and their sysctls.
    pub(super) fn names(&mut self) {
        let topo = self.topo;
        if let Some(p) = name_problem("lab name", &topo.name.value, 32) {
            self.err(
                Loc::of(&topo.name),
                p,
                "use something like `basic` or `ci-42`",
            );
        }
        // Capped: a too-long prefix is its own error, not one per node name.
        let prefix_len = topo.prefix.as_ref().map_or(0, |p| p.value.len().min(32));
        if let Some(prefix) = &topo.prefix
            && let Some(p) = name_problem("prefix", &prefix.value, 32)
        {
            self.err(
                Loc::of(prefix),
                p,
                "a prefix like `ci1-` names namespaces `ci1-host1`, ...",
            );
        }
        if topo.nodes.0.is_empty() {
            self.err(
                Loc::of(&topo.name),
                "the lab has no nodes",
                "add at least one node under `nodes:`",
            );
        }
        for (name, node) in &topo.nodes.0 {
            if let Some(p) = name_problem("node name", &name.value, 200 - prefix_len) {
                self.err(Loc::of(name), p, "node names become namespace names");
            }
            self.sysctls(node);
        }
    }

    fn sysctls(&mut self, node: &Node) {
        for (key, value) in &node.sysctls.0 {
            let k = &key.value;
            if value.0.is_empty() {
                self.err(
                    Loc::of(key),
                    format!("sysctl `{k}` has no value"),
                    "write it as `key: value`",
                );
            }
            if !k.starts_with("net.")
                || k.contains("..")
                || k.ends_with('.')
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                self.err(
                    Loc::of(key),
                    format!("sysctl `{k}` is not a per-namespace `net.*` key"),
                    "only net.* sysctls belong to a namespace; others would change the host",
                );
            }
        }
    }

    /// Interface `iface` of `node`, defined at `loc`: a valid name, once.
    pub(super) fn add_iface(&mut self, node: &str, iface: &str, loc: Loc) {
        if let Some(p) = iface_name_problem(iface) {
            self.err(
                loc,
                p,
                "interface names are at most 15 bytes, like `veth0` or `tun0`",
            );
        }
        if let Some(first) = self.ifaces.insert((node.to_owned(), iface.to_owned()), loc) {
            self.err(
                loc,
                format!("interface `{iface}` on node `{node}` is defined twice"),
                format!("first defined at line {}", first.line),
            );
        }
    }
}
