//! The difference between the plan a lab is up from and a new one: typed
//! changes keyed by each object's identity (a namespace by name, a device
//! by namespace and name, an address by device and address, ...), what
//! `up` applies to a running lab and `up --dry-run` prints.
//!
//! What lives inside something removed (a namespace's devices, a device's
//! addresses) goes with it and is not listed. What is unchanged but lives
//! on a device that is made again (a replaced veth or tunnel end) is listed
//! as `reapply`: the kernel dropped it with the old device.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::{Plan, Software, Step, script};
use crate::model::IpNet;
use crate::topology::Destination;

/// What a change touches: one object of a running lab.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "object", rename_all = "snake_case")]
pub enum Key {
    Namespace {
        ns: String,
    },
    /// A device the lab creates: a veth (by its first end) or a tunnel end.
    Device {
        ns: String,
        dev: String,
    },
    Sysctl {
        ns: String,
        key: String,
    },
    Address {
        ns: String,
        dev: String,
        addr: IpNet,
    },
    Up {
        ns: String,
        dev: String,
    },
    Route {
        ns: String,
        to: Destination,
    },
    Neighbor {
        ns: String,
        dev: String,
        addr: IpAddr,
    },
    /// A node's files and programs.
    Software {
        node: String,
    },
    /// A device's multicast flag.
    Multicast {
        ns: String,
        dev: String,
    },
    /// A device's membership of a bridge.
    Master {
        ns: String,
        dev: String,
    },
    /// A device's impairments.
    Impair {
        ns: String,
        dev: String,
    },
}

/// One change, and how it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum What {
    Add {
        step: Step,
    },
    Remove {
        step: Step,
    },
    /// Changed in place: an MTU, a sysctl's value, a route's gateway, a
    /// neighbour's MAC.
    Modify {
        old: Step,
        new: Step,
    },
    /// Removed and made again: it cannot change in place (a tunnel's type
    /// or ends, a link's ends or MACs).
    Replace {
        old: Step,
        new: Step,
    },
    /// Unchanged, but on a device that is made again.
    Reapply {
        step: Step,
    },
    /// A node's software changed (`None`: it has none).
    Software {
        old: Option<Software>,
        new: Option<Software>,
    },
}

/// A change to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: Key,
    #[serde(flatten)]
    pub what: What,
}

/// Everything that differs between two plans of one lab, removals first
/// (in reverse order of building), then the rest in order of building.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

/// The identity of the object `step` makes.
pub fn key(step: &Step) -> Key {
    // By reference: only the key's fields are copied (a diff of a large
    // lab makes one per step).
    let (ns, dev) = (String::clone, String::clone);
    match step {
        Step::Namespace { ns: n } => Key::Namespace { ns: ns(n) },
        Step::Veth { ns: n, name, .. } | Step::Bridge { ns: n, name, .. } => Key::Device {
            ns: ns(n),
            dev: dev(name),
        },
        Step::Tunnel { end, .. } => Key::Device {
            ns: ns(&end.netns),
            dev: dev(&end.name),
        },
        Step::Sysctl { ns: n, key, .. } => Key::Sysctl {
            ns: ns(n),
            key: key.clone(),
        },
        Step::Address {
            ns: n,
            dev: d,
            addr,
        } => Key::Address {
            ns: ns(n),
            dev: dev(d),
            addr: *addr,
        },
        Step::Up { ns: n, dev: d } => Key::Up {
            ns: ns(n),
            dev: dev(d),
        },
        Step::Route { ns: n, to, .. } => Key::Route { ns: ns(n), to: *to },
        Step::Neighbor {
            ns: n,
            dev: d,
            addr,
            ..
        } => Key::Neighbor {
            ns: ns(n),
            dev: dev(d),
            addr: *addr,
        },
        Step::Multicast { ns: n, dev: d, .. } => Key::Multicast {
            ns: ns(n),
            dev: dev(d),
        },
        Step::Master { ns: n, dev: d, .. } => Key::Master {
            ns: ns(n),
            dev: dev(d),
        },
        Step::Impair { ns: n, dev: d, .. } => Key::Impair {
            ns: ns(n),
            dev: dev(d),
        },
    }
}

/// The devices (namespace, name) a step makes: both ends of a veth.
pub fn devices(step: &Step) -> Vec<(&str, &str)> {
    match step {
        Step::Veth {
            ns,
            name,
            peer_ns,
            peer,
            ..
        } => vec![(ns, name), (peer_ns, peer)],
        Step::Tunnel { end, .. } => vec![(&end.netns, &end.name)],
        Step::Bridge { ns, name, .. } => vec![(ns, name)],
        _ => Vec::new(),
    }
}

