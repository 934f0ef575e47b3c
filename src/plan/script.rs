//! The plan as a shell script of iproute2 commands, and the notes that
//! explain its numbers.

use super::{Plan, Step};
use crate::model::TunnelEnd;
use crate::model::{Family, Impairment, Overhead};

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
            if let Step::Impair {
                ns,
                dev,
                impairment,
            } = step
            {
                out.push_str(&self.carriers_note(ns, dev, impairment));
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

impl Plan {
    /// What carries the impairments of `ns`'s `dev`, with sch_netem and
    /// without: a comment line.
    fn carriers_note(&self, ns: &str, dev: &str, imp: &Impairment) -> String {
        // Without netem, a delayed `auto` tunnel end is built in userspace.
        let userspace = self
            .tunnels()
            .any(|(e, b)| e.netns == ns && e.name == dev && b != crate::model::Backend::Kernel);
        format!(
            "# {ns}:{dev}: {}; without sch_netem: {}\n",
            imp.carriers(true, userspace),
            imp.carriers(false, userspace)
        )
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
        Step::Tunnel { .. } | Step::Multicast { .. } => {
            "Tunnels: each end points at the other end's underlay address."
        }
        Step::Bridge { .. } | Step::Master { .. } => {
            "Bridges: L2 switches inside a node, over its veth and gretap ends."
        }
        Step::Address { .. } => "Addresses.",
        Step::Up { .. } => "Interfaces up.",
        Step::Neighbor { .. } => {
            "Permanent neighbours: a lab this large would overflow the host-wide neighbour table."
        }
        Step::Route { .. } => "Routes.",
        Step::Impair { .. } => {
            "Impairments of each interface's egress: netem (delay, jitter, reorder, loss,\n\
             # duplicate, corrupt) and tbf (rate) where the kernel has sch_netem. Where it\n\
             # has not, grelab drops, duplicates and corrupts by a tc-BPF program, limits\n\
             # the rate by tbf, and delays on userspace tunnel ends in its dataplane."
        }
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
        Step::Multicast { ns, dev, on } => {
            let on = if *on { "on" } else { "off" };
            format!("ip -n {ns} link set {dev} multicast {on}\n")
        }
        Step::Bridge { ns, name, mtu, mac } => {
            // An MTU given to `link add` gives way to the ports' as they join.
            let mtu = mtu
                .map(|m| format!("ip -n {ns} link set {name} mtu {m}\n"))
                .unwrap_or_default();
            format!("ip -n {ns} link add {name} address {mac} type bridge mcast_snooping 0\n{mtu}")
        }
        Step::Master { ns, dev, master } => format!("ip -n {ns} link set {dev} master {master}\n"),
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
        Step::Impair {
            ns,
            dev,
            impairment,
        } => impair_commands(ns, dev, impairment),
    }
}

/// The `tc` commands for the impairments of `dev`'s egress: netem at the
/// root, tbf under it (or alone) for the rate.
fn impair_commands(ns: &str, dev: &str, imp: &Impairment) -> String {
    let mut netem = String::new();
    if let Some(d) = imp.delay {
        netem.push_str(&format!(" delay {d}"));
        if let Some(j) = imp.jitter {
            netem.push_str(&format!(" {j}"));
        }
    }
    for (name, v) in [
        ("loss", imp.loss),
        ("duplicate", imp.duplicate),
        ("corrupt", imp.corrupt),
        ("reorder", imp.reorder),
    ] {
        if let Some(v) = v {
            netem.push_str(&format!(" {name} {v}"));
        }
    }
    let mut out = String::new();
    let mut parent = "root".to_owned();
    if !netem.is_empty() {
        out.push_str(&format!(
            "tc -n {ns} qdisc add dev {dev} root handle 1: netem{netem}\n"
        ));
        parent = "parent 1:1".into();
    }
    if let Some(r) = imp.rate {
        out.push_str(&format!(
            "tc -n {ns} qdisc add dev {dev} {parent} handle 10: tbf rate {r} burst {} latency 100ms\n",
            crate::model::Impairment::burst_bytes(r)
        ));
    }
    out
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
