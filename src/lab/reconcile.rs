//! Reconcile: turns a running lab into the lab of a new plan by applying
//! only their difference (`plan::diff`), under the lab's lock (taken by
//! `up`). What the diff does not name is not touched: same namespaces,
//! devices, dataplane (unless its set of tunnel ends changes: it restarts
//! with the new set) and keeper (unless the nodes' software, the nodes or
//! /etc/hosts change: it restarts with the new spec).
//!
//! Crash safety: before anything changes, the record names the new plan as
//! `pending`, and the processes about to be replaced are dropped from it
//! (`down` finds them by the identity files beside their specs). New
//! namespaces are journalled as in a fresh `up`. Every operation tolerates
//! having been done already, so `up` after a crash applies the same diff
//! again and reaches the new plan; `down` removes everything.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, Result};

use crate::dataplane;
use crate::lab::configure::{self, Configure};
use crate::lab::state::{self, EndBackend, LabDir, State};
use crate::model::{Backend, IpNet, TunnelEnd};
use crate::plan::diff::{self, Diff, What};
use crate::plan::{Plan, Step};
use crate::sys::netns::{self, Found, NsId};
use crate::sys::pool::in_namespaces;
use crate::sys::process::Identity;
use crate::sys::rtnl::Rtnl;
use crate::topology::Destination;

/// One request of a reconcile in one namespace, beyond what `configure`
/// does for a fresh lab.
#[derive(Debug, Clone)]
enum Op {
    DelLink(String),
    DelAddr(String, IpNet),
    DelRoute(Destination, IpAddr),
    DelNeigh(String, IpAddr),
    Down(String),
    Mtu(String, u32),
    /// A route added, changed or put back: `replace`, so twice is once.
    Route(Destination, IpAddr),
    Sysctl(String, String),
    /// A port taken out of its bridge.
    NoMaster(String),
}

/// What the reconcile did, for `up` to report.
pub struct Done {
    pub changes: usize,
    pub notes: Vec<String>,
}

/// Applies the difference between `old` (the lab's record) and `new`:
/// returns what changed. A record that is itself `pending` another plan
/// is first brought to that plan (a reconcile a crash stopped). `digest`
/// is `new`'s (`state::digest`), which `up` has made already.
pub fn reconcile(old: State, new: &Plan, digest: &str, backend: Option<Backend>) -> Result<Done> {
    let mut timings = crate::lab::progress::Timings::new();
    old.trust();
    let old = match old.pending.clone() {
        Some(p) if state::digest(&p) != digest => {
            eprintln!(
                "finishing the change of lab `{}` that was stopped midway",
                new.lab
            );
            let to = state::digest(&p);
            apply(old, (&p, to), backend, None)?.state
        }
        _ => old,
    };
    let mut d = diff::diff(&old.plan, new);
    if d.is_empty() && old.pending.is_some() {
        // A restart a crash stopped: the nodes whose namespace is not the
        // one recorded are built again.
        let missing: Vec<&str> = old.missing();
        let nodes: Vec<&str> = new
            .nodes
            .iter()
            .filter(|n| missing.contains(&n.ns.as_str()))
            .map(|n| n.node.as_str())
            .collect();
        d = diff::rebuild(new, &nodes);
    }
    timings.lap("diff");
    let changes = d.changes.len();
    let done = apply(old, (new, digest.to_owned()), backend, Some(d))?;
    let mut notes = Vec::new();
    if done.dataplane_restarted {
        notes.push("the userspace dataplane serves the new set of tunnel ends".into());
    }
    if done.keeper_restarted {
        notes.push("the nodes' programs restarted (their software, nodes or hosts changed)".into());
    }
    Ok(Done { changes, notes })
}

