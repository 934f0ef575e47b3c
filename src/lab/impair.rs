//! Impairments on a lab's interfaces: which mechanism carries each, by what
//! the kernel has, refusing before anything is built what none can; and
//! putting them on (at `up`, and by `grelab impair` while the lab runs).
//!
//! | kernel has         | delay, jitter, reorder               | loss, duplicate, corrupt | rate |
//! |--------------------|--------------------------------------|--------------------------|------|
//! | sch_netem          | netem                                | netem                    | tbf  |
//! | no sch_netem       | the dataplane (userspace tunnel ends only) | tc-BPF program      | tbf  |

use std::os::fd::AsFd;

use anyhow::Result;

use crate::dataplane;
use crate::error;
use crate::model::{Backend, Impairment};
use crate::sys::pool::in_private_namespace;
use crate::sys::rtnl::{Carrier, Rtnl};

/// Whether the kernel has sch_netem, probed in a namespace of the probe's
/// own (so before the lab has any).
pub fn netem_available() -> Result<bool> {
    in_private_namespace(|rtnl| async move { rtnl.supports_netem().await })
}

/// What carries each impairment of an interface, for the user.
pub fn mechanisms(imp: &Impairment, netem: bool, userspace: bool) -> String {
    let mut parts = Vec::new();
    if netem {
        if imp.delays() || imp.mangles() {
            parts.push("netem");
        }
    } else {
        if imp.delays() && userspace {
            parts.push("the userspace dataplane (delay)");
        }
        if imp.mangles() {
            parts.push("a tc-BPF program");
        }
    }
    if imp.rate.is_some() {
        parts.push("tbf (rate)");
    }
    parts.join(", ")
}

/// An error (exit 3) if this kernel cannot carry `imp` on `ns`'s `dev`:
/// without netem, only the dataplane delays, and only its own tunnel ends.
/// `backend` is the backend of the tunnel end `dev` is, if it is one.
pub fn refuse_unsupported(
    node: &str,
    dev: &str,
    imp: &Impairment,
    netem: bool,
    backend: Option<Backend>,
) -> Result<()> {
    if netem || !imp.delays() || backend == Some(Backend::Userspace) {
        return Ok(());
    }
    let param = if imp.delay.is_some() {
        "delay"
    } else if imp.jitter.is_some() {
        "jitter"
    } else {
        "reorder"
    };
    let what = match backend {
        Some(_) => "a kernel tunnel device",
        None => "a veth",
    };
    Err(error::environment(format!(
        "cannot impair `{node}:{dev}` with `{param}`: {what} needs sch_netem to hold packets back, \
         and this kernel has no sch_netem; load it (`modprobe sch_netem`), drop `{param}`, \
         or put it on a userspace tunnel end (`backend: userspace`), which grelab's dataplane delays"
    )))
}

/// Puts `imp` on `dev` of the calling thread's namespace, replacing what
/// was there: netem and tbf where `netem`, else tbf and the tc-BPF program
/// (delays are the dataplane's).
pub async fn apply(rtnl: &Rtnl, dev: &str, imp: &Impairment, netem: bool) -> Result<()> {
    if netem {
        return rtnl.set_impairment(dev, imp, Carrier::Netem).await;
    }
    let prog = if dataplane::impair::needed(imp) {
        Some(dataplane::impair::load(imp)?)
    } else {
        None
    };
    let carrier = Carrier::Bpf(prog.as_ref().map(|p| p.as_fd()));
    rtnl.set_impairment(dev, imp, carrier).await
}

/// How a lab's impairments are carried, decided before anything is built.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// The kernel has sch_netem: it carries every impairment (tbf the rate).
    pub netem: bool,
    /// Without netem: the tunnel ends (namespace, device) that the
    /// dataplane delays, so that they are userspace ends.
    pub delayed: Vec<(String, String)>,
}

/// Decides how `plan`'s impairments are carried (tunnel ends built by
/// `wanted` if given, else by their own backend); refuses, exit 3, what this
/// kernel cannot carry. None when the plan impairs nothing.
pub fn decide(plan: &crate::plan::Plan, wanted: Option<Backend>) -> Result<Option<Decision>> {
    if plan.impairments().next().is_none() {
        return Ok(None);
    }
    let netem = netem_available()?;
    let mut d = Decision {
        netem,
        delayed: Vec::new(),
    };
    for (ns, dev, imp) in plan.impairments() {
        let backend = plan
            .tunnels()
            .find(|(e, _)| e.netns == ns && e.name == dev)
            .map(|(_, b)| match wanted.unwrap_or(b) {
                // Auto becomes userspace where only the dataplane can delay.
                Backend::Auto if !netem => Backend::Userspace,
                b => b,
            });
        let node = plan
            .nodes
            .iter()
            .find(|n| n.ns == ns)
            .map_or(ns, |n| n.node.as_str());
        refuse_unsupported(node, dev, imp, netem, backend)?;
        if !netem && imp.delays() && backend.is_some() {
            d.delayed.push((ns.to_owned(), dev.to_owned()));
        }
    }
    Ok(Some(d))
}

/// Writes what the dataplane of lab `lab` impairs (its userspace ends'
/// impairments; it carries their delays): it reads the file at start and
/// whenever it changes.
pub fn write_dataplane_file(lab: &str, list: &[dataplane::Impaired]) -> Result<()> {
    let dir = crate::lab::state::LabDir::create(lab)?;
    let json = serde_json::to_vec(list)?;
    dir.write(dataplane::IMPAIR_FILE, &json)
}

/// What the dataplane of lab `lab` impairs, as its file says.
pub fn read_dataplane_file(lab: &str) -> Result<Vec<dataplane::Impaired>> {
    let Some(dir) = crate::lab::state::LabDir::open(lab)? else {
        return Ok(Vec::new());
    };
    match dir.read(dataplane::IMPAIR_FILE)? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
        None => Ok(Vec::new()),
    }
}