/// The device a step configures, if any.
fn device_of(step: &Step) -> Option<(&str, &str)> {
    match step {
        Step::Address { ns, dev, .. }
        | Step::Up { ns, dev }
        | Step::Neighbor { ns, dev, .. }
        | Step::Multicast { ns, dev, .. }
        | Step::Master { ns, dev, .. }
        | Step::Impair { ns, dev, .. } => Some((ns, dev)),
        _ => None,
    }
}

/// Whether `step` configures a device in `gone` (for a port, its bridge too).
fn on_gone(step: &Step, gone: &HashSet<(&str, &str)>) -> bool {
    device_of(step).is_some_and(|d| gone.contains(&d))
        || matches!(step, Step::Master { ns, master, .. } if gone.contains(&(ns.as_str(), master.as_str())))
}

/// Whether `old` can become `new` in place.
fn in_place(old: &Step, new: &Step) -> bool {
    match (old, new) {
        (Step::Veth { mtu: a, .. }, Step::Veth { mtu: b, .. }) => {
            let strip = |s: &Step| match s.clone() {
                Step::Veth {
                    ns,
                    name,
                    peer_ns,
                    peer,
                    mac,
                    peer_mac,
                    ..
                } => (ns, name, peer_ns, peer, mac, peer_mac),
                _ => unreachable!("a veth"),
            };
            a != b && strip(old) == strip(new)
        }
        (Step::Tunnel { end: a, backend: x }, Step::Tunnel { end: b, backend: y }) => {
            let mut a = a.clone();
            a.mtu = b.mtu;
            x == y && a == *b
        }
        (Step::Sysctl { .. }, Step::Sysctl { .. })
        | (Step::Route { .. }, Step::Route { .. })
        | (Step::Neighbor { .. }, Step::Neighbor { .. })
        | (Step::Multicast { .. }, Step::Multicast { .. })
        | (Step::Master { .. }, Step::Master { .. })
        | (Step::Impair { .. }, Step::Impair { .. }) => true,
        _ => false,
    }
}

/// Whether sysctl `key` is a setting of device `dev` (`net.ipv4.conf.DEV.x`).
fn sysctl_of_device(key: &str, dev: &str) -> bool {
    key.split('.').any(|part| part == dev)
}

/// The difference that turns a lab up from `old` into one up from `new`.
pub fn diff(old: &Plan, new: &Plan) -> Diff {
    // Each step's key made once: a large lab has tens of thousands.
    let old_keys: Vec<Key> = old.steps.iter().map(key).collect();
    let new_keys: Vec<Key> = new.steps.iter().map(key).collect();
    let old_by: HashMap<&Key, &Step> = old_keys.iter().zip(&old.steps).collect();
    let new_by: HashMap<&Key, &Step> = new_keys.iter().zip(&new.steps).collect();
    let new_ns: HashSet<&str> = new.namespaces().collect();
    let mut changes = Vec::new();

    // Devices the kernel removes: those of removed or replaced steps, and
    // every device of a removed namespace.
    let mut gone: HashSet<(&str, &str)> = HashSet::new();
    for (k, s) in old_keys.iter().zip(&old.steps) {
        let removed = match new_by.get(k) {
            None => true,
            Some(n) => *n != s && !in_place(s, n),
        };
        if removed {
            gone.extend(devices(s));
        }
    }
    for (k, s) in old_keys.iter().zip(&old.steps).rev() {
        let inside_removed_ns = !new_ns.contains(s.ns()) && !matches!(s, Step::Namespace { .. });
        if new_by.contains_key(k) || inside_removed_ns || on_gone(s, &gone) {
            continue;
        }
        changes.push(Change {
            key: k.clone(),
            what: What::Remove { step: s.clone() },
        });
    }
    // Routes of a namespace that lost a device may have gone with it.
    let lost_device: HashSet<&str> = gone.iter().map(|(ns, _)| *ns).collect();
    for (k, s) in new_keys.iter().zip(&new.steps) {
        let what = match old_by.get(k) {
            None => What::Add { step: s.clone() },
            Some(o) if *o == s => {
                let reapply = match s {
                    Step::Route { ns, .. } => lost_device.contains(ns.as_str()),
                    Step::Sysctl { ns, key, .. } => gone
                        .iter()
                        .any(|(n, dev)| n == ns && sysctl_of_device(key, dev)),
                    _ => on_gone(s, &gone),
                };
                if !reapply {
                    continue;
                }
                What::Reapply { step: s.clone() }
            }
            Some(o) if in_place(o, s) => What::Modify {
                old: (*o).clone(),
                new: s.clone(),
            },
            Some(o) => What::Replace {
                old: (*o).clone(),
                new: s.clone(),
            },
        };
        changes.push(Change {
            key: k.clone(),
            what,
        });
    }
    software(old, new, &mut changes);
    Diff { changes }
}

