//! Impairments on a lab's interfaces: which mechanism carries each, by what
//! the kernel has, refusing before anything is built what none can; and
//! putting them on (at `up`, and by `grelab impair` while the lab runs).
//!
//! | kernel has         | delay, jitter, reorder               | loss, duplicate, corrupt | rate |
//! |--------------------|--------------------------------------|--------------------------|------|
//! | sch_netem          | netem                                | netem                    | tbf  |
//! | no sch_netem       | the dataplane (userspace tunnel ends only) | tc-BPF program | tbf  |

use std::os::fd::AsFd;
use std::sync::Mutex;

use anyhow::{Result, anyhow};

use crate::dataplane;
use crate::error;
use crate::lab::state::State;
use crate::model::{Backend, Impairment};
use crate::plan::Step;
use crate::sys::pool::{in_namespaces, in_private_namespace};
use crate::sys::rtnl::{Carrier, Rtnl};

/// Whether the kernel has sch_netem, probed in a namespace of the probe's
/// own (so before the lab has any).
pub fn netem_available() -> Result<bool> {
    in_private_namespace(|rtnl| async move { rtnl.supports_netem().await })
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

/// An impaired interface of a running lab, as `grelab impair --show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shown {
    pub node: String,
    pub iface: String,
    pub impairment: Impairment,
    /// The mechanisms that carry it.
    pub by: String,
}

/// Every interface of `state`'s lab: (node, namespace, device, its tunnel
/// end's backend if it is one), in plan order.
fn interfaces(state: &State) -> Vec<(String, String, String, Option<Backend>)> {
    let node = |ns: &str| {
        state
            .plan
            .nodes
            .iter()
            .find(|n| n.ns == ns)
            .map_or(ns.to_owned(), |n| n.node.clone())
    };
    let mut out = Vec::new();
    for s in &state.plan.steps {
        match s {
            Step::Veth {
                ns,
                name,
                peer_ns,
                peer,
                ..
            } => {
                out.push((node(ns), ns.clone(), name.clone(), None));
                out.push((node(peer_ns), peer_ns.clone(), peer.clone(), None));
            }
            Step::Tunnel { end, .. } => {
                let b = state
                    .backends
                    .iter()
                    .find(|b| b.namespace == end.netns && b.device == end.name)
                    .map_or(Backend::Kernel, |b| b.backend);
                out.push((
                    node(&end.netns),
                    end.netns.clone(),
                    end.name.clone(),
                    Some(b),
                ));
            }
            _ => {}
        }
    }
    out
}

/// The kernel's impairments of each (namespace, device).
fn read_kernel(ifaces: &[(String, String)]) -> Result<Vec<Impairment>> {
    let mut jobs: Vec<(String, Vec<(usize, String)>)> = Vec::new();
    for (i, (ns, dev)) in ifaces.iter().enumerate() {
        match jobs.iter_mut().find(|(n, _)| n == ns) {
            Some((_, list)) => list.push((i, dev.clone())),
            None => jobs.push((ns.clone(), vec![(i, dev.clone())])),
        }
    }
    let found = Mutex::new(vec![Impairment::default(); ifaces.len()]);
    in_namespaces(jobs, None, |rtnl, devs| {
        let found = &found;
        async move {
            for (i, dev) in devs {
                let imp = rtnl.impairment(&dev).await?;
                found.lock().map_err(|_| anyhow!("poisoned"))?[i] = imp;
            }
            Ok(())
        }
    })?;
    found.into_inner().map_err(|_| anyhow!("poisoned"))
}

/// What a dataplane impairs of `ns`'s `dev`, if it lists it.
fn in_dataplane(list: &[dataplane::Impaired], ns: &str, dev: &str) -> Option<Impairment> {
    list.iter()
        .find(|(n, d, _)| n == ns && d == dev)
        .map(|(_, _, i)| *i)
}

/// The delays of `dp` with the rest of `kernel`.
fn combined(kernel: Impairment, dp: Option<Impairment>) -> Impairment {
    match dp {
        Some(d) if d.delays() => Impairment {
            delay: d.delay,
            jitter: d.jitter,
            reorder: d.reorder,
            ..kernel
        },
        _ => kernel,
    }
}

