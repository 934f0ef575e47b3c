//! The keeper of a lab's software: one process per lab (when a node runs
//! programs or has files of its own), the first of the lab's own PID
//! namespace. It holds each node's view (`sys::view`: a mount namespace
//! with the node's /sys, /proc, /run and files), starts the nodes'
//! programs in their views, reaps them and records their state. When it
//! ends, by `down` or by a kill, the kernel ends every process of the
//! namespace: nothing a lab started outlives it.
//!
//! Here: what `up` gives it (`Spec`), starting and stopping it, what it
//! records (`Status`), and entering a node's view (`exec`, exec checks).
//! `serve` is the keeper's side; `files` lays out the nodes' files.

mod files;
mod serve;

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

pub use self::files::preflight;
pub use self::serve::serve;
use crate::lab::state::LabDir;
use crate::plan::{Plan, Program};
use crate::sys::netns::NsId;
use crate::sys::process::{Identity, Pidfd};

/// The keeper's files in the lab's directory.
pub(super) const SPEC: &str = "keeper.json";
const IDENTITY: &str = "keeper-identity.json";
const STATUS: &str = "software.json";
const LOG: &str = "keeper.log";
/// The lab's /etc/hosts, for nodes without a keeper's view.
pub const HOSTS: &str = "hosts";
/// The folder of the programs' logs, in the lab's directory.
pub const LOGS: &str = "logs";
/// The folder of the nodes' files, in the lab's directory.
pub(crate) const NODES: &str = "nodes";

/// How long a program must keep running during `up` to count as started.
const SETTLE: Duration = Duration::from_millis(300);
/// How long programs get between SIGTERM and the end of their namespace.
pub const GRACE: Duration = Duration::from_secs(3);

/// What `up` hands the keeper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub lab: String,
    pub nodes: Vec<NodeSpec>,
}

/// One node: its namespace (as created) and its software.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub node: String,
    pub ns: String,
    pub ns_id: NsId,
    /// Path and content; the lab's /etc/hosts among them unless the file
    /// gives its own.
    pub files: Vec<(String, String)>,
    pub run: Vec<Program>,
}

/// What the keeper records, rewritten at each change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Each node's view, kept by a process of the lab's PID namespace.
    pub views: Vec<ViewHolder>,
    pub programs: Vec<ProgramStatus>,
}

/// The process that keeps a node's view, by host pid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewHolder {
    pub node: String,
    pub id: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    Running,
    Exited,
    /// It could not be started.
    Failed,
}

/// One program, as the keeper last saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramStatus {
    pub node: String,
    pub name: String,
    /// As the host sees it (0 if it never started).
    pub pid: u32,
    pub state: ProgramState,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub optional: bool,
    /// Why it could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds after the keeper started it.
    pub started_ms: u64,
}

impl ProgramStatus {
    /// Whether it failed: could not start, or ended other than with 0.
    pub fn failed(&self) -> bool {
        match self.state {
            ProgramState::Running => false,
            ProgramState::Failed => true,
            ProgramState::Exited => self.code != Some(0),
        }
    }

    /// How it ended, for people.
    pub fn outcome(&self) -> String {
        match (self.state, self.code, self.signal) {
            (ProgramState::Running, ..) => "running".into(),
            (ProgramState::Failed, ..) => {
                format!("failed to start: {}", self.error.as_deref().unwrap_or("?"))
            }
            (_, Some(c), _) => format!("exited {c}"),
            (_, _, Some(s)) => format!("killed by signal {s}"),
            _ => "exited".into(),
        }
    }
}

/// The log file of program `name` of `node`, in the lab's `logs` folder.
pub fn log_name(node: &str, name: &str) -> String {
    format!("{node}.{name}.log")
}

