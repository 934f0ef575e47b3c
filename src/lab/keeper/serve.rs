//! The keeper's side: PID 1 of the lab's PID namespace, single-threaded
//! (it forks, and a forked child of one thread may do anything).
//!
//! It waits for `up`'s go (so that it runs only once `up` has recorded it),
//! lays out the nodes' files, forks one holder per node that builds the
//! node's view and then sleeps in it, starts the programs in their views,
//! says ready, and then reaps: its own children and every orphan of the
//! namespace. SIGTERM passes to every process of the namespace; after
//! `GRACE` the keeper ends, and the kernel kills what is left.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::{
    GRACE, LOGS, NODES, NodeSpec, ProgramState, ProgramStatus, SPEC, STATUS, Spec, Status,
    ViewHolder,
};
use crate::lab::state::LabDir;
use crate::sys::process::{Identity, Pidfd};

/// The keeper's file descriptor 3: where it says `ready` or `error: ...`.
const READY_FD: i32 = 3;

/// Runs the keeper of the spec at `spec_path`. Returns when the lab ends.
pub fn serve(spec_path: &Path) -> Result<()> {
    name_self(c"grelab-keeper");
    // SAFETY: fd 3 was given by `start` for this process alone.
    let mut ready = Some(unsafe { File::from_raw_fd(READY_FD) });
    let signals = block_signals()?;
    let mut go = String::new();
    BufReader::new(std::io::stdin()).read_line(&mut go)?;
    if go.trim() != "go" {
        // `up` died before recording us: nothing was started.
        return Ok(());
    }
    // The spec is a lab directory's, read through its checked handle.
    let lab = spec_path
        .parent()
        .filter(|d| d.parent() == Some(crate::lab::state::state_dir().as_path()))
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} is not a lab's keeper spec", spec_path.display()))?;
    let dir = LabDir::open(lab)?.ok_or_else(|| anyhow!("lab `{lab}` has no state"))?;
    let bytes = dir
        .read(SPEC)?
        .ok_or_else(|| anyhow!("{} is missing", spec_path.display()))?;
    let spec: Spec = serde_json::from_slice(&bytes).context("reading the keeper's spec")?;
    let mut keeper = Keeper {
        dir,
        status: Status::default(),
        holders: Vec::new(),
        children: Vec::new(),
        start: Instant::now(),
    };
    match keeper.start_all(&spec) {
        Ok(()) => tell(&mut ready, "ready"),
        Err(e) => {
            tell(&mut ready, &format!("error: {e:#}"));
            return Err(e);
        }
    }
    keeper.reap_until_term(&signals)
}

fn tell(ready: &mut Option<File>, line: &str) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{}", line.replace('\n', " "));
    }
}

/// SIGTERM, SIGINT, SIGHUP and SIGCHLD, read from a signalfd. (As PID 1 the
/// keeper would not even receive a signal it neither handles nor blocks.)
fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")
}

struct Keeper {
    dir: LabDir,
    status: Status,
    /// Each node's holder, by name.
    holders: Vec<(String, Pidfd)>,
    /// (pid in the namespace, index in status.programs).
    children: Vec<(i32, usize)>,
    start: Instant,
}

impl Keeper {
    fn start_all(&mut self, spec: &Spec) -> Result<()> {
        let nodes = self.dir.path().join(NODES);
        std::fs::create_dir_all(&nodes).with_context(|| format!("creating {}", nodes.display()))?;
        for node in &spec.nodes {
            let pidfd = self
                .hold(node, &nodes)
                .with_context(|| format!("building the view of node `{}`", node.node))?;
            self.status.views.push(ViewHolder {
                node: node.node.clone(),
                id: host_identity(&pidfd)?,
            });
            self.holders.push((node.node.clone(), pidfd));
        }
        self.save()?;
        for node in &spec.nodes {
            for p in &node.run {
                self.run(node, p)?;
            }
        }
        self.save()
    }

