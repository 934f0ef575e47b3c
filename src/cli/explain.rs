//! `grelab explain [FILE] [TUNNEL]`: each tunnel's bytes, as the tutorial
//! teaches them, computed from the topology.

use std::path::Path;

use anyhow::Result;

use super::validate::load_plan;
use crate::error::bad_input;

pub(super) fn run(args: &[String], prefix: Option<&str>) -> Result<()> {
    // One argument is the file if it names one, else a tunnel of ./grelab.yaml.
    let (file, tunnel) = match args {
        [] => (None, None),
        [one] if Path::new(one).exists() || one.ends_with(".yaml") || one.ends_with(".yml") => {
            (Some(one.as_str()), None)
        }
        [one] => (None, Some(one.as_str())),
        [f, t, ..] => (Some(f.as_str()), Some(t.as_str())),
    };
    let plan = load_plan(file.map(Path::new), prefix)?;
    let node = |ns: &str| {
        plan.nodes
            .iter()
            .find(|n| n.ns == ns)
            .map_or(ns.to_owned(), |n| n.node.clone())
    };
    let mut shown = Vec::new();
    let mut text = String::new();
    for (end, backend) in plan.tunnels() {
        // Each tunnel once, from its first end.
        if shown.contains(&end.name) || tunnel.is_some_and(|t| t != end.name) {
            continue;
        }
        let peer = plan
            .peer(end)
            .map_or_else(|| end.remote.to_string(), |e| node(&e.netns));
        shown.push(end.name.clone());
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&crate::plan::explain::tunnel(
            &plan,
            end,
            &node(&end.netns),
            &peer,
        ));
        text.push_str(&format!("  backend: {}\n", why(backend)));
    }
    if let Some(t) = tunnel
        && shown.is_empty()
    {
        let names: Vec<String> = plan.tunnels().map(|(e, _)| e.name.clone()).collect();
        return Err(bad_input(format!(
            "lab `{}` has no tunnel `{t}`; tunnels: {}",
            plan.lab,
            names.join(", ")
        )));
    }
    if text.is_empty() {
        text = format!("lab `{}` has no tunnels\n", plan.lab);
    }
    print!("{text}");
    Ok(())
}

/// Which backend carries a tunnel, and why.
fn why(backend: crate::model::Backend) -> &'static str {
    use crate::model::Backend;
    match backend {
        Backend::Auto => {
            "auto: the kernel's ip_gre where this kernel has it (`up` probes), else grelab's \
             userspace dataplane (TUN/TAP and raw GRE sockets; flows move onto its eBPF fast path)"
        }
        Backend::Kernel => "kernel: the file asks for the kernel's ip_gre / ip6_gre",
        Backend::Userspace => {
            "userspace: the file asks for grelab's dataplane (TUN/TAP and raw GRE sockets)"
        }
    }
}
