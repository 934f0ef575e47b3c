//! The process control API that `lab` and `cli` use: start a dataplane
//! process, serve in it, find, check and stop it, and its files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::engine::run;
use crate::model::TunnelEnd;
use crate::sys::process::{self, Identity, Pidfd};

/// What one dataplane process serves: the userspace tunnel ends of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub lab: String,
    pub tunnels: Vec<TunnelEnd>,
}

pub(super) static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGHUP: read the spec again (`reload`).
pub(super) static RELOAD: AtomicBool = AtomicBool::new(false);
/// The spec file being served.
pub(super) static SPEC_PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub(super) extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

/// The body of the hidden `grelab dataplane` subcommand: serves the spec in
/// `spec_path` until SIGTERM or SIGINT, reporting `ready` or `error: ...`
/// on `ready_fd`.
pub fn serve(spec_path: &Path, stats_path: &Path, ready_fd: Option<RawFd>) -> Result<()> {
    let mut ready = ready_fd.map(ready_pipe).transpose()?;
    let result = (|| {
        let text = fs::read(spec_path)
            .with_context(|| format!("reading dataplane spec {}", spec_path.display()))?;
        let spec: Spec = serde_json::from_slice(&text)
            .with_context(|| format!("parsing dataplane spec {}", spec_path.display()))?;
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only stores to an atomic.
            unsafe { sigaction(signal, &action) }.context("installing a signal handler")?;
        }
        let _ = SPEC_PATH.set(spec_path.to_path_buf());
        let hup = SigAction::new(
            SigHandler::Handler(on_hup),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(Signal::SIGHUP, &hup) }.context("installing a signal handler")?;
        let ready_now = || {
            eprintln!(
                "grelab dataplane {}: lab `{}`: serving {} tunnel ends",
                std::process::id(),
                spec.lab,
                spec.tunnels.len()
            );
            tell(&mut ready, "ready");
        };
        run(&spec, stats_path, ready_now, &STOP)
    })();
    if let Err(e) = &result {
        tell(&mut ready, &format!("error: {e:#}"));
    }
    result
}

/// Takes `fd` as the ready pipe if it is one: the write end of a pipe, not
/// a standard stream. Anything else is refused (exit 2) rather than
/// written to or closed.
pub(super) fn ready_pipe(fd: RawFd) -> Result<File> {
    let bad = |why: &str| {
        crate::error::bad_input(format!(
            "--ready-fd {fd}: {why}; it takes the write end of a pipe that the \
             starting grelab reads (`grelab up` starts the dataplane with it)"
        ))
    };
    if fd <= 2 {
        return Err(bad("0, 1 and 2 are the standard streams"));
    }
    // SAFETY: plain data; zero is valid.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: fstat only fills `st`, and fails on a closed descriptor.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(bad(&format!("not an open descriptor ({e})")));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(bad("not a pipe"));
    }
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_WRONLY {
        return Err(bad("not a pipe's write end"));
    }
    // SAFETY: an inherited pipe end that nothing else in this process uses;
    // the dataplane owns it from here and closes it once it said ready.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Writes one line to the ready pipe, then closes it.
pub(super) fn tell(ready: &mut Option<File>, line: &str) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{}", line.replace('\n', " "));
    }
}

/// Starts a detached dataplane process serving `spec`, with its files in
/// `lab_dir`; returns its identity once it is ready.
pub fn start(lab_dir: &Path, spec: &Spec) -> Result<Identity> {
    let exe =
        std::env::current_exe().context("finding the grelab executable to start the dataplane")?;
    launch(lab_dir, spec, |spec_path, stats_path| {
        // This very executable, even if its path now names another file:
        // `find` knows a dataplane by running the same one.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(&exe);
        cmd.arg("dataplane").arg("--spec").arg(spec_path);
        cmd.arg("--stats")
            .arg(stats_path)
            .arg("--ready-fd")
            .arg("3");
        cmd
    })
}

/// Where the dataplane of the lab with record directory `lab_dir` writes
/// its counters.
pub fn stats_path(lab_dir: &Path) -> std::path::PathBuf {
    lab_dir.join("dataplane-stats.json")
}

/// Where a started dataplane's identity is kept beside its spec, so that
/// `down` finds it without the lab's record.
pub(super) fn identity_path(lab_dir: &Path) -> std::path::PathBuf {
    lab_dir.join("dataplane-identity.json")
}

/// The identity `launch` left in `lab_dir`, if any.
pub(super) fn read_identity(lab_dir: &Path) -> Option<Identity> {
    serde_json::from_slice(&fs::read(identity_path(lab_dir)).ok()?).ok()
}