    /// Forks the holder of `node`'s view; returns once the view is built.
    fn hold(&self, node: &NodeSpec, nodes: &Path) -> Result<Pidfd> {
        let root = nodes.join(&node.node);
        std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        let view = super::files::lay_out(node, &root, true)?;
        crate::sys::netns::trust(&node.ns, node.ns_id);
        let netns = crate::sys::netns::open(&node.ns)?;
        let (r, w) = super::pipe()?;
        // SAFETY: this process has one thread.
        match unsafe { fork() }.context("forking a view holder")? {
            ForkResult::Child => {
                drop(r);
                name_self(c"grelab-view");
                let mut w = File::from(w);
                let line = match crate::sys::view::enter(&netns, &view) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e:#}"),
                };
                let _ = writeln!(w, "{line}");
                drop(w);
                if line != "ok" {
                    // SAFETY: ending the forked child.
                    unsafe { libc::_exit(1) };
                }
                let _ = SigSet::all().thread_unblock();
                loop {
                    nix::unistd::pause();
                }
            }
            ForkResult::Parent { child } => {
                drop(w);
                let pidfd = Pidfd::open_if(child.as_raw() as u32, |_| true)
                    .ok_or_else(|| anyhow!("the view holder ended at once"))?;
                match crate::sys::process::read_line(r, Duration::from_secs(10))? {
                    Some(l) if l == "ok" => Ok(pidfd),
                    Some(l) => bail!("{}", l.strip_prefix("error: ").unwrap_or(&l)),
                    None => bail!("the view holder ended without a word"),
                }
            }
        }
    }

    /// Starts program `p` of `node` in the node's view, its output in its log.
    fn run(&mut self, node: &NodeSpec, p: &crate::plan::Program) -> Result<()> {
        let holder = &self
            .holders
            .iter()
            .find(|(n, _)| *n == node.node)
            .ok_or_else(|| anyhow!("node `{}` has no view", node.node))?
            .1;
        let log = self
            .dir
            .append_in(LOGS, &super::log_name(&node.node, &p.name))?;
        let null = File::open("/dev/null")?;
        let (r, w) = super::pipe()?;
        let started_ms = self.start.elapsed().as_millis() as u64;
        // SAFETY: this process has one thread.
        match unsafe { fork() }.context("forking a program")? {
            ForkResult::Child => {
                drop(r);
                let err = exec_in_view(holder, p, &log, &null);
                let mut w = File::from(w);
                let _ = write!(w, "{err:#}");
                // SAFETY: ending the forked child.
                unsafe { libc::_exit(127) }
            }
            ForkResult::Parent { child } => {
                drop(w);
                // The pipe closes on exec (empty read) or carries the error.
                let mut why = String::new();
                let _ = std::io::Read::read_to_string(&mut File::from(r), &mut why);
                let mut st = ProgramStatus {
                    node: node.node.clone(),
                    name: p.name.clone(),
                    pid: 0,
                    state: ProgramState::Running,
                    code: None,
                    signal: None,
                    optional: p.optional,
                    error: None,
                    started_ms,
                };
                if why.is_empty() {
                    st.pid = Pidfd::open_if(child.as_raw() as u32, |_| true)
                        .and_then(|fd| host_identity(&fd).ok())
                        .map_or(0, |id| id.pid);
                    self.children
                        .push((child.as_raw(), self.status.programs.len()));
                } else {
                    st.state = ProgramState::Failed;
                    st.error = Some(why.clone());
                    let _ = writeln!(&log, "grelab: cannot start `{}`: {why}", p.cmd[0]);
                    let _ = waitpid(child, None);
                }
                self.status.programs.push(st);
                Ok(())
            }
        }
    }

    fn save(&self) -> Result<()> {
        self.dir
            .write(STATUS, &serde_json::to_vec_pretty(&self.status)?)
    }

    /// Reaps until SIGTERM (or SIGINT, SIGHUP), then ends the namespace.
    fn reap_until_term(&mut self, signals: &SignalFd) -> Result<()> {
        loop {
            let Some(info) = signals.read_signal().context("reading signals")? else {
                continue;
            };
            if info.ssi_signo == Signal::SIGCHLD as u32 {
                if self.reap() {
                    let _ = self.save();
                }
                continue;
            }
            // SAFETY: kill(-1) from PID 1 signals every other process of
            // its namespace, and only those.
            unsafe { libc::kill(-1, libc::SIGTERM) };
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Err(nix::errno::Errno::ECHILD) => return Ok(()),
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
                    _ => {}
                }
            }
            // Ending PID 1 kills the rest.
            return Ok(());
        }
    }

    /// Collects every ended child; true if one was a program.
    fn reap(&mut self) -> bool {
        let mut changed = false;
        loop {
            let (pid, code, signal) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) => (pid, Some(c), None),
                Ok(WaitStatus::Signaled(pid, s, _)) => (pid, None, Some(s as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return changed,
                Ok(_) => continue,
            };
            if let Some(&(_, i)) = self.children.iter().find(|(p, _)| *p == pid.as_raw()) {
                let st = &mut self.status.programs[i];
                st.state = ProgramState::Exited;
                st.code = code;
                st.signal = signal;
                changed = true;
            }
        }
    }
}

/// In the forked child: the node's view, a session, the log, then exec.
/// Returns only on failure.
fn exec_in_view(
    holder: &Pidfd,
    p: &crate::plan::Program,
    log: &File,
    null: &File,
) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    if let Err(e) = crate::sys::view::join(holder) {
        return e;
    }
    let _ = SigSet::all().thread_unblock();
    let mut cmd = std::process::Command::new(&p.cmd[0]);
    cmd.args(&p.cmd[1..])
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(
            null.try_clone()
                .map_or(std::process::Stdio::null(), Into::into),
        )
        .process_group(0);
    match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => {
            cmd.stdout(a).stderr(b);
        }
        _ => return anyhow!("cannot hand the program its log"),
    }
    anyhow!("{}", cmd.exec())
}

/// The identity of our child behind `pidfd` as the host sees it: its pid
/// in the /proc this process sees (the host's), read from the pidfd.
fn host_identity(pidfd: &Pidfd) -> Result<Identity> {
    let info = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsFd::as_fd(pidfd).as_raw_fd()
    ))?;
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no pid in a pidfd's fdinfo"))?;
    Identity::of(pid).ok_or_else(|| anyhow!("process {pid} ended"))
}

/// What `ps` shows for this process (not `exe`, from /proc/self/exe).
fn name_self(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}