/// The spec of `plan`'s software, with each namespace's identity; None
/// when no node has any.
pub fn spec(plan: &Plan, identities: &[(String, NsId)]) -> Result<Option<Spec>> {
    if plan.software.is_empty() {
        return Ok(None);
    }
    let hosts = plan.hosts();
    let mut nodes = Vec::new();
    // Every node gets a view (its /sys, /run, /etc/hosts), so that `exec`
    // sees the same in each.
    for n in &plan.nodes {
        let ns_id = identities
            .iter()
            .find(|(ns, _)| *ns == n.ns)
            .map(|(_, id)| *id)
            .ok_or_else(|| anyhow!("namespace `{}` has no recorded identity", n.ns))?;
        let sw = plan.software.iter().find(|s| s.node == n.node);
        let mut files = sw.map(|s| s.files.clone()).unwrap_or_default();
        if !files.iter().any(|(p, _)| p == "/etc/hosts") {
            files.push(("/etc/hosts".into(), hosts.clone()));
        }
        nodes.push(NodeSpec {
            node: n.node.clone(),
            ns: n.ns.clone(),
            ns_id,
            files,
            run: sw.map(|s| s.run.clone()).unwrap_or_default(),
        });
    }
    Ok(Some(Spec {
        lab: plan.lab.clone(),
        nodes,
    }))
}