/// `grelab restart NODE`: builds node `node` of lab `lab` again (its
/// namespace, the veths to it, its tunnel ends, its programs), the rest
/// running on. Under the lab's lock; a crash midway is finished by `up`.
pub fn restart(lab: &str, node: &str) -> Result<Done> {
    netns::check_privileges().map_err(|e| crate::error::environment(format!("{e:#}")))?;
    let _lock = state::Lock::acquire(lab, std::time::Duration::from_secs(30))?;
    let old = state::load(lab)?.ok_or_else(|| {
        crate::error::environment(format!("lab `{lab}` is not up (see `grelab status`)"))
    })?;
    if old.plan.ns_of(node).is_none() {
        let nodes: Vec<&str> = old.plan.nodes.iter().map(|n| n.node.as_str()).collect();
        return Err(crate::error::bad_input(format!(
            "lab `{lab}` has no node `{node}`; nodes: {}",
            nodes.join(", ")
        )));
    }
    if old.pending.is_some() {
        return Err(crate::error::environment(format!(
            "lab `{lab}` was stopped in the middle of a change: run `grelab up` to finish it first"
        )));
    }
    old.trust();
    let plan = old.plan.clone();
    let d = diff::rebuild(&plan, &[node]);
    let changes = d.changes.len();
    // The backends it was built with, when one for all (an `up --backend`).
    let all = |b| old.backends.iter().all(|e| e.backend == b);
    let backend = [Backend::Kernel, Backend::Userspace]
        .into_iter()
        .find(|b| !old.backends.is_empty() && all(*b));
    let digest = state::digest(&plan);
    let done = apply(old, (&plan, digest), backend, Some(d))?;
    let mut notes = Vec::new();
    if done.dataplane_restarted {
        notes.push("the userspace dataplane restarted (its ends in the node were remade)".into());
    }
    if done.keeper_restarted {
        notes.push("the lab's programs restarted (the keeper holds the node's view)".into());
    }
    Ok(Done { changes, notes })
}

/// The record after [`apply`], and what it restarted.
struct Applied {
    state: State,
    /// The dataplane's set of ends changed (live, or by a restart).
    dataplane_restarted: bool,
    keeper_restarted: bool,
}

/// Applies `d` (by default diff(old, new)) and records the result: `new`
/// with its digest.
fn apply(
    mut old: State,
    (new, digest): (&Plan, String),
    backend: Option<Backend>,
    d: Option<Diff>,
) -> Result<Applied> {
    let mut timings = crate::lab::progress::Timings::new();
    let d = d.unwrap_or_else(|| diff::diff(&old.plan, new));
    let removed: Vec<&str> = d.removed_namespaces().collect();
    let dir = LabDir::create(&new.lab)?;
    let done = AtomicUsize::new(0);
    let probe = old
        .plan
        .namespaces()
        .find(|ns| in_plan(new, ns))
        .unwrap_or_default()
        .to_owned();
    // Impairments are not changed by a reconcile (`grelab impair` does it on
    // a running lab); those that stay keep their ends' backends.
    if let Some(c) = d
        .changes
        .iter()
        .find(|c| matches!(c.key, diff::Key::Impair { .. }))
    {
        let diff::Key::Impair { ns, dev } = &c.key else {
            unreachable!("an impairment's key")
        };
        return Err(crate::error::environment(format!(
            "the impairments of `{dev}` in `{ns}` differ from the running lab's: `up` does not \
             change impairments in place; use `grelab impair` on the running lab, or `grelab down` \
             and `grelab up`"
        )));
    }
    let decision = crate::lab::impair::decide(new, backend)?;
    let delayed = decision.as_ref().map_or(&[][..], |d| &d.delayed[..]);
    let (ends, _notes) = crate::lab::up::choose_backends(new, backend, &probe, &done, delayed)?;
    timings.lap("diff and backend probe");
    let user = userspace(&ends);
    let dp_running = old.dataplane.is_some_and(|id| dataplane::is_running(&id));
    // Ends in a namespace made again lose their devices with the old one.
    let remade = user.iter().any(|e| removed.contains(&e.netns.as_str()));
    let restart_dp =
        user != recorded_userspace(&old) || remade || (!user.is_empty() && !dp_running);
    // The keeper holds every node's view, of the namespace as it was made.
    let keeper_running = old.keeper.is_some_and(|id| id.is_running());
    let restart_keeper = keeper_changes(&old.plan, new)
        || (!new.software.is_empty() && (!keeper_running || !removed.is_empty()));
    let backends = ends
        .iter()
        .map(|(e, b)| EndBackend {
            namespace: e.netns.clone(),
            device: e.name.clone(),
            backend: *b,
        })
        .collect();
    if !d.is_empty() || restart_dp || restart_keeper {
        save_pending(&mut old, new, restart_dp, restart_keeper)?;
    }
    timings.lap("pending record");
    if restart_keeper {
        // The recorded one, or the one a stopped reconcile started.
        let running = old.keeper.or_else(|| crate::lab::keeper::recorded(&dir));
        if let Some(id) = running {
            crate::lab::keeper::stop(&id)
                .context("stopping the nodes' programs to restart them")?;
        }
        dir.remove_folder(crate::lab::keeper::NODES)?;
    }
    removals(&d, &old, new, &removed)?;
    crate::lab::teardown::remove_namespaces(&removed, &old.identities)?;
    crate::sys::interrupt::crash_point("reconcile-removed");
    timings.lap("removals");

    let created = add_namespaces(&d, new, &dir)?;
    let mut identities: Vec<(String, NsId)> = old
        .identities
        .iter()
        .filter(|(ns, _)| !removed.contains(&ns.as_str()))
        .cloned()
        .chain(created)
        .collect();
    let order: std::collections::HashMap<&str, usize> =
        new.namespaces().enumerate().map(|(i, n)| (n, i)).collect();
    identities.sort_by_key(|(ns, _)| order.get(ns.as_str()).copied());
    // The old dataplane serves its ends until the new one is about to take
    // over their devices: the gap in traffic is one dataplane start.
    // A running dataplane whose ends' devices all stay changes its set live.
    let live = (dp_running && !remade).then_some(old.dataplane).flatten();
    let restart = restart_dp.then(|| (dir.path(), old.dataplane, live, user.clone()));
    timings.lap("namespaces");
    let dp = additions(&d, new, &ends, restart, &done)?;
    crate::sys::interrupt::crash_point("reconcile-added");
    timings.lap("links, dataplane, configure");
    dir.write(crate::lab::keeper::HOSTS, new.hosts().as_bytes())?;
    let keeper = match restart_keeper {
        true => start_keeper(&dir, new, &identities)?,
        false => old.keeper,
    };
    let state = State {
        plan: new.clone(),
        digest,
        dataplane: if restart_dp { dp } else { old.dataplane },
        keeper,
        backends,
        identities,
        pending: None,
        ..old
    };
    state::save(&state)?;
    timings.lap("keeper and record");
    Ok(Applied {
        state,
        dataplane_restarted: restart_dp,
        keeper_restarted: restart_keeper,
    })
}

