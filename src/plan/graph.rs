//! The lab as a picture: nodes (with their bridges), veth links with their
//! addresses, and each tunnel as an overlay edge above the underlay path it crosses, in
//! Graphviz dot or Mermaid. Pure: from a plan, plus what a running lab
//! says of each tunnel end (backend, fast path).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;

use super::{Plan, Step};
use crate::model::TunnelEnd;

/// What a running lab says of one tunnel end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndState {
    pub backend: String,
    pub fast_path: bool,
}

/// A link of the underlay, as drawn.
struct Link {
    a: (String, String),
    b: (String, String),
    label: String,
}

/// A tunnel, as drawn: its two nodes, its label, the underlay path.
struct Tunnel {
    a: String,
    b: String,
    label: String,
}

/// The nodes, links and tunnels of `plan` with their labels.
struct Picture {
    /// (node, label).
    nodes: Vec<(String, String)>,
    links: Vec<Link>,
    tunnels: Vec<Tunnel>,
}

/// The node of each namespace.
fn nodes_by_ns(plan: &Plan) -> HashMap<&str, &str> {
    plan.nodes
        .iter()
        .map(|n| (n.ns.as_str(), n.node.as_str()))
        .collect()
}

/// The addresses on each (namespace, device), as `a/len` joined.
fn addresses(plan: &Plan) -> HashMap<(&str, &str), String> {
    let mut out: HashMap<(&str, &str), String> = HashMap::new();
    for s in &plan.steps {
        if let Step::Address { ns, dev, addr } = s {
            let e = out.entry((ns.as_str(), dev.as_str())).or_default();
            if !e.is_empty() {
                e.push(' ');
            }
            let _ = write!(e, "{addr}");
        }
    }
    out
}

/// The nodes of the shortest underlay path from `a` to `b`, both included.
fn path(links: &[Link], a: &str, b: &str) -> Vec<String> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([a]);
    prev.insert(a, a);
    while let Some(n) = queue.pop_front() {
        if n == b {
            break;
        }
        for l in links {
            for (x, y) in [(&l.a.0, &l.b.0), (&l.b.0, &l.a.0)] {
                if x == n && !prev.contains_key(y.as_str()) {
                    prev.insert(y, n);
                    queue.push_back(y);
                }
            }
        }
    }
    if !prev.contains_key(b) {
        return Vec::new();
    }
    let mut out = vec![b.to_owned()];
    let mut at = b;
    while at != a {
        at = prev[at];
        out.push(at.to_owned());
    }
    out.reverse();
    out
}

/// The label of a tunnel: name, type, key, MTU, overlay addresses, and per
/// end the backend (and fast path) when the lab runs.
fn tunnel_label(
    ends: [&TunnelEnd; 2],
    addrs: &HashMap<(&str, &str), String>,
    running: &HashMap<(String, String), EndState>,
) -> String {
    let e = ends[0];
    let mut label = format!("{} {}", e.name, e.kind.as_str());
    if let Some(k) = e.okey {
        let _ = write!(label, " key {k}");
    }
    let _ = write!(label, " mtu {}", e.mtu);
    let overlay: Vec<&str> = ends
        .iter()
        .filter_map(|e| {
            addrs
                .get(&(e.netns.as_str(), e.name.as_str()))
                .map(String::as_str)
        })
        .collect();
    if !overlay.is_empty() {
        let _ = write!(label, "\\n{}", overlay.join(" <-> "));
    }
    let states: Vec<String> = ends
        .iter()
        .filter_map(|e| {
            let s = running.get(&(e.netns.clone(), e.name.clone()))?;
            let fast = if s.fast_path { ", eBPF fast path" } else { "" };
            Some(format!("{}{fast}", s.backend))
        })
        .collect();
    if !states.is_empty() {
        let _ = write!(label, "\\n{}", states.join(" / "));
    }
    label
}

