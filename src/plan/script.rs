//! The plan as a shell script of iproute2 commands, and the notes that
//! explain its numbers.

use super::{Plan, Step};
use crate::model::TunnelEnd;
use crate::model::{Family, Overhead};

impl TunnelEnd {
    /// How its MTU came about, for people learning the arithmetic.
    pub fn overhead_note(&self) -> String {
        let o = Overhead::of(self.kind, &self.options());
        let ip = if self.kind.is_ipv6() { "IPv6" } else { "IPv4" };
        let mut parts = vec![format!("{ip} {}", o.outer)];
        let mut opts = Vec::new();
        if self.checksum {
            opts.push("checksum");
        }
        if self.okey.is_some() {
            opts.push("key");
        }
        if self.sequence {
            opts.push("sequence");
        }
        parts.push(if opts.is_empty() {
            format!("GRE {}", o.gre)
        } else {
            format!("GRE {} with {}", o.gre, opts.join(", "))
        });
        if o.ethernet != 0 {
            parts.push(format!("inner Ethernet {}", o.ethernet));
        }
        parts.join(" + ")
    }
}

impl Plan {
    /// The plan as a runnable shell script of iproute2 commands, commented
    /// step by step: what `grelab up` does, for people who want to see it.
    pub fn script(&self) -> String {
        let mut out = format!(
            "#!/bin/sh\n# Lab `{}`: the iproute2 commands equivalent to `grelab up`.\n\
             # Run as root on a kernel with GRE (ip_gre). Remove the lab with:\n#   {}\nset -e\n",
            self.lab,
            self.namespaces()
                .map(|n| format!("ip netns del {n}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let mut section = "";
        for step in &self.steps {
            let title = section_of(step);
            if section != title {
                out.push_str(&format!("\n# {title}\n"));
                section = title;
            }
            out.push_str(&command(step));
        }
        if !self.software.is_empty() {
            out.push_str(
                "\n# Software: grelab runs each node's programs in the node's own view (its\n\
                 # /sys, a private /run, its files at their paths), supervised, after the network.\n",
            );
        }
        for sw in &self.software {
            for (path, content) in &sw.files {
                out.push_str(&format!(
                    "# {}: {path} ({} bytes), seen in this node only\n",
                    sw.node,
                    content.len()
                ));
            }
            for p in &sw.run {
                let cmd: Vec<String> = p.cmd.iter().map(|a| shell_word(a)).collect();
                out.push_str(&format!("ip netns exec {} {} &\n", sw.ns, cmd.join(" ")));
            }
        }
        out
    }
}

/// `word` as one shell word.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The comment that heads the script's section of steps like `step`.
fn section_of(step: &Step) -> &'static str {
    match step {
        Step::Namespace { .. } => "Namespaces: one per node (bind-mounted at /run/netns/NAME).",
        Step::Veth { .. } => "Links: veth pairs, the peer created directly in its namespace.",
        Step::Sysctl { .. } => "Sysctls, inside the namespace (forwarding makes a router).",
        Step::Tunnel { .. } => "Tunnels: each end points at the other end's underlay address.",
        Step::Address { .. } => "Addresses.",
        Step::Up { .. } => "Interfaces up.",
        Step::Neighbor { .. } => {
            "Permanent neighbours: a lab this large would overflow the host-wide neighbour table."
        }
        Step::Route { .. } => "Routes.",
    }
}

/// The script's lines for `step`, each ending in a newline.
pub(super) fn command(step: &Step) -> String {
    match step {
        Step::Namespace { ns } => format!("ip netns add {ns}\n"),
        Step::Veth {
            ns,
            name,
            peer_ns,
            peer,
            mtu,
            mac,
            peer_mac,
        } => {
            let mtu = if *mtu == 1500 {
                String::new()
            } else {
                format!(" mtu {mtu}")
            };
            format!(
                "ip -n {ns} link add {name}{mtu} address {mac} type veth peer name {peer}{mtu} address {peer_mac} netns {peer_ns}\n"
            )
        }
        Step::Sysctl { ns, key, value } => format!(
            "ip netns exec {ns} sysctl -qw {}\n",
            sh_word(&format!("{key}={value}"))
        ),
        Step::Tunnel { end, .. } => format!(
            "# {} on {}: MTU {} = underlay - ({})\n{}\nip -n {} link set {} addrgenmode none\n",
            end.name,
            end.netns,
            end.mtu,
            end.overhead_note(),
            tunnel_command(end),
            end.netns,
            end.name
        ),
        Step::Address { ns, dev, addr } => {
            let nodad = if addr.addr.is_ipv6() { " nodad" } else { "" };
            format!("ip -n {ns} addr add {addr} dev {dev}{nodad}\n")
        }
        Step::Up { ns, dev } => format!("ip -n {ns} link set {dev} up\n"),
        Step::Neighbor { ns, dev, addr, mac } => {
            format!("ip -n {ns} neigh replace {addr} lladdr {mac} dev {dev} nud permanent\n")
        }
        Step::Route { ns, to, via } => {
            let six = if to.family() == Family::V6 { " -6" } else { "" };
            format!("ip{six} -n {ns} route add {to} via {via}\n")
        }
    }
}

/// `s` as one shell word: as is when plain, else single-quoted (a sysctl
/// value may hold spaces, like `ping_group_range: "0 1000"`).
fn sh_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:,+=@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `ip link add` command for a kernel tunnel end.
fn tunnel_command(end: &TunnelEnd) -> String {
    let mut cmd = format!(
        "ip -n {} link add {} mtu {} type {} local {} remote {}",
        end.netns,
        end.name,
        end.mtu,
        end.kind.as_str(),
        end.local,
        end.remote
    );
    let v6 = end.kind.is_ipv6();
    if end.ttl != 0 {
        cmd.push_str(&format!(
            " {} {}",
            if v6 { "hoplimit" } else { "ttl" },
            end.ttl
        ));
    }
    if end.tos != 0 {
        cmd.push_str(&format!(
            " {} 0x{:02x}",
            if v6 { "tclass" } else { "tos" },
            end.tos
        ));
    }
    if let Some(k) = end.ikey {
        cmd.push_str(&format!(" ikey {k}"));
    }
    if let Some(k) = end.okey {
        cmd.push_str(&format!(" okey {k}"));
    }
    if end.checksum {
        cmd.push_str(" csum");
    }
    if end.sequence {
        cmd.push_str(" seq");
    }
    if v6 {
        // No encapsulation-limit option: the overhead stays 40 + GRE, as in
        // grelab's userspace dataplane.
        cmd.push_str(" encaplimit none");
    } else if !end.pmtudisc {
        cmd.push_str(" nopmtudisc");
    }
    cmd
}