/// Records that the lab is going to `new`: from here the record says so,
/// and what is about to be replaced is found by its identity file, not
/// the record.
/// `old` is changed to write it (a large lab's record is not copied) and
/// put back as it was.
fn save_pending(old: &mut State, new: &Plan, restart_dp: bool, restart_keeper: bool) -> Result<()> {
    let (was, dataplane, keeper) = (old.pending.take(), old.dataplane, old.keeper);
    old.pending = Some(new.clone());
    if restart_dp {
        old.dataplane = None;
    }
    if restart_keeper {
        old.keeper = None;
    }
    let saved = state::save(old);
    (old.pending, old.dataplane, old.keeper) = (was, dataplane, keeper);
    saved?;
    crate::sys::interrupt::crash_point("reconcile-pending");
    Ok(())
}

/// Starts the keeper of `new`'s software, if it has any.
fn start_keeper(dir: &LabDir, new: &Plan, ids: &[(String, NsId)]) -> Result<Option<Identity>> {
    let Some(spec) = crate::lab::keeper::spec(new, ids)? else {
        return Ok(None);
    };
    crate::lab::keeper::start(dir, &spec, &mut None)
        .context("starting the nodes' programs")
        .map(Some)
}

/// The userspace ends among `ends`, in order.
fn userspace(ends: &[(TunnelEnd, Backend)]) -> Vec<TunnelEnd> {
    ends.iter()
        .filter(|(_, b)| *b == Backend::Userspace)
        .map(|(e, _)| e.clone())
        .collect()
}

/// The userspace ends the record's dataplane serves.
fn recorded_userspace(old: &State) -> Vec<TunnelEnd> {
    let user: HashSet<(&str, &str)> = old
        .backends
        .iter()
        .filter(|b| b.backend == Backend::Userspace)
        .map(|b| (b.namespace.as_str(), b.device.as_str()))
        .collect();
    old.plan
        .tunnels()
        .filter(|(e, _)| user.contains(&(e.netns.as_str(), e.name.as_str())))
        .map(|(e, _)| e.clone())
        .collect()
}