/// Every impairment in force in `state`'s lab, read from the kernel (and,
/// for delays the dataplane carries, from its file).
pub fn show(state: &State) -> Result<Vec<Shown>> {
    let all = interfaces(state);
    let pairs: Vec<(String, String)> = all
        .iter()
        .map(|(_, ns, d, _)| (ns.clone(), d.clone()))
        .collect();
    let kernel = read_kernel(&pairs)?;
    let dp = read_dataplane_file(&state.plan.lab)?;
    let netem = netem_available()?;
    let mut out = Vec::new();
    for ((node, ns, dev, backend), k) in all.into_iter().zip(kernel) {
        let imp = combined(k, in_dataplane(&dp, &ns, &dev));
        if imp.is_empty() {
            continue;
        }
        out.push(Shown {
            by: imp.carriers(netem, backend == Some(Backend::Userspace)),
            node,
            iface: dev,
            impairment: imp,
        });
    }
    Ok(out)
}

/// Changes the impairments of `node`'s `iface` in `state`'s lab: each of
/// `changes` (parameter, value; a zero value removes it) is set, the others
/// keep their values; `clear` removes them all first. Returns what is in
/// force after.
pub fn change(
    state: &State,
    node: &str,
    iface: &str,
    changes: &[(&str, String)],
    clear: bool,
) -> Result<Shown> {
    let all = interfaces(state);
    let Some((_, ns, dev, backend)) = all.iter().find(|(n, _, d, _)| n == node && d == iface)
    else {
        let names: Vec<String> = all
            .iter()
            .filter(|(n, ..)| n == node)
            .map(|(_, _, d, _)| d.clone())
            .collect();
        return Err(error::bad_input(if names.is_empty() {
            format!(
                "lab `{}` has no node `{node}` with interfaces",
                state.plan.lab
            )
        } else {
            format!(
                "node `{node}` has no interface `{iface}`; it has: {}",
                names.join(", ")
            )
        }));
    };
    let user = *backend == Some(Backend::Userspace);
    let mut dp = read_dataplane_file(&state.plan.lab)?;
    if user && in_dataplane(&dp, ns, dev).is_none() {
        return Err(error::environment(format!(
            "`{node}:{iface}` is a userspace tunnel end that was not impaired when the lab came up: \
             it may be on the eBPF fast path, which no impairment reaches; declare `impair:` on \
             its tunnel in the file and run the lab again"
        )));
    }
    let netem = netem_available()?;
    let now = read_kernel(&[(ns.clone(), dev.clone())])?
        .pop()
        .unwrap_or_default();
    let mut new = if clear {
        Impairment::default()
    } else {
        combined(now, in_dataplane(&dp, ns, dev))
    };
    for (k, v) in changes {
        new.set(k, v)
            .map_err(|e| error::bad_input(format!("--{k} {v}: {e}")))?;
    }
    refuse_unsupported(node, dev, &new, netem, *backend)?;
    let job = vec![(ns.clone(), (dev.clone(), new))];
    in_namespaces(job, None, |rtnl, (dev, imp)| async move {
        apply(&rtnl, &dev, &imp, netem).await
    })?;
    if user {
        let keep = if netem { Impairment::default() } else { new };
        dp.retain(|(n, d, _)| !(n == ns && d == dev));
        dp.push((ns.clone(), dev.clone(), keep));
        write_dataplane_file(&state.plan.lab, &dp)?;
    }
    Ok(Shown {
        node: node.to_owned(),
        iface: iface.to_owned(),
        by: new.carriers(netem, user),
        impairment: new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(pairs: &[(&str, &str)]) -> Impairment {
        Impairment::of(pairs)
    }

    #[test]
    fn a_delay_without_netem_is_refused_unless_the_dataplane_carries_it() {
        let d = imp(&[("delay", "20ms")]);
        let e = refuse_unsupported("h1", "veth0", &d, false, None).unwrap_err();
        assert_eq!(error::exit_code(&e), 3);
        let text = e.to_string();
        for want in ["`h1:veth0`", "`delay`", "sch_netem"] {
            assert!(text.contains(want), "{text}");
        }
        assert!(refuse_unsupported("h1", "t0", &d, false, Some(Backend::Kernel)).is_err());
        assert!(refuse_unsupported("h1", "t0", &d, false, Some(Backend::Userspace)).is_ok());
        assert!(refuse_unsupported("h1", "veth0", &d, true, None).is_ok());
        let loss = imp(&[("loss", "5%")]);
        assert!(refuse_unsupported("h1", "veth0", &loss, false, None).is_ok());
    }
}
