//! Up: executes a Plan. Namespaces first, then per-namespace work on a
//! small pool of threads (`sys::pool`), each entering a namespace and
//! speaking netlink there (`configure`). Everything created is journalled;
//! on failure it is undone.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::future::try_join_all;

use crate::dataplane;
use crate::error;
use crate::lab::configure::{self, Slots};
use crate::lab::progress::{Progress, Timings};
use crate::lab::state::{self, EndBackend, State};
use crate::model::{Backend, Impairment};
use crate::model::{TunnelEnd, TunnelKind};
use crate::plan::{Plan, Step};
use crate::sys::netns::{self, NsId};
use crate::sys::pool::in_namespaces;
use crate::sys::rtnl;

/// What `up` did.
pub struct Outcome {
    pub elapsed: Duration,
    /// Lines for the user: backend choices, counts.
    pub notes: Vec<String>,
    /// The lab was up already from the same plan.
    pub unchanged: bool,
}

/// A tunnel end and the backend that builds it.
type Chosen = (TunnelEnd, Backend);

/// The backend that builds each tunnel end, with a note on why.
pub(super) fn choose_backends(
    plan: &Plan,
    wanted: Option<Backend>,
    probe_ns: &str,
    done: &AtomicUsize,
    delayed: &[(String, String)],
) -> Result<(Vec<Chosen>, Vec<String>)> {
    let mut kinds: Vec<TunnelKind> = Vec::new();
    let delayed_here = |end: &TunnelEnd| delayed.contains(&(end.netns.clone(), end.name.clone()));
    for (end, b) in plan.tunnels() {
        if wanted.unwrap_or(b) != Backend::Userspace
            && !delayed_here(end)
            && !kinds.contains(&end.kind)
        {
            kinds.push(end.kind);
        }
    }
    let supported: Mutex<Vec<(TunnelKind, bool)>> = Mutex::new(Vec::new());
    if !kinds.is_empty() {
        in_namespaces(vec![(probe_ns.to_owned(), ())], Some(done), |rtnl, ()| {
            let kinds = kinds.clone();
            let supported = &supported;
            async move {
                for k in kinds {
                    let ok = rtnl.supports(k).await?;
                    supported
                        .lock()
                        .map_err(|_| anyhow!("poisoned"))?
                        .push((k, ok));
                }
                Ok(())
            }
        })?;
    }
    let supported = supported.into_inner().unwrap_or_default();
    let has = |k| supported.iter().any(|&(s, ok)| s == k && ok);
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for (end, b) in plan.tunnels() {
        let b = wanted.unwrap_or(b);
        let chosen = match b {
            Backend::Userspace => Backend::Userspace,
            // Without netem only the dataplane delays (refuse_unsupported
            // has refused a kernel end).
            Backend::Auto if delayed_here(end) => {
                notes.push(format!(
                    "backend: userspace for tunnel `{}` in `{}`: it is delayed, and this kernel has no sch_netem",
                    end.name, end.netns
                ));
                Backend::Userspace
            }
            Backend::Kernel if has(end.kind) => Backend::Kernel,
            Backend::Kernel => {
                return Err(error::environment(format!(
                    "tunnel `{}` asks for the kernel backend, but this kernel has no {} support \
                     (module ip_gre/ip6_gre missing); load it, or use `--backend userspace`",
                    end.name,
                    end.kind.as_str()
                )));
            }
            Backend::Auto if has(end.kind) => Backend::Kernel,
            Backend::Auto => {
                let note = format!(
                    "backend: userspace for {} tunnels: this kernel cannot create {} links (no ip_gre)",
                    end.kind.as_str(),
                    end.kind.as_str()
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
                Backend::Userspace
            }
        };
        out.push((end.clone(), chosen));
    }
    Ok((out, notes))
}

/// Builds the lab of `plan`. Idempotent for an unchanged plan; a lab up
/// from another plan is changed in place (`reconcile`). SIGINT and SIGTERM roll it back.
pub fn up(plan: &Plan, source: Option<&Path>, backend: Option<Backend>) -> Result<Outcome> {
    netns::check_privileges().map_err(|e| error::environment(format!("{e:#}")))?;
    crate::sys::interrupt::catch()?;
    let out = up_caught(plan, source, backend);
    crate::sys::interrupt::release();
    out
}

fn up_caught(plan: &Plan, source: Option<&Path>, backend: Option<Backend>) -> Result<Outcome> {
    let start = Instant::now();
    let _lock = state::Lock::acquire(&plan.lab, Duration::from_secs(30))?;
    let digest = state::digest(plan);
    let mut timings = Timings::new();
    let found = earlier(plan, &digest)?;
    timings.lap("reading the record");
    match found {
        Earlier::Unchanged => {
            return Ok(Outcome {
                elapsed: start.elapsed(),
                notes: vec![],
                unchanged: true,
            });
        }
        Earlier::Running(mut old) => {
            // The file a change came from is the lab's file from now on.
            if let Some(src) = source {
                old.source = Some(src.to_path_buf());
            }
            let done = crate::lab::reconcile::reconcile(*old, plan, &digest, backend)
                .with_context(|| {
                    format!(
                        "changing lab `{}` (stopped midway: `grelab up` again finishes the change, \
                     `grelab down` removes the lab)",
                        plan.lab
                    )
                })?;
            let mut notes = vec![format!(
                "lab `{}` was up from another version of its file: applied {} changes",
                plan.lab, done.changes
            )];
            notes.extend(done.notes);
            return Ok(Outcome {
                elapsed: start.elapsed(),
                notes,
                unchanged: false,
            });
        }
        Earlier::None => {}
    }
    namespaces_free(plan)?;
    crate::lab::keeper::preflight(plan)?;
    // What the kernel cannot impair is refused here, before anything exists.
    let impairs = crate::lab::impair::decide(plan, backend)?;

    let dir = state::LabDir::create(&plan.lab)?;
    let journal = crate::lab::journal::Writer::open(&dir)?;
    let mut undo = Undo::default();
    let built = build(plan, backend, impairs.as_ref(), &journal, &mut undo).and_then(|built| {
        dir.write(crate::lab::keeper::HOSTS, plan.hosts().as_bytes())?;
        let keeper = match crate::lab::keeper::spec(plan, &built.3)? {
            Some(spec) => {
                let id = crate::lab::keeper::start(&dir, &spec, &mut undo.keeper)
                    .context("starting the nodes' programs")?;
                Some(id)
            }
            None => None,
        };
        // A signal during the last step still rolls back.
        crate::sys::interrupt::check()?;
        Ok((built, keeper))
    });
    match built {
        Ok(((dataplane, backends, notes, identities), keeper)) => {
            state::save(&State {
                plan: plan.clone(),
                source: source.map(Path::to_path_buf),
                digest,
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                dataplane,
                keeper,
                backends,
                identities,
                pending: None,
            })?;
            Ok(Outcome {
                elapsed: start.elapsed(),
                notes,
                unchanged: false,
            })
        }
        Err(e) => {
            drop(journal);
            let undo = undo.undo(&plan.lab);
            let mut e = e.context(format!(
                "building lab `{}` (everything created was removed)",
                plan.lab
            ));
            if !undo.is_empty() {
                e = e.context(format!("and undoing failed too: {}", undo.join("; ")));
            }
            Err(e)
        }
    }
}

/// What an earlier `up` of the lab left.
enum Earlier {
    /// Nothing (or only leftovers, now removed).
    None,
    /// The lab is up from the same plan, healthy.
    Unchanged,
    /// The lab is up from another plan (or on its way to one): reconcile.
    Running(Box<State>),
}

/// Deals with what an earlier `up` of the lab left: a lab up from the same
/// plan and healthy is unchanged; one up from another plan, or a change a
/// crash stopped, is reconciled; a broken lab, or an unfinished `up`, is
/// removed.
fn earlier(plan: &Plan, digest: &str) -> Result<Earlier> {
    match state::load(&plan.lab) {
        Ok(Some(old)) => {
            if old.pending.is_some() {
                return Ok(Earlier::Running(Box::new(old)));
            }
            let healthy = old.intact()
                && old.dataplane.is_none_or(|id| dataplane::is_running(&id))
                && old.keeper.is_none_or(|id| id.is_running());
            if old.digest == *digest && healthy {
                return Ok(Earlier::Unchanged);
            }
            if old.digest != *digest && old.intact() {
                // A dataplane or keeper that died is restarted by the reconcile.
                return Ok(Earlier::Running(Box::new(old)));
            }
            eprintln!(
                "lab `{}` is broken (a namespace or its dataplane is gone or replaced): rebuilding",
                plan.lab
            );
            crate::lab::teardown::remove_lab(&plan.lab, Some(&old))?;
        }
        // State without a record: an earlier `up` that never finished.
        Ok(None) if state::LabDir::open(&plan.lab)?.is_some() => {
            eprintln!(
                "removing what an earlier `up` of lab `{}` left when it was stopped",
                plan.lab
            );
            crate::lab::teardown::remove_lab(&plan.lab, None)?;
        }
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    Ok(Earlier::None)
}

/// An error if a namespace of `plan` exists already, saying whose it is.
fn namespaces_free(plan: &Plan) -> Result<()> {
    for ns in plan.namespaces() {
        if netns::exists(ns) {
            let owner = crate::lab::teardown::owner(ns).ok().flatten();
            return Err(error::environment(match owner {
                Some(lab) => format!(
                    "namespace `{ns}` exists, left by grelab lab `{lab}`; run `grelab down --lab {lab}` first"
                ),
                None => format!(
                    "namespace `{ns}` exists and grelab did not create it; remove it \
                     (`ip netns del {ns}`) or run the lab with `--prefix`"
                ),
            }));
        }
    }
    Ok(())
}

/// What a build started that the journal does not cover, to undo on failure.
#[derive(Default)]
struct Undo {
    dataplane: Option<crate::sys::process::Identity>,
    keeper: Option<crate::sys::process::Identity>,
}

impl Undo {
    /// Undoes everything, best effort: the dataplane, then every namespace
    /// the journal names (as `down` would). Returns what could not be undone.
    fn undo(&mut self, lab: &str) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(id) = self.keeper.take()
            && let Err(e) = crate::lab::keeper::stop(&id)
        {
            failures.push(format!("{e:#}"));
        }
        if let Some(id) = self.dataplane.take()
            && let Err(e) = dataplane::stop(&id)
        {
            failures.push(format!("{e:#}"));
        }
        if let Err(e) = crate::lab::teardown::remove_lab(lab, None) {
            failures.push(format!("{e:#}"));
        }
        failures
    }
}

type Built = (
    Option<crate::sys::process::Identity>,
    Vec<EndBackend>,
    Vec<String>,
    Vec<(String, NsId)>,
);

/// Creates the plan's namespaces on a few threads, each step journalled:
/// (their identities, the first error). Namespace creation waits on the
/// kernel, not the CPU.
pub(super) fn create_namespaces(
    plan: &Plan,
    mark: &str,
    journal: &crate::lab::journal::Writer,
    done: &AtomicUsize,
) -> (Vec<(String, NsId)>, Result<()>) {
    if let Err(e) = netns::prepare() {
        return (Vec::new(), Err(e));
    }
    let queue = Mutex::new(plan.namespaces().rev().collect::<Vec<_>>());
    let created = Mutex::new(Vec::new());
    let error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..4.min(plan.nodes.len()) {
            s.spawn(|| {
                while let Some(ns) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    if error.lock().map_or(true, |e| e.is_some()) {
                        return;
                    }
                    // These threads are ours: each moves into every
                    // namespace it makes, and ends.
                    let record = |step| {
                        if let netns::Created::Namespace(id) = step {
                            // From now on only this namespace is `ns`.
                            netns::trust(ns, id);
                            if let Ok(mut c) = created.lock() {
                                c.push((ns.to_owned(), id));
                            }
                        }
                        journal.record(ns, step)
                    };
                    let made = crate::sys::interrupt::check()
                        .and_then(|()| netns::create_here(ns, &record))
                        .and_then(|()| {
                            done.fetch_add(1, Ordering::Relaxed);
                            init_namespace(mark).with_context(|| format!("in new namespace `{ns}`"))
                        });
                    if let Err(e) = made
                        && let Ok(mut slot) = error.lock()
                    {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    let created = created.into_inner().unwrap_or_default();
    match error.into_inner() {
        Ok(Some(e)) => (created, Err(e)),
        _ => (created, Ok(())),
    }
}

/// A new namespace's first settings, made on the thread that created it (so
/// inside it): the lab's mark on `lo`, so that `down` finds it even if `up`
/// dies right after, and no IPv6 link-local addresses on interfaces made
/// later (those with IPv6 addresses get them back): at scale, their
/// autoconfiguration chatter fills the host-wide neighbour table.
fn init_namespace(mark: &str) -> Result<()> {
    rtnl::mark_lo(mark)?;
    match configure::sysctl("net.ipv6.conf.default.addr_gen_mode", "1") {
        // A kernel without IPv6: nothing to turn off.
        Err(e) if !Path::new("/proc/sys/net/ipv6").exists() => drop(e),
        r => r?,
    }
    Ok(())
}

/// Builds everything of `plan` (phases 1 to 3); what the journal does not
/// cover goes into `undo` as soon as it exists.
fn build(
    plan: &Plan,
    backend: Option<Backend>,
    impairs: Option<&crate::lab::impair::Decision>,
    journal: &crate::lab::journal::Writer,
    undo: &mut Undo,
) -> Result<Built> {
    let mark = state::mark(&plan.lab);
    let mut timings = Timings::new();
    let progress = Progress::new(plan.nodes.len());
    progress.phase("creating namespaces");
    let (identities, created) = create_namespaces(plan, &mark, journal, progress.done());
    created?;
    timings.lap("namespaces");

    // Backends first: the dataplane then makes its devices while the veths
    // are being created.
    let probe = plan.namespaces().next().unwrap_or_default().to_owned();
    let delayed = impairs.map_or(&[][..], |d| &d.delayed[..]);
    let (ends, mut notes) = choose_backends(plan, backend, &probe, progress.done(), delayed)?;
    let user: Vec<TunnelEnd> = ends
        .iter()
        .filter(|(_, b)| *b == Backend::Userspace)
        .map(|(e, _)| e.clone())
        .collect();
    timings.lap("backend probe");
    crate::sys::interrupt::check()?;
    progress.phase("creating links");
    let netem = impairs.is_some_and(|d| d.netem);
    let (veths, pid) = links_and_dataplane(plan, user, netem, progress.done());
    // Journal the dataplane before reporting any error, so it is undone.
    let pid = match pid {
        Ok(p) => {
            undo.dataplane = p;
            p
        }
        Err(e) => {
            veths?;
            return Err(e);
        }
    };
    veths?;
    crate::sys::interrupt::crash_point("links-made");
    crate::sys::interrupt::check()?;
    timings.lap("links and the dataplane's devices");
    progress.phase("configuring");

    // Phase 3, per namespace: kernel tunnels, sysctls, addresses, links up (and marked), routes.
    let jobs = configure::jobs(plan, &ends)?;
    in_namespaces(jobs, Some(progress.done()), |rtnl, job| {
        let mark = &mark;
        async move { configure::configure(&rtnl, mark, &job).await }
    })?;
    timings.lap("configure");
    if let Some(d) = impairs {
        notes.extend(impair(plan, &ends, d)?);
        timings.lap("impairments");
    }

    let backends = ends
        .iter()
        .map(|(e, b)| EndBackend {
            namespace: e.netns.clone(),
            device: e.name.clone(),
            // As ever: what is not kernel is userspace (auto is resolved).
            backend: if *b == Backend::Kernel {
                Backend::Kernel
            } else {
                Backend::Userspace
            },
        })
        .collect();
    Ok((pid, backends, notes, identities))
}

/// Phase 4: the impairments, per namespace; a line for the user on each.
fn impair(plan: &Plan, ends: &[Chosen], d: &crate::lab::impair::Decision) -> Result<Vec<String>> {
    let mut jobs: Vec<(String, Vec<(String, crate::model::Impairment)>)> = Vec::new();
    let mut notes = Vec::new();
    for (ns, dev, imp) in plan.impairments() {
        let user = ends
            .iter()
            .any(|(e, b)| e.netns == ns && e.name == dev && *b == Backend::Userspace);
        let how = imp.carriers(d.netem, user);
        let node = plan
            .nodes
            .iter()
            .find(|n| n.ns == ns)
            .map_or(ns, |n| n.node.as_str());
        notes.push(format!("impair {node}:{dev}: {imp} by {how}"));
        match jobs.iter_mut().find(|(n, _)| n == ns) {
            Some((_, list)) => list.push((dev.to_owned(), *imp)),
            None => jobs.push((ns.to_owned(), vec![(dev.to_owned(), *imp)])),
        }
    }
    let netem = d.netem;
    in_namespaces(jobs, None, |rtnl, list| async move {
        for (dev, imp) in &list {
            crate::lab::impair::apply(&rtnl, dev, imp, netem).await?;
        }
        Ok(())
    })?;
    Ok(notes)
}

/// Phase 2: the veths, each created from its first end, while the
/// userspace dataplane (for the `user` ends, if any) starts and makes its
/// devices: (the veths' result, the dataplane's).
pub(super) fn links_and_dataplane(
    plan: &Plan,
    user: Vec<TunnelEnd>,
    netem: bool,
    done: &AtomicUsize,
) -> (Result<()>, Result<Option<crate::sys::process::Identity>>) {
    let dir = state::lab_dir(&plan.lab);
    let slots = Slots::new(plan);
    let mut veths: Vec<Vec<&Step>> = vec![Vec::new(); slots.len()];
    for step in &plan.steps {
        if let Step::Veth { ns, .. } = step {
            match slots.get(ns) {
                Ok(i) => veths[i].push(step),
                Err(e) => return (Err(e), Ok(None)),
            }
        }
    }
    let phase2 = plan
        .namespaces()
        .map(str::to_owned)
        .zip(veths)
        .filter(|(_, steps)| !steps.is_empty())
        .collect();
    let impaired: Vec<crate::dataplane::Impaired> = plan
        .impairments()
        .filter(|(ns, dev, _)| user.iter().any(|e| e.netns == *ns && e.name == *dev))
        // Listed even where netem delays: the end stays off the fast path.
        .map(|(ns, dev, imp)| {
            let imp = if netem { Impairment::default() } else { *imp };
            (ns.to_owned(), dev.to_owned(), imp)
        })
        .collect();
    if !impaired.is_empty()
        && let Err(e) = crate::lab::impair::write_dataplane_file(&plan.lab, &impaired)
    {
        return (Err(e), Ok(None));
    }
    std::thread::scope(|s| {
        let dataplane = (!user.is_empty()).then(|| {
            s.spawn(|| {
                let spec = dataplane::Spec {
                    lab: plan.lab.clone(),
                    tunnels: user,
                };
                dataplane::start(&dir, &spec).context("starting the userspace GRE dataplane")
            })
        });
        let veths = in_namespaces(phase2, Some(done), |rtnl, steps| async move {
            try_join_all(steps.into_iter().map(|s| {
                let rtnl = &rtnl;
                async move {
                    if let Step::Veth {
                        name,
                        peer_ns,
                        peer,
                        mtu,
                        mac,
                        peer_mac,
                        ..
                    } = s
                    {
                        let peer_fd = netns::open(peer_ns)?;
                        let macs = Some((mac.0, peer_mac.0));
                        rtnl.add_veth(name, peer, peer_fd.as_fd(), Some(*mtu), macs)
                            .await?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            }))
            .await?;
            Ok(())
        });
        let pid = dataplane.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow!("the dataplane starter panicked")))
        });
        (veths, pid.transpose())
    })
}