/// Whether the keeper's spec changes: the software, the nodes (each has a
/// view) or the lab's /etc/hosts (in every view).
fn keeper_changes(old: &Plan, new: &Plan) -> bool {
    if old.software.is_empty() && new.software.is_empty() {
        return false;
    }
    old.software != new.software || old.nodes != new.nodes || old.hosts() != new.hosts()
}

/// Whether `ns` is a namespace of `plan`.
fn in_plan(plan: &Plan, ns: &str) -> bool {
    plan.namespaces().any(|n| n == ns)
}

/// The value sysctl `key` has in a new network namespace (what a sysctl no
/// longer in the file goes back to), read on a thread of its own.
fn fresh_sysctl(key: &str) -> Result<String> {
    let path = std::path::Path::new("/proc/sys").join(key.replace('.', "/"));
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("making a scratch namespace to read a sysctl's default")?;
            std::fs::read_to_string(&path)
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("reading the default of sysctl {key}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("reading a sysctl's default panicked"))?
    })
}

/// The removals of `d` in the namespaces that stay, per namespace: routes,
/// neighbours, addresses, devices (removed, replaced, and any left by a
/// reconcile a crash stopped where one is to be added).
fn removals(d: &Diff, old: &State, new: &Plan, removed: &[&str]) -> Result<()> {
    let stays = |ns: &str| in_plan(new, ns) && in_plan(&old.plan, ns) && !removed.contains(&ns);
    let gone_devices: HashSet<(String, String)> = d
        .changes
        .iter()
        .filter_map(|c| match &c.what {
            What::Remove { step } | What::Replace { old: step, .. } => Some(step),
            _ => None,
        })
        .flat_map(|s| {
            diff::devices(s)
                .into_iter()
                .map(|(n, d)| (n.to_owned(), d.to_owned()))
        })
        .collect();
    let mut jobs: Vec<(String, Vec<Op>)> = Vec::new();
    let mut push = |ns: &str, op: Op| match jobs.iter_mut().find(|(n, _)| n == ns) {
        Some((_, ops)) => ops.push(op),
        None => jobs.push((ns.to_owned(), vec![op])),
    };
    for c in &d.changes {
        match &c.what {
            What::Remove { step } => match step {
                Step::Route { ns, to, via } => push(ns, Op::DelRoute(*to, *via)),
                Step::Neighbor { ns, dev, addr, .. } => push(ns, Op::DelNeigh(dev.clone(), *addr)),
                Step::Address { ns, dev, addr } => push(ns, Op::DelAddr(dev.clone(), *addr)),
                Step::Up { ns, dev } if !gone_devices.contains(&(ns.clone(), dev.clone())) => {
                    push(ns, Op::Down(dev.clone()))
                }
                Step::Sysctl { ns, key, .. } if stays(ns) => {
                    push(ns, Op::Sysctl(key.clone(), fresh_sysctl(key)?))
                }
                Step::Master { ns, dev, .. }
                    if !gone_devices.contains(&(ns.clone(), dev.clone())) =>
                {
                    push(ns, Op::NoMaster(dev.clone()))
                }
                s => device_removals(s, &stays, &mut push),
            },
            What::Replace { old: s, .. } => device_removals(s, &stays, &mut push),
            What::Add { step } if stays(step.ns()) => match step {
                Step::Address { ns, dev, addr } => push(ns, Op::DelAddr(dev.clone(), *addr)),
                s => device_removals(s, &stays, &mut push),
            },
            _ => {}
        }
    }
    jobs.retain(|(ns, _)| stays(ns));
    run(jobs)
}

/// Deletes the devices `step` makes, in the namespaces that stay (a veth
/// from whichever end stays).
fn device_removals(step: &Step, stays: &dyn Fn(&str) -> bool, push: &mut dyn FnMut(&str, Op)) {
    if let Some((ns, dev)) = diff::devices(step).into_iter().find(|(ns, _)| stays(ns)) {
        push(ns, Op::DelLink(dev.to_owned()));
    }
}

/// Runs each namespace's ops, in order, namespaces side by side.
fn run(jobs: Vec<(String, Vec<Op>)>) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    in_namespaces(
        jobs,
        None,
        |rtnl, ops| async move { run_ops(&rtnl, &ops).await },
    )
}