/// The changes that build nodes `nodes` of `plan` again from nothing (a
/// restart): their namespaces removed and made again with all in them, the
/// veths to them made again, and what was on those veths' other ends put
/// back.
pub fn rebuild(plan: &Plan, nodes: &[&str]) -> Diff {
    let doomed: HashSet<&str> = nodes.iter().filter_map(|n| plan.ns_of(n)).collect();
    let mut changes: Vec<Change> = plan
        .namespaces()
        .filter(|ns| doomed.contains(ns))
        .map(|ns| Change {
            key: Key::Namespace { ns: ns.to_owned() },
            what: What::Remove {
                step: Step::Namespace { ns: ns.to_owned() },
            },
        })
        .collect();
    let crosses = |s: &Step| devices(s).iter().any(|(ns, _)| doomed.contains(ns));
    // Devices outside that go with them: the other ends of their veths.
    let gone: HashSet<(&str, &str)> = plan
        .steps
        .iter()
        .filter(|s| crosses(s))
        .flat_map(devices)
        .filter(|(ns, _)| !doomed.contains(ns))
        .collect();
    let lost_device: HashSet<&str> = gone.iter().map(|(ns, _)| *ns).collect();
    for s in &plan.steps {
        let what = if doomed.contains(s.ns()) || crosses(s) {
            What::Add { step: s.clone() }
        } else if match s {
            Step::Route { ns, .. } => lost_device.contains(ns.as_str()),
            Step::Sysctl { ns, key, .. } => gone
                .iter()
                .any(|(n, dev)| n == ns && sysctl_of_device(key, dev)),
            _ => on_gone(s, &gone),
        } {
            What::Reapply { step: s.clone() }
        } else {
            continue;
        };
        changes.push(Change { key: key(s), what });
    }
    for sw in plan
        .software
        .iter()
        .filter(|sw| nodes.contains(&sw.node.as_str()))
    {
        changes.push(Change {
            key: Key::Software {
                node: sw.node.clone(),
            },
            what: What::Software {
                old: Some(sw.clone()),
                new: Some(sw.clone()),
            },
        });
    }
    Diff { changes }
}

/// The nodes whose software differs, in the new plan's node order, then
/// the removed ones.
fn software(old: &Plan, new: &Plan, changes: &mut Vec<Change>) {
    let find = |p: &Plan, node: &str| p.software.iter().find(|s| s.node == node).cloned();
    if old.software.is_empty() && new.software.is_empty() {
        return;
    }
    let kept: HashSet<&str> = new.nodes.iter().map(|n| n.node.as_str()).collect();
    let nodes = new
        .nodes
        .iter()
        .chain(old.nodes.iter().filter(|n| !kept.contains(n.node.as_str())));
    for n in nodes {
        let (o, w) = (find(old, &n.node), find(new, &n.node));
        if o != w {
            changes.push(Change {
                key: Key::Software {
                    node: n.node.clone(),
                },
                what: What::Software { old: o, new: w },
            });
        }
    }
}

/// An empty plan of `plan`'s lab: the diff from it builds all of `plan`.
pub fn nothing(plan: &Plan) -> Plan {
    Plan {
        lab: plan.lab.clone(),
        nodes: Vec::new(),
        steps: Vec::new(),
        checks: Vec::new(),
        software: Vec::new(),
    }
}

impl Diff {
    /// Whether the plans build the same lab.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The namespaces the diff removes.
    pub fn removed_namespaces(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().filter_map(|c| match &c.what {
            What::Remove {
                step: Step::Namespace { ns },
            } => Some(ns.as_str()),
            _ => None,
        })
    }

    /// The namespaces the diff adds.
    pub fn added_namespaces(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().filter_map(|c| match &c.what {
            What::Add {
                step: Step::Namespace { ns },
            } => Some(ns.as_str()),
            _ => None,
        })
    }