/// Writes the spec, spawns `command(spec_path, stats_path)` in a new session
/// with the ready pipe on fd 3, waits for its ready line and records its
/// identity.
pub(super) fn launch(
    lab_dir: &Path,
    spec: &Spec,
    command: impl FnOnce(&Path, &Path) -> Command,
) -> Result<Identity> {
    let spec_path = lab_dir.join("dataplane.json");
    let stats_path = stats_path(lab_dir);
    let log_path = lab_dir.join("dataplane.log");
    let json = serde_json::to_vec_pretty(spec).context("encoding the dataplane spec")?;
    fs::write(&spec_path, json).with_context(|| format!("writing {}", spec_path.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    let mut cmd = command(&spec_path, &stats_path);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let w = write_end.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // dup2 onto itself would keep close-on-exec; clear it instead.
            let r = if w == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(w, 3)
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut child = cmd.spawn().context("spawning the dataplane process")?;
    drop(write_end);
    let pid = child.id();
    match crate::sys::process::read_line(read_end, Duration::from_secs(10)) {
        Ok(Some(line)) if line == "ready" => {
            // Our unreaped child: its pid is its own while we read /proc.
            let tmp = lab_dir.join("dataplane-identity.json.tmp");
            let recorded = match Identity::of(pid) {
                None => Err(anyhow::anyhow!(
                    "the userspace GRE dataplane exited once ready (log: {})",
                    log_path.display()
                )),
                Some(id) => serde_json::to_vec(&id)
                    .map_err(io::Error::from)
                    .and_then(|json| fs::write(&tmp, json))
                    .and_then(|()| fs::rename(&tmp, identity_path(lab_dir)))
                    .with_context(|| format!("recording the dataplane in {}", tmp.display()))
                    .map(|()| id),
            };
            if recorded.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
            recorded
        }
        Ok(line) => {
            let _ = child.wait();
            let why = match line {
                Some(l) => l.strip_prefix("error: ").unwrap_or(&l).to_owned(),
                None => "it exited without saying why".to_owned(),
            };
            bail!(
                "the userspace GRE dataplane failed to start: {why} (log: {})",
                log_path.display()
            )
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.context(format!(
                "waiting for the dataplane to start (log: {})",
                log_path.display()
            )))
        }
    }
}

/// Makes the running dataplane `id` of the lab in `lab_dir` serve `spec`
/// instead (`reload`): the ends it keeps are not touched. Waits for its
/// answer; an error means it serves what it did (or less): restart it.
pub fn reload(lab_dir: &Path, id: &Identity, spec: &Spec) -> Result<()> {
    let spec_path = lab_dir.join("dataplane.json");
    let tmp = lab_dir.join("dataplane.json.tmp");
    let json = serde_json::to_vec_pretty(spec).context("encoding the dataplane spec")?;
    fs::write(&tmp, json)
        .and_then(|()| fs::rename(&tmp, &spec_path))
        .with_context(|| format!("writing {}", spec_path.display()))?;
    let answer = super::reload::answer_path(lab_dir);
    match fs::remove_file(&answer) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", answer.display()));
        }
        _ => {}
    }
    let p = Pidfd::open(id).ok_or_else(|| anyhow::anyhow!("the dataplane is not running"))?;
    p.signal(libc::SIGHUP)
        .context("asking the dataplane to read its spec again")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(&answer) {
            return match text.trim() {
                "ok" => Ok(()),
                other => bail!("the dataplane could not change its tunnels: {other}"),
            };
        }
        if std::time::Instant::now() > deadline || !id.is_running() {
            bail!(
                "the dataplane did not answer a reload (log: {})",
                lab_dir.join("dataplane.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops the dataplane `id`: SIGTERM, SIGKILL after 3 s, through a pidfd
/// opened on that very process. Ok(false) when it no longer runs.
pub fn stop(id: &Identity) -> Result<bool> {
    let Some(p) = Pidfd::open(id) else {
        return Ok(false);
    };
    process::terminate(std::slice::from_ref(&p), Duration::from_secs(3))
        .with_context(|| format!("stopping the dataplane (pid {})", id.pid))?;
    Ok(true)
}

/// Whether the dataplane `id` still runs (a recycled pid is another process).
pub fn is_running(id: &Identity) -> bool {
    id.is_running()
}

/// The running dataplanes of the lab in `lab_dir`: `recorded` (the lab's
/// record) or the identity `launch` left beside the spec; when neither
/// runs, any process in /proc that is unmistakably one: root's, running
/// this grelab executable as `dataplane --spec <the lab's spec>`.
pub fn find(lab_dir: &Path, recorded: Option<Identity>) -> Vec<Identity> {
    let mut known: Vec<Identity> = recorded
        .into_iter()
        .chain(read_identity(lab_dir))
        .filter(is_running)
        .collect();
    known.dedup();
    if !known.is_empty() {
        return known;
    }
    let Some(exe) = process::own_exe() else {
        return known;
    };
    let spec = lab_dir.join("dataplane.json");
    let want: [&[u8]; 3] = [b"dataplane", b"--spec", spec.as_os_str().as_encoded_bytes()];
    let is_ours = |pid| {
        let args = process::cmdline(pid);
        args.len() > want.len()
            && args[1..=want.len()].iter().zip(want).all(|(a, w)| a == w)
            && process::is_root(pid)
    };
    process::pids()
        .into_iter()
        .filter_map(Identity::of)
        .filter(|id| id.exe == exe)
        // Identity again after the checks: they read that same process.
        .filter(|id| is_ours(id.pid) && id.is_running())
        .collect()
}