async fn run_ops(rtnl: &Rtnl, ops: &[Op]) -> Result<()> {
    let net = |to: &Destination| match to {
        Destination::Default(_) => None,
        Destination::Net(n) => Some((n.addr, n.prefix)),
    };
    for op in ops {
        match op {
            Op::DelLink(dev) => rtnl.del_link(dev).await?,
            Op::DelAddr(dev, a) => rtnl.del_address(dev, a.addr, a.prefix).await?,
            Op::DelRoute(to, via) => rtnl.del_route(net(to), *via).await?,
            Op::DelNeigh(dev, addr) => rtnl.del_neighbor(dev, *addr).await?,
            Op::Down(dev) => rtnl.set_down(dev).await?,
            Op::NoMaster(dev) => rtnl.set_nomaster(dev).await?,
            Op::Mtu(dev, mtu) => rtnl.set_mtu(dev, *mtu).await?,
            Op::Route(to, via) => rtnl.replace_route(net(to), *via).await?,
            Op::Sysctl(key, value) => configure::sysctl(key, value)?,
        }
    }
    Ok(())
}

/// Creates the namespaces `d` adds (journalled, as `up` does); one a
/// crash left is removed first if the journal proves it the lab's.
fn add_namespaces(d: &Diff, new: &Plan, dir: &LabDir) -> Result<Vec<(String, NsId)>> {
    let added: Vec<&str> = d.added_namespaces().collect();
    if added.is_empty() {
        return Ok(Vec::new());
    }
    let journal = crate::lab::journal::read(dir)?;
    for ns in &added {
        let owned = journal.get(*ns);
        match netns::inspect(ns)? {
            Found::Absent => {}
            Found::Namespace(id) if owned.is_some_and(|o| o.has_namespace(id)) => {
                crate::lab::teardown::remove_namespaces(&[ns], &[(ns.to_string(), id)])?
            }
            Found::Placeholder(id) if owned.is_some_and(|o| o.has_placeholder(id)) => {
                netns::delete(ns)?
            }
            _ => {
                return Err(crate::error::environment(format!(
                    "namespace `{ns}` exists and is not lab `{}`'s; remove it or use another \
                     `--prefix`",
                    new.lab
                )));
            }
        }
    }
    let sub = Plan {
        lab: new.lab.clone(),
        nodes: new
            .nodes
            .iter()
            .filter(|n| added.contains(&n.ns.as_str()))
            .cloned()
            .collect(),
        steps: Vec::new(),
        checks: Vec::new(),
        software: Vec::new(),
    };
    let writer = crate::lab::journal::Writer::open(dir)?;
    let mark = state::mark(&new.lab);
    let (ids, made) = crate::lab::up::create_namespaces(&sub, &mark, &writer, &AtomicUsize::new(0));
    made?;
    Ok(ids)
}

/// A dataplane to change: the lab's directory, the recorded dataplane, the
/// one to change live (if it can be), the ends it is to serve.
type DataplaneChange = (
    std::path::PathBuf,
    Option<Identity>,
    Option<Identity>,
    Vec<TunnelEnd>,
);