impl Picture {
    fn of(plan: &Plan, running: &HashMap<(String, String), EndState>) -> Picture {
        let node = nodes_by_ns(plan);
        let name = |ns: &str| node.get(ns).copied().unwrap_or(ns).to_owned();
        let addrs = addresses(plan);
        let mut links = Vec::new();
        for s in &plan.steps {
            if let Step::Veth {
                ns,
                name: dev,
                peer_ns,
                peer,
                ..
            } = s
            {
                let end = |ns: &str, dev: &str| {
                    let a = addrs
                        .get(&(ns, dev))
                        .map_or(String::new(), |a| format!(" {a}"));
                    format!("{dev}{a}")
                };
                links.push(Link {
                    a: (name(ns), dev.clone()),
                    b: (name(peer_ns), peer.clone()),
                    label: format!("{} -- {}", end(ns, dev), end(peer_ns, peer)),
                });
            }
        }
        // A tunnel's two ends: the same device name, each other's remote.
        let ends: Vec<&TunnelEnd> = plan.tunnels().map(|(e, _)| e).collect();
        let mut tunnels = Vec::new();
        for (i, a) in ends.iter().enumerate() {
            // Each tunnel once, from its first end.
            let Some(b) = plan.peer(a).filter(|b| ends[i + 1..].contains(b)) else {
                continue;
            };
            let (na, nb) = (name(&a.netns), name(&b.netns));
            let mut label = tunnel_label([a, b], &addrs, running);
            let crossed = path(&links, &na, &nb);
            if crossed.len() > 2 {
                let _ = write!(label, "\\nover {}", crossed.join(" - "));
            }
            tunnels.push(Tunnel {
                a: na,
                b: nb,
                label,
            });
        }
        Picture {
            nodes: plan
                .nodes
                .iter()
                .map(|n| (n.node.clone(), node_label(plan, &n.node, &n.ns, &addrs)))
                .collect(),
            links,
            tunnels,
        }
    }
}

/// A node's name, and a line per bridge: `br0 = lan0 + gt0 10.1.0.1/24`.
fn node_label(plan: &Plan, node: &str, ns: &str, addrs: &HashMap<(&str, &str), String>) -> String {
    let mut label = node.to_owned();
    for s in &plan.steps {
        let Step::Bridge { ns: n, name, .. } = s else {
            continue;
        };
        if n != ns {
            continue;
        }
        let ports: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|p| match p {
                Step::Master { ns: n, dev, master } if n == ns && master == name => {
                    Some(dev.as_str())
                }
                _ => None,
            })
            .collect();
        let _ = write!(label, "\\n{name} = {}", ports.join(" + "));
        if let Some(a) = addrs.get(&(ns, name.as_str())) {
            let _ = write!(label, " {a}");
        }
    }
    label
}

/// Quotes `s` for a dot or Mermaid string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

/// The lab as a Graphviz dot graph (`dot -Tsvg`).
pub fn dot(plan: &Plan, running: &HashMap<(String, String), EndState>) -> String {
    let p = Picture::of(plan, running);
    let mut out = format!("graph {} {{\n", quoted(&plan.lab));
    out.push_str("  layout=dot; rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for (n, label) in &p.nodes {
        if n == label {
            let _ = writeln!(out, "  {};", quoted(n));
        } else {
            let _ = writeln!(out, "  {} [label={}];", quoted(n), quoted(label));
        }
    }
    for l in &p.links {
        let _ = writeln!(
            out,
            "  {} -- {} [label={}];",
            quoted(&l.a.0),
            quoted(&l.b.0),
            quoted(&l.label)
        );
    }
    // Overlay edges: dashed, and left out of the layout's ranking so the
    // underlay keeps its shape beneath them.
    for t in &p.tunnels {
        let _ = writeln!(
            out,
            "  {} -- {} [label={}, style=dashed, color=blue, fontcolor=blue, constraint=false];",
            quoted(&t.a),
            quoted(&t.b),
            quoted(&t.label)
        );
    }
    out.push_str("}\n");
    out
}

/// The lab as a Mermaid flowchart.
pub fn mermaid(plan: &Plan, running: &HashMap<(String, String), EndState>) -> String {
    let p = Picture::of(plan, running);
    let id: HashMap<&str, String> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), format!("n{i}")))
        .collect();
    let id_of = |n: &str| id.get(n).cloned().unwrap_or_else(|| "unknown".into());
    let text = |s: &str| quoted(&s.replace("\\n", "<br/>"));
    let mut out = String::from("flowchart LR\n");
    for (n, label) in &p.nodes {
        let _ = writeln!(out, "  {}[{}]", id_of(n), text(label));
    }
    for l in &p.links {
        let _ = writeln!(
            out,
            "  {} ---|{}| {}",
            id_of(&l.a.0),
            text(&l.label),
            id_of(&l.b.0)
        );
    }
    for t in &p.tunnels {
        let _ = writeln!(
            out,
            "  {} -.-|{}| {}",
            id_of(&t.a),
            text(&t.label),
            id_of(&t.b)
        );
    }
    out
}
