//! Apply: executes a Plan. Namespaces first, then per-namespace work on a
//! small pool of threads, each entering a namespace and speaking netlink
//! there. Everything created is journalled; on failure it is undone.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::future::try_join_all;

use crate::dataplane;
use crate::error;
use crate::lab::state::{self, State};
use crate::plan::{Plan, Step, TunnelEnd, TunnelKind};
use crate::sys::netns::{self, NsId};
use crate::sys::rtnl::{self, Rtnl};
use crate::topology::Backend;

/// Runs `work` once per job, each inside its namespace with a netlink
/// connection of that namespace, on a pool of threads. Returns the first
/// error, naming the namespace, and stops taking jobs after it.
pub fn in_namespaces<T, F, Fut>(jobs: Vec<(String, T)>, work: F) -> Result<()>
where
    T: Send,
    F: Fn(Rtnl, T) -> Fut + Sync,
    Fut: Future<Output = Result<()>>,
{
    // One runtime per thread, whatever the number of namespaces it serves.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a netlink runtime")
    };
    let work = |rt: &tokio::runtime::Runtime, job| {
        rt.block_on(async {
            let rtnl = Rtnl::new()?;
            work(rtnl, job).await
        })
    };
    match pool(jobs, 1, true, runtime, work).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `work` once per job inside its namespace on a pool of threads (one
/// per `per_thread` jobs, a few per core at most), each with its own
/// `init()` state; goes on past failures (unless `stop_on_error`) and
/// returns them all, each naming its namespace.
pub fn pool<T, S, F>(
    jobs: Vec<(String, T)>,
    per_thread: usize,
    stop_on_error: bool,
    init: impl Fn() -> Result<S> + Sync,
    work: F,
) -> Vec<anyhow::Error>
where
    T: Send,
    F: Fn(&S, T) -> Result<()> + Sync,
{
    if jobs.is_empty() {
        return Vec::new();
    }
    // Netlink work is mostly kernel time, short waits included: a few
    // threads per core keep the cores busy without thrashing.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = jobs.len().div_ceil(per_thread.max(1)).min(cores * 2).max(1);
    let queue = Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>());
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let fail = |e: anyhow::Error| {
        if let Ok(mut all) = errors.lock() {
            all.push(e);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut state = None;
                loop {
                    if stop_on_error && errors.lock().map_or(true, |e| !e.is_empty()) {
                        return;
                    }
                    if stop_on_error && let Err(e) = crate::lab::interrupt::check() {
                        return fail(e);
                    }
                    let Some((ns, job)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return;
                    };
                    if state.is_none() {
                        match init() {
                            Ok(s) => state = Some(s),
                            Err(e) => return fail(e),
                        }
                    }
                    let Some(st) = &state else { return };
                    let result = netns::open(&ns)
                        .and_then(|file| netns::enter(&file))
                        .and_then(|()| work(st, job))
                        .with_context(|| format!("in namespace `{ns}`"));
                    DONE.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        fail(e);
                    }
                }
            });
        }
    });
    errors
        .into_inner()
        .unwrap_or_else(|_| vec![anyhow!("a namespace worker panicked")])
}

/// Reads a sysctl of the calling thread's namespace and writes it if different.
fn sysctl(key: &str, value: &str) -> Result<()> {
    sysctl_at(
        &Path::new("/proc/sys").join(key.replace('.', "/")),
        key,
        value,
    )
}

/// Sets IPv6 setting `what` of interface `dev`, whose name may hold dots
/// (`eth0.10`): those are not path separators.
fn ipv6_conf(dev: &str, what: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys/net/ipv6/conf").join(dev).join(what);
    sysctl_at(&path, &format!("net.ipv6.conf.{dev}.{what}"), value)
}