/// The additions of `d`: veths (with the dataplane, restarted with `user`
/// when given), then per namespace kernel tunnels, sysctls, addresses,
/// links up, neighbours (`configure`), then MTUs and routes. Returns the
/// new dataplane.
fn additions(
    d: &Diff,
    new: &Plan,
    ends: &[(TunnelEnd, Backend)],
    restart: Option<DataplaneChange>,
    done: &AtomicUsize,
) -> Result<Option<Identity>> {
    let made: Vec<&Step> = d
        .changes
        .iter()
        .filter_map(|c| match &c.what {
            What::Add { step } | What::Replace { new: step, .. } | What::Reapply { step } => {
                Some(step)
            }
            What::Modify { new: step, .. }
                if matches!(
                    step,
                    Step::Sysctl { .. }
                        | Step::Neighbor { .. }
                        | Step::Multicast { .. }
                        | Step::Master { .. }
                ) =>
            {
                Some(step)
            }
            _ => None,
        })
        .collect();
    let veths = Plan {
        steps: made
            .iter()
            .filter(|s| matches!(s, Step::Veth { .. }))
            .map(|s| (*s).clone())
            .collect(),
        ..empty(new)
    };
    let (made_veths, _) = crate::lab::up::links_and_dataplane(&veths, Vec::new(), false, done);
    made_veths?;
    let dp = match restart {
        Some((dir, recorded, live, user)) => {
            change_dataplane(&dir, recorded, live, &new.lab, user)?
        }
        None => None,
    };
    // Kernel ends made or remade, and the userspace ends (whose veths may
    // need real checksums). A restarted dataplane takes its persistent
    // devices back as they are: addresses and all.
    let kernel_new: HashSet<(&str, &str)> = made
        .iter()
        .filter_map(|s| match s {
            Step::Tunnel { end, .. } => Some((end.netns.as_str(), end.name.as_str())),
            _ => None,
        })
        .collect();
    let job_ends: Vec<(TunnelEnd, Backend)> = ends
        .iter()
        .filter(|(e, b)| {
            *b == Backend::Userspace || kernel_new.contains(&(e.netns.as_str(), e.name.as_str()))
        })
        .cloned()
        .collect();
    let steps: Vec<Step> = made
        .iter()
        .filter(|s| {
            !matches!(
                s,
                Step::Route { .. } | Step::Namespace { .. } | Step::Tunnel { .. }
            )
        })
        .map(|s| (*s).clone())
        .collect();
    let sub = Plan {
        steps,
        ..empty(new)
    };
    let mark = state::mark(&new.lab);
    let jobs: Vec<(String, Configure)> = configure::jobs(&sub, &job_ends)?
        .into_iter()
        .filter(|(_, j)| !j.is_empty())
        .collect();
    in_namespaces(jobs, Some(done), |rtnl, job| {
        let mark = &mark;
        async move { configure::configure(&rtnl, mark, &job).await }
    })?;
    run(late_ops(d))?;
    Ok(dp)
}

/// The lab's dataplane serving `user` from now on: `live`, told to change
/// its ends, if it can; else the recorded one (or one a stopped reconcile
/// started) stopped and a new one started, which takes the persistent
/// devices of the ends it keeps back as they are.
fn change_dataplane(
    dir: &std::path::Path,
    recorded: Option<Identity>,
    live: Option<Identity>,
    lab: &str,
    user: Vec<TunnelEnd>,
) -> Result<Option<Identity>> {
    let spec = dataplane::Spec {
        lab: lab.to_owned(),
        tunnels: user,
    };
    if let Some(id) = live
        && !spec.tunnels.is_empty()
    {
        match dataplane::reload(dir, &id, &spec) {
            Ok(()) => return Ok(Some(id)),
            Err(e) => eprintln!("warning: {e:#}; restarting it"),
        }
    }
    for id in dataplane::find(dir, recorded) {
        dataplane::stop(&id).context("stopping the dataplane to restart it")?;
    }
    if spec.tunnels.is_empty() {
        return Ok(None);
    }
    dataplane::start(dir, &spec)
        .context("starting the userspace GRE dataplane")
        .map(Some)
}

/// MTUs changed in place and routes added, changed or put back, per
/// namespace, once every device and address is there.
fn late_ops(d: &Diff) -> Vec<(String, Vec<Op>)> {
    let mut jobs: Vec<(String, Vec<Op>)> = Vec::new();
    for c in &d.changes {
        let (ns, op) = match &c.what {
            What::Modify {
                new:
                    Step::Veth {
                        ns,
                        name,
                        peer_ns,
                        peer,
                        mtu,
                        ..
                    },
                ..
            } => {
                jobs.push((peer_ns.clone(), vec![Op::Mtu(peer.clone(), *mtu)]));
                (ns, Op::Mtu(name.clone(), *mtu))
            }
            What::Modify {
                new: Step::Tunnel { end, .. },
                ..
            } => (&end.netns, Op::Mtu(end.name.clone(), end.mtu)),
            What::Add {
                step: Step::Route { ns, to, via },
            }
            | What::Reapply {
                step: Step::Route { ns, to, via },
            }
            | What::Modify {
                new: Step::Route { ns, to, via },
                ..
            } => (ns, Op::Route(*to, *via)),
            _ => continue,
        };
        match jobs.iter_mut().find(|(n, _)| n == ns) {
            Some((_, ops)) => ops.push(op),
            None => jobs.push((ns.clone(), vec![op])),
        }
    }
    jobs
}

/// A plan of `new`'s lab and nodes, with no steps.
fn empty(new: &Plan) -> Plan {
    Plan {
        lab: new.lab.clone(),
        nodes: new.nodes.clone(),
        steps: Vec::new(),
        checks: Vec::new(),
        software: Vec::new(),
    }
}