    /// The diff as the iproute2 commands it amounts to, in the style of
    /// `grelab plan`.
    pub fn script(&self, lab: &str) -> String {
        if self.is_empty() {
            return format!("# Lab `{lab}`: unchanged; `grelab up` does nothing.\n");
        }
        let mut out = format!(
            "#!/bin/sh\n# Lab `{lab}`: the iproute2 commands that turn the running lab into the \
             new file's.\nset -e\n"
        );
        for c in &self.changes {
            out.push_str(&change_script(c));
        }
        out
    }
}

/// The lines of one change.
fn change_script(c: &Change) -> String {
    match &c.what {
        What::Add { step } => script::command(step),
        What::Reapply { step } => {
            let mut s = format!("# again: {} was made again\n", reapply_reason(step));
            s.push_str(&match step {
                Step::Route { ns, to, via } => route_command(ns, to, via, "replace"),
                _ => script::command(step),
            });
            s
        }
        What::Remove { step } => remove_command(step),
        What::Replace { old, new } => {
            format!(
                "# {}: cannot change in place, made again\n{}{}",
                describe(&c.key),
                remove_command(old),
                script::command(new)
            )
        }
        What::Modify { new, .. } => modify_command(new),
        What::Software { new, .. } => {
            let Key::Software { node } = &c.key else {
                return String::new();
            };
            match new {
                Some(sw) => format!(
                    "# {node}: software changed ({} files, {} programs): the lab's keeper restarts \
                     with it\n",
                    sw.files.len(),
                    sw.run.len()
                ),
                None => format!("# {node}: no software any more: the lab's keeper restarts\n"),
            }
        }
    }
}

fn reapply_reason(step: &Step) -> String {
    match device_of(step) {
        Some((ns, dev)) => format!("{dev} on {ns}"),
        None => format!("a device of {}", step.ns()),
    }
}

fn describe(key: &Key) -> String {
    match key {
        Key::Device { ns, dev } => format!("{dev} on {ns}"),
        other => format!("{other:?}"),
    }
}

fn route_command(ns: &str, to: &Destination, via: &IpAddr, verb: &str) -> String {
    let six = if to.family() == crate::model::Family::V6 {
        " -6"
    } else {
        ""
    };
    format!("ip{six} -n {ns} route {verb} {to} via {via}\n")
}

/// The command that removes what `step` made.
fn remove_command(step: &Step) -> String {
    match step {
        Step::Namespace { ns } => format!("ip netns del {ns}\n"),
        Step::Veth { ns, name, .. } => format!("ip -n {ns} link del {name}\n"),
        Step::Tunnel { end, .. } => format!("ip -n {} link del {}\n", end.netns, end.name),
        Step::Sysctl { ns, key, .. } => format!(
            "# {key} is no longer set on {ns}: back to the value a new namespace has\n\
             ip netns exec {ns} sysctl -qw {key}=\"$(unshare -n sysctl -n {key})\"\n"
        ),
        Step::Address { ns, dev, addr } => format!("ip -n {ns} addr del {addr} dev {dev}\n"),
        Step::Up { ns, dev } => format!("ip -n {ns} link set {dev} down\n"),
        Step::Route { ns, to, via } => route_command(ns, to, via, "del"),
        Step::Neighbor { ns, dev, addr, .. } => format!("ip -n {ns} neigh del {addr} dev {dev}\n"),
        Step::Bridge { ns, name, .. } => format!("ip -n {ns} link del {name}\n"),
        Step::Master { ns, dev, .. } => format!("ip -n {ns} link set {dev} nomaster\n"),
        Step::Multicast { ns, dev, .. } => {
            format!("# {dev} on {ns}: its multicast flag is no longer set by the lab\n")
        }
        Step::Impair { ns, dev, .. } => format!("tc -n {ns} qdisc del dev {dev} root\n"),
    }
}

/// The commands that change `new`'s object in place.
fn modify_command(new: &Step) -> String {
    match new {
        Step::Veth {
            ns,
            name,
            peer_ns,
            peer,
            mtu,
            ..
        } => format!(
            "ip -n {ns} link set {name} mtu {mtu}\nip -n {peer_ns} link set {peer} mtu {mtu}\n"
        ),
        Step::Tunnel { end, .. } => {
            format!(
                "ip -n {} link set {} mtu {}\n",
                end.netns, end.name, end.mtu
            )
        }
        Step::Route { ns, to, via } => route_command(ns, to, via, "replace"),
        Step::Impair { ns, dev, .. } => format!(
            "tc -n {ns} qdisc del dev {dev} root\n{}",
            script::command(new)
        ),
        // A sysctl written again; a neighbour is `replace`d already.
        other => script::command(other),
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