fn sysctl_at(path: &Path, key: &str, value: &str) -> Result<()> {
    let now = std::fs::read_to_string(path)
        .with_context(|| format!("reading sysctl {key} ({})", path.display()))?;
    if now.trim() != value {
        std::fs::write(path, value).with_context(|| format!("setting sysctl {key}={value}"))?;
    }
    Ok(())
}

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
fn choose_backends(
    plan: &Plan,
    wanted: Option<Backend>,
    probe_ns: &str,
) -> Result<(Vec<Chosen>, Vec<String>)> {
    let mut kinds: Vec<TunnelKind> = Vec::new();
    for (end, b) in plan.tunnels() {
        if wanted.unwrap_or(b) != Backend::Userspace && !kinds.contains(&end.kind) {
            kinds.push(end.kind);
        }
    }
    let supported: Mutex<Vec<(TunnelKind, bool)>> = Mutex::new(Vec::new());
    if !kinds.is_empty() {
        in_namespaces(vec![(probe_ns.to_owned(), ())], |rtnl, ()| {
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

/// Builds the lab of `plan`. Idempotent for an unchanged plan; refuses a
/// changed one while the lab is up. SIGINT and SIGTERM roll it back.
pub fn up(plan: &Plan, source: Option<&Path>, backend: Option<Backend>) -> Result<Outcome> {
    netns::check_privileges().map_err(|e| error::environment(format!("{e:#}")))?;
    crate::lab::interrupt::catch()?;
    let out = up_caught(plan, source, backend);
    crate::lab::interrupt::release();
    out
}

fn up_caught(plan: &Plan, source: Option<&Path>, backend: Option<Backend>) -> Result<Outcome> {
    let start = Instant::now();
    let _lock = state::Lock::acquire(&plan.lab, Duration::from_secs(30))?;
    let digest = state::digest(plan);

    match state::load(&plan.lab) {
        Ok(Some(old)) => {
            let healthy = old.intact() && old.dataplane.is_none_or(|id| dataplane::is_running(&id));
            if old.digest == digest && healthy {
                return Ok(Outcome {
                    elapsed: start.elapsed(),
                    notes: vec![],
                    unchanged: true,
                });
            }
            if old.digest != digest {
                return Err(error::bad_input(format!(
                    "lab `{}` is up from a different topology{}; run `grelab down --lab {}` first",
                    plan.lab,
                    old.source
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default(),
                    plan.lab
                )));
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

    let dir = state::LabDir::create(&plan.lab)?;
    let journal = crate::lab::journal::Writer::open(&dir)?;
    let mut undo = Undo::default();
    let built = build(plan, backend, &journal, &mut undo).and_then(|built| {
        // A signal during the last step still rolls back.
        crate::lab::interrupt::check()?;
        Ok(built)
    });
    match built {
        Ok((dataplane, backends, notes, identities)) => {
            state::save(&State {
                plan: plan.clone(),
                source: source.map(Path::to_path_buf),
                digest,
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                dataplane,
                backends,
                identities,
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

/// What a build started that the journal does not cover, to undo on failure.
#[derive(Default)]
struct Undo {
    dataplane: Option<crate::sys::process::Identity>,
}

impl Undo {
    /// Undoes everything, best effort: the dataplane, then every namespace
    /// the journal names (as `down` would). Returns what could not be undone.
    fn undo(&mut self, lab: &str) -> Vec<String> {
        let mut failures = Vec::new();
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
    Vec<(String, String, String)>,
    Vec<String>,
    Vec<(String, NsId)>,
);

/// Prints how long each phase took when GRELAB_TIMINGS is set: where the
/// time of a large `up` goes.
struct Timings(Option<Instant>);

impl Timings {
    fn new() -> Self {
        Timings(std::env::var_os("GRELAB_TIMINGS").map(|_| Instant::now()))
    }

    fn lap(&mut self, what: &str) {
        if let Some(t) = &mut self.0 {
            eprintln!("timing: {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            *t = Instant::now();
        }
    }
}

/// Creates the plan's namespaces on a few threads, each step journalled:
/// (their identities, the first error). Namespace creation waits on the
/// kernel, not the CPU.
fn create_namespaces(
    plan: &Plan,
    mark: &str,
    journal: &crate::lab::journal::Writer,
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
                    let made = crate::lab::interrupt::check()
                        .and_then(|()| netns::create_here(ns, &record))
                        .and_then(|()| {
                            DONE.fetch_add(1, Ordering::Relaxed);
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
    match sysctl("net.ipv6.conf.default.addr_gen_mode", "1") {
        // A kernel without IPv6: nothing to turn off.
        Err(e) if !Path::new("/proc/sys/net/ipv6").exists() => drop(e),
        r => r?,
    }
    Ok(())
}

/// Namespace jobs finished in the current phase, for the progress line.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// A progress line on a terminal for large labs (quiet otherwise): the
/// phase, namespaces done, rate and time left.
struct Progress {
    shared: Option<Arc<(Mutex<&'static str>, AtomicBool)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        if total < 50 || !std::io::stderr().is_terminal() {
            return Progress {
                shared: None,
                thread: None,
            };
        }
        let shared = Arc::new((Mutex::new("namespaces"), AtomicBool::new(false)));
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let mut phase_start = (String::new(), Instant::now());
            while !s.1.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let phase = s.0.lock().map_or("", |p| *p);
                if phase_start.0 != phase {
                    phase_start = (phase.to_owned(), Instant::now());
                }
                let done = DONE.load(Ordering::Relaxed).min(total);
                let secs = phase_start.1.elapsed().as_secs_f64();
                let rate = done as f64 / secs.max(1e-3);
                let eta = if done > 0 {
                    (total - done) as f64 / rate
                } else {
                    0.0
                };
                eprint!(
                    "\r\x1b[K  {phase}: {done}/{total} namespaces ({rate:.0}/s, {eta:.1} s left)"
                );
            }
            eprint!("\r\x1b[K");
        });
        Progress {
            shared: Some(shared),
            thread: Some(thread),
        }
    }

    fn phase(&self, name: &'static str) {
        DONE.store(0, Ordering::Relaxed);
        if let Some(s) = &self.shared
            && let Ok(mut p) = s.0.lock()
        {
            *p = name;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.1.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build(
    plan: &Plan,
    backend: Option<Backend>,
    journal: &crate::lab::journal::Writer,
    undo: &mut Undo,
) -> Result<Built> {
    let mark = state::mark(&plan.lab);
    let mut timings = Timings::new();
    let progress = Progress::new(plan.nodes.len());
    progress.phase("creating namespaces");
    let (identities, created) = create_namespaces(plan, &mark, journal);
    created?;
    timings.lap("namespaces");

    // Backends first: the dataplane then makes its devices while the veths
    // are being created.
    let probe = plan.namespaces().next().unwrap_or_default().to_owned();
    let (ends, notes) = choose_backends(plan, backend, &probe)?;
    let user: Vec<TunnelEnd> = ends
        .iter()
        .filter(|(_, b)| *b == Backend::Userspace)
        .map(|(e, _)| e.clone())
        .collect();
    timings.lap("backend probe");
    crate::lab::interrupt::check()?;
    progress.phase("creating links");
    let dir = state::lab_dir(&plan.lab);

    // Phase 2: create veths from their first end.
    let index: HashMap<&str, usize> = plan
        .namespaces()
        .enumerate()
        .map(|(i, ns)| (ns, i))
        .collect();
    let slot = |ns: &str| {
        index
            .get(ns)
            .copied()
            .ok_or_else(|| anyhow!("no namespace `{ns}` in the plan"))
    };
    let mut veths: Vec<Vec<&Step>> = vec![Vec::new(); index.len()];
    for step in &plan.steps {
        if let Step::Veth { ns, .. } = step {
            veths[slot(ns)?].push(step);
        }
    }
    let phase2 = plan
        .namespaces()
        .map(str::to_owned)
        .zip(veths)
        .filter(|(_, steps)| !steps.is_empty())
        .collect();
    let (veths, pid) = std::thread::scope(|s| {
        let dataplane = (!user.is_empty()).then(|| {
            s.spawn(|| {
                let spec = dataplane::Spec {
                    lab: plan.lab.clone(),
                    tunnels: user,
                };
                dataplane::start(&dir, &spec).context("starting the userspace GRE dataplane")
            })
        });
        let veths = in_namespaces(phase2, |rtnl, steps| async move {
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
    });
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
    crate::lab::interrupt::crash_point("links-made");
    crate::lab::interrupt::check()?;
    timings.lap("links and the dataplane's devices");
    progress.phase("configuring");

    // Phase 3, per namespace: kernel tunnels, sysctls, addresses, links up (and marked), routes.
    let mut jobs: Vec<Configure> = vec![Configure::default(); index.len()];
    for (end, b) in &ends {
        if *b == Backend::Kernel {
            jobs[slot(&end.netns)?].steps.push(Step::Tunnel {
                end: end.clone(),
                backend: Backend::Kernel,
            });
        }
    }
    let v6_ifaces: std::collections::HashSet<(&str, &str)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Address { ns, dev, addr } if addr.addr.is_ipv6() => {
                Some((ns.as_str(), dev.as_str()))
            }
            _ => None,
        })
        .collect();
    // Where a userspace end checks GRE checksums, the veths leading to its
    // node must carry real checksums (see ethtool::disable_tx_checksum).
    let csum_ns: Vec<&str> = ends
        .iter()
        .filter(|(e, b)| *b == Backend::Userspace && e.checksum)
        .map(|(e, _)| e.netns.as_str())
        .collect();
    for step in &plan.steps {
        match step {
            Step::Namespace { .. } | Step::Tunnel { .. } => {}
            Step::Veth {
                ns,
                name,
                peer_ns,
                peer,
                ..
            } => {
                // Only veths with IPv6 addresses get a link-local one (see
                // init_namespace).
                for (n, dev) in [(ns, name), (peer_ns, peer)] {
                    if v6_ifaces.contains(&(n.as_str(), dev.as_str())) {
                        jobs[slot(n)?].ipv6.push(dev.clone());
                    }
                }
                if csum_ns.contains(&peer_ns.as_str()) {
                    jobs[slot(ns)?].no_tx_csum.push(name.clone());
                }
                if csum_ns.contains(&ns.as_str()) {
                    jobs[slot(peer_ns)?].no_tx_csum.push(peer.clone());
                }
            }
            s => jobs[slot(s.ns())?].steps.push(s.clone()),
        }
    }
    let jobs = plan.namespaces().map(str::to_owned).zip(jobs).collect();
    in_namespaces(jobs, |rtnl, job| {
        let mark = &mark;
        async move { configure(&rtnl, mark, &job).await }
    })?;
    timings.lap("configure");

    let backends = ends
        .iter()
        .map(|(e, b)| {
            let b = if *b == Backend::Kernel {
                "kernel"
            } else {
                "userspace"
            };
            (e.netns.clone(), e.name.clone(), b.to_owned())
        })
        .collect();
    Ok((pid, backends, notes, identities))
}

/// One namespace's phase-3 work.
#[derive(Debug, Clone, Default)]
struct Configure {
    steps: Vec<Step>,
    /// Veths whose transmit checksum offload must be off.
    no_tx_csum: Vec<String>,
    /// Veths with IPv6 addresses: they get a link-local address, usable at
    /// once (no DAD) since a router solicits neighbours from it; addresses
    /// are added with `nodad` likewise.
    ipv6: Vec<String>,
}

/// One namespace's configuration, independent requests in flight together.
async fn configure(rtnl: &Rtnl, mark: &str, job: &Configure) -> Result<()> {
    let steps = &job.steps;
    for s in steps {
        if let Step::Tunnel { end, .. } = s {
            rtnl.add_tunnel(end).await?;
        }
    }
    for dev in &job.no_tx_csum {
        crate::sys::ethtool::disable_tx_checksum(dev)?;
    }
    for dev in &job.ipv6 {
        ipv6_conf(dev, "accept_dad", "0")?;
        ipv6_conf(dev, "addr_gen_mode", "0")?;
    }
    for s in steps {
        if let Step::Sysctl { key, value, .. } = s {
            sysctl(key, value)?;
        }
    }
    // Addresses, links up and neighbours do not depend on each other: one
    // round of requests. Routes need their gateway's subnet up: the next.
    try_join_all(steps.iter().map(|s| async move {
        match s {
            Step::Address { dev, addr, .. } => rtnl.add_address(dev, addr.addr, addr.prefix).await,
            // Every link the lab makes is brought up, and marked as it goes
            // (`lo`, marked when its namespace was made, again: no matter).
            Step::Up { dev, .. } => rtnl.set_up(dev, Some(mark)).await,
            Step::Neighbor { dev, addr, mac, .. } => rtnl.add_neighbor(dev, *addr, mac.0).await,
            _ => Ok(()),
        }
    }))
    .await?;
    try_join_all(steps.iter().filter_map(|s| match s {
        Step::Route { to, via, .. } => {
            let dst = match to {
                crate::topology::Destination::Default(_) => None,
                crate::topology::Destination::Net(n) => Some((n.addr, n.prefix)),
            };
            Some(rtnl.add_route(dst, *via, None))
        }
        _ => None,
    }))
    .await?;
    Ok(())
}