/// Starts the keeper of `spec` and waits until its programs have started
/// (each running for a moment, or ended). Its identity is recorded before
/// it does anything, so that `down` finds it whatever happens next.
/// `started` holds it as soon as it runs, for `up` to undo.
pub fn start(dir: &LabDir, spec: &Spec, started: &mut Option<Identity>) -> Result<Identity> {
    dir.write(SPEC, &serde_json::to_vec_pretty(spec)?)?;
    dir.make_dir(LOGS)?;
    let log = dir.append(LOG)?;
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    let (go_r, go_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let exe = CString::new("/proc/self/exe")?;
    let spec_path = CString::new(dir.path().join(SPEC).as_os_str().as_bytes())?;
    let argv = [
        exe,
        CString::new("keeper")?,
        CString::new("--spec")?,
        spec_path,
    ];
    let fds = [
        go_r.as_raw_fd(),
        null.as_raw_fd(),
        log.as_raw_fd(),
        ready_w.as_raw_fd(),
    ];
    let pidfd =
        crate::sys::spawn::init(&argv, &fds).context("starting the lab's keeper process")?;
    drop((go_r, ready_w));
    // Our unreaped child: the pid is its own while we look.
    let id = Identity::of(pidfd.pid).ok_or_else(|| anyhow!("the lab's keeper exited at once"))?;
    *started = Some(id);
    dir.write(IDENTITY, &serde_json::to_vec(&id)?)?;
    let mut go = std::fs::File::from(go_w);
    go.write_all(b"go\n")
        .context("telling the keeper to start")?;
    drop(go);
    let shown = dir.path().join(LOG);
    let line = crate::sys::process::read_line(ready_r, Duration::from_secs(30))
        .with_context(|| format!("waiting for the keeper (log: {})", shown.display()))?;
    match line.as_deref() {
        Some("ready") => {}
        Some(l) => bail!("{}", l.strip_prefix("error: ").unwrap_or(l)),
        None => bail!(
            "the lab's keeper ended without a word (log: {})",
            shown.display()
        ),
    }
    settle(dir)?;
    Ok(id)
}

/// Waits until each program has run for `SETTLE` or ended; an error names
/// the first that failed (unless optional) with the end of its log.
fn settle(dir: &LabDir) -> Result<()> {
    let deadline = Instant::now() + SETTLE + Duration::from_secs(2);
    loop {
        let status = read_status(dir)?.unwrap_or_default();
        if let Some(p) = status.programs.iter().find(|p| p.failed() && !p.optional) {
            let tail = log_tail(dir, &p.node, &p.name, 10).unwrap_or_default();
            bail!(
                "program `{}` of node `{}` {}{}",
                p.name,
                p.node,
                p.outcome(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; the end of its log:\n{tail}")
                }
            );
        }
        let settled = status.programs.iter().all(|p| {
            p.state != ProgramState::Running
                || p.started_ms + SETTLE.as_millis() as u64 <= elapsed_ms(dir)
        });
        if settled || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Milliseconds since the keeper started, by its spec file's age.
fn elapsed_ms(dir: &LabDir) -> u64 {
    std::fs::metadata(dir.path().join(IDENTITY))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(u64::MAX, |d| d.as_millis() as u64)
}

/// The last `lines` lines of a program's log.
pub fn log_tail(dir: &LabDir, node: &str, name: &str, lines: usize) -> Result<String> {
    let bytes = dir
        .read_in(LOGS, &log_name(node, name))?
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// What the keeper last recorded.
pub fn read_status(dir: &LabDir) -> Result<Option<Status>> {
    let Some(bytes) = dir.read(STATUS)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("reading {}", dir.path().join(STATUS).display()))
}

/// The keeper recorded beside its spec (for `down` without a record).
pub fn recorded(dir: &LabDir) -> Option<Identity> {
    serde_json::from_slice(&dir.read(IDENTITY).ok()??).ok()
}

/// Stops the keeper `id` and so every process of the lab's PID namespace:
/// SIGTERM (it passes it on, waits `GRACE`, and ends), then SIGKILL.
/// Ok(false) if it was not running.
pub fn stop(id: &Identity) -> Result<bool> {
    let Some(p) = Pidfd::open(id) else {
        return Ok(false);
    };
    crate::sys::process::terminate(std::slice::from_ref(&p), GRACE + Duration::from_secs(1))
        .context("stopping the lab's keeper")?;
    Ok(true)
}

/// A command to run in `node`'s view: the keeper's PID namespace for its
/// children (set on the calling thread), the view's mount and network
/// namespaces entered before exec. Err if the keeper or the view holder is
/// not the process recorded.
pub fn command(
    dir: &LabDir,
    keeper: &Identity,
    node: &str,
    ns_id: NsId,
    cmd: &[String],
) -> Result<std::process::Command> {
    use std::os::unix::process::CommandExt;
    let status = read_status(dir)?.unwrap_or_default();
    let holder = status
        .views
        .iter()
        .find(|v| v.node == node)
        .ok_or_else(|| anyhow!("node `{node}` has no view in lab `{}`", dir.lab()))?;
    let keeper = Pidfd::open(keeper).ok_or_else(|| {
        anyhow!(
            "the keeper of lab `{}` is not running; run `grelab up` again",
            dir.lab()
        )
    })?;
    let view = Pidfd::open_if(holder.id.pid, |pid| {
        holder.id.is_running() && crate::sys::process::net_ns(pid) == Some(ns_id)
    })
    .ok_or_else(|| anyhow!("the view of node `{node}` is gone; run `grelab up` again"))?;
    crate::sys::view::children_into_pid_ns(&keeper)?;
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| CString::new(d.as_os_str().as_bytes()).ok());
    let mut c = std::process::Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    // SAFETY: setns and chdir are plain syscalls; `view` lives in the closure.
    unsafe {
        c.pre_exec(move || {
            crate::sys::view::join(&view).map_err(std::io::Error::other)?;
            if let Some(d) = &cwd {
                libc::chdir(d.as_ptr());
            }
            Ok(())
        });
    }
    Ok(c)
}

/// A command to run in `node` of lab `lab`: in the node's view when the lab
/// has a keeper ([`command`]); else, as `ip netns exec` does, in a mount
/// namespace of the calling thread's own where /sys shows the node's
/// interfaces and /etc/hosts names the lab's nodes. Either way the calling
/// thread changes namespaces: call it on a thread of its own, or just
/// before this process ends.
pub fn node_command(lab: &str, node: &str, cmd: &[String]) -> Result<std::process::Command> {
    let s = crate::lab::state::load(lab)?.ok_or_else(|| {
        crate::error::environment(format!("lab `{lab}` is not up (see `grelab status`)"))
    })?;
    s.trust();
    let ns = s.plan.ns_of(node).ok_or_else(|| {
        crate::error::bad_input(format!(
            "lab `{lab}` has no node `{node}`; nodes: {}",
            s.plan.node_names()
        ))
    })?;
    let dir = LabDir::open(lab)?.ok_or_else(|| anyhow!("lab `{lab}` has no state"))?;
    if let Some(keeper) = s.keeper {
        let ns_id = s
            .identities
            .iter()
            .find(|(n, _)| n == ns)
            .map(|(_, id)| *id)
            .ok_or_else(|| anyhow!("namespace `{ns}` has no recorded identity"))?;
        return command(&dir, &keeper, node, ns_id, cmd);
    }
    let netns = crate::sys::netns::open(ns)?;
    let hosts = dir.path().join(HOSTS);
    let view = crate::sys::view::View {
        binds: hosts
            .exists()
            .then(|| (hosts, "/etc/hosts".into()))
            .into_iter()
            .collect(),
        run: None,
        ..Default::default()
    };
    crate::sys::view::enter(&netns, &view).with_context(|| format!("entering node `{node}`"))?;
    let mut c = std::process::Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    Ok(c)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")
}
