//! Processes grelab signals, and only those: each is known by an identity
//! a recycled pid cannot fake (pid, start time, executable), and signalled
//! through a pidfd opened before that identity is checked, so the process
//! checked is the process signalled.
//!
//! A pid read from /proc describes the pidfd's process as long as that
//! process has not exited: its pid is not free before it is reaped. So each
//! check reads /proc after opening the pidfd, and counts only if the pidfd
//! still says "running" afterwards.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};

/// A file, by device and inode (an executable, a namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The file at `path`, symlinks followed (as /proc's magic links are).
    pub fn of(path: impl AsRef<Path>) -> Option<FileId> {
        fs::metadata(path).ok().as_ref().map(FileId::from)
    }

    /// The file `file` has open.
    pub fn of_file(file: &fs::File) -> Option<FileId> {
        file.metadata().ok().as_ref().map(FileId::from)
    }
}

impl From<&fs::Metadata> for FileId {
    fn from(m: &fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// One process, told apart from any later process given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub pid: u32,
    /// When it started, in clock ticks after boot (/proc/PID/stat, field 22).
    pub start: u64,
    /// The executable it runs.
    pub exe: FileId,
}

impl Identity {
    /// The identity of the running process `pid` (None if it does not
    /// exist or has exited).
    pub fn of(pid: u32) -> Option<Identity> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which may itself hold ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        if fields.first().is_none_or(|s| s.starts_with(['Z', 'X'])) {
            return None;
        }
        let start = fields.get(19)?.parse().ok()?;
        let exe = FileId::of(format!("/proc/{pid}/exe"))?;
        Some(Identity { pid, start, exe })
    }

    /// Whether this process still runs.
    pub fn is_running(&self) -> bool {
        Identity::of(self.pid).as_ref() == Some(self)
    }
}

/// The executable this process runs.
pub fn own_exe() -> Option<FileId> {
    FileId::of("/proc/self/exe")
}

/// The command line of `pid`, one entry per argument.
pub fn cmdline(pid: u32) -> Vec<Vec<u8>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut args: Vec<Vec<u8>> = raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    // The last argument ends in a NUL too.
    if args.last().is_some_and(Vec::is_empty) {
        args.pop();
    }
    args
}

/// Whether `pid` runs as root: real and effective uid 0.
pub fn is_root(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().take(2).all(|id| id == "0"))
}

/// The network namespace `pid` is in (None for a zombie).
pub fn net_ns(pid: u32) -> Option<FileId> {
    FileId::of(format!("/proc/{pid}/ns/net"))
}

/// Every process in /proc but this one.
pub fn pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .collect()
}

/// A process held by a pidfd: signals reach it and no other.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pub pid: u32,
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Pidfd {
    /// A pidfd the caller made (`clone3`, or `pidfd_open` of its own child).
    pub fn from_owned(fd: OwnedFd, pid: u32) -> Pidfd {
        Pidfd { fd, pid }
    }

    /// Opens `pid` if `check(pid)` holds once the pidfd is open and the
    /// process is still running after the check (see the module doc).
    pub fn open_if(pid: u32, check: impl FnOnce(u32) -> bool) -> Option<Pidfd> {
        let Ok(pid_t) = libc::pid_t::try_from(pid) else {
            return None;
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let p = Pidfd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pid,
        };
        (check(pid) && !p.exited()).then_some(p)
    }

    /// Opens the process `id` if it is still that process.
    pub fn open(id: &Identity) -> Option<Pidfd> {
        Pidfd::open_if(id.pid, |_| id.is_running())
    }

    /// Sends `signal`; a process that has exited already is not an error.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with our pidfd, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        let e = io::Error::last_os_error();
        match r {
            0 => Ok(()),
            _ if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        }
    }

    /// Whether the process has exited (the pidfd polls readable).
    pub fn exited(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        // Any event, an error included, means there is nothing to signal.
        !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }

    /// Collects the exit status if the process is our child, so no zombie
    /// stays behind; does nothing for anyone else's.
    fn reap(&self) {
        // SAFETY: siginfo_t is plain data; zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our pidfd fills `info`; ECHILD for a non-child.
        unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            );
        }
    }
}

/// Waits up to `timeout` for `procs` to exit, polling their pidfds; returns
/// those still running.
pub fn wait_exit(procs: &[Pidfd], timeout: Duration) -> Vec<&Pidfd> {
    let deadline = Instant::now() + timeout;
    let mut left: Vec<&Pidfd> = procs.iter().collect();
    loop {
        left.retain(|p| !p.exited());
        let wait = deadline.saturating_duration_since(Instant::now());
        if left.is_empty() || wait.is_zero() {
            return left;
        }
        let mut fds: Vec<PollFd> = left
            .iter()
            .map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX);
        // Woken by any exit (or EINTR): the loop sorts out who is left.
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
    }
}

/// How long a process gets to die after SIGKILL (one in uninterruptible
/// sleep takes a while).
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Ends `procs`: SIGTERM, up to `grace` for them to exit, then SIGKILL.
/// Err names those that failed to take a signal or outlived SIGKILL.
pub fn terminate(procs: &[Pidfd], grace: Duration) -> Result<()> {
    let mut problems = Vec::new();
    for p in procs {
        if let Err(e) = p.signal(libc::SIGTERM) {
            problems.push(format!("SIGTERM to {}: {e}", p.pid));
        }
    }
    let stubborn = wait_exit(procs, grace);
    for p in &stubborn {
        if let Err(e) = p.signal(libc::SIGKILL) {
            problems.push(format!("SIGKILL to {}: {e}", p.pid));
        }
    }
    let survivors: Vec<String> = wait_exit(procs, KILL_WAIT)
        .iter()
        .map(|p| p.pid.to_string())
        .collect();
    for p in procs {
        p.reap();
    }
    if !survivors.is_empty() {
        problems.push(format!(
            "process {} still runs {} s after SIGKILL",
            survivors.join(", "),
            KILL_WAIT.as_secs()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Scans of /proc after the first, for processes started meanwhile.
const ROUNDS: usize = 3;

/// Stops every process in the network namespaces `namespaces` (the files
/// that stand for them, such as /run/netns/NAME), as `ip netns pids` finds
/// them: SIGTERM, `grace`, SIGKILL; then again for any they started
/// meanwhile. Returns how many were stopped. This process is never one.
pub fn stop_in_namespaces(namespaces: &[FileId], grace: Duration) -> Result<usize> {
    let wanted: HashSet<FileId> = namespaces.iter().copied().collect();
    let inside = |pid| net_ns(pid).is_some_and(|ns| wanted.contains(&ns));
    let mut stopped = 0;
    for _ in 0..=ROUNDS {
        let procs: Vec<Pidfd> = pids()
            .into_iter()
            .filter(|&pid| inside(pid))
            .filter_map(|pid| Pidfd::open_if(pid, inside))
            .collect();
        if procs.is_empty() {
            return Ok(stopped);
        }
        terminate(&procs, grace)?;
        stopped += procs.len();
    }
    bail!("processes in the lab's namespaces keep starting new ones ({stopped} stopped so far)")
}

/// Reads one line from `fd` within `timeout`; None at end of file.
pub fn read_line(fd: OwnedFd, timeout: Duration) -> Result<Option<String>> {
    use anyhow::Context;
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let mut file = fs::File::from(fd);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer within {} s", timeout.as_secs());
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("polling a pipe"),
        }
        let n = file.read(&mut buf).context("reading a pipe")?;
        if n == 0 {
            return Ok(None);
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A child running `script` under sh, killed and reaped when dropped.
    struct Sh(Child);

    impl Sh {
        fn start(script: &str) -> Sh {
            Sh(Command::new("sh").arg("-c").arg(script).spawn().unwrap())
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
        /// Once reaped by pid, its pid may be another's: never signal it.
        fn reaped(self) {
            std::mem::forget(self);
        }
    }

    impl Drop for Sh {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Waits until `pid`'s /proc/PID/status line `key` satisfies `ok`.
    fn until_status(pid: u32, key: &str, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .is_some_and(|v| ok(v.trim()))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("process {pid}: {key} never as wanted");
    }

    #[test]
    fn an_identity_names_one_process_and_a_wrong_start_time_none() {
        let sh = Sh::start("exec sleep 30");
        // After the exec: the executable is sleep's.
        until_status(sh.pid(), "Name:", |n| n == "sleep");
        let id = Identity::of(sh.pid()).unwrap();
        assert_eq!(id, Identity::of(sh.pid()).unwrap(), "stable");
        assert_ne!(Some(id.exe), own_exe());
        assert!(Pidfd::open(&id).is_some());
        let later = Identity {
            start: id.start + 1,
            ..id
        };
        assert!(!later.is_running());
        assert!(
            Pidfd::open(&later).is_none(),
            "a wrong start time opens nothing"
        );
        let other = Identity {
            exe: own_exe().unwrap(),
            ..id
        };
        assert!(
            Pidfd::open(&other).is_none(),
            "a wrong executable opens nothing"
        );
        assert!(Identity::of(u32::MAX / 2).is_none());
        assert_eq!(
            is_root(std::process::id()),
            nix::unistd::geteuid().is_root()
        );
        assert_eq!(cmdline(sh.pid()), [b"sleep".to_vec(), b"30".to_vec()]);
    }

    #[test]
    fn terminate_waits_by_pidfd_and_kills_what_ignores_sigterm() {
        let polite = Sh::start("exec sleep 30");
        let deaf = Sh::start("trap '' TERM; exec sleep 30");
        // SIGTERM (bit 15, mask 0x4000) ignored from the exec on.
        until_status(deaf.pid(), "SigIgn:", |m| {
            u64::from_str_radix(m, 16).is_ok_and(|m| m & 0x4000 != 0)
        });
        until_status(polite.pid(), "Name:", |n| n == "sleep");
        let p = Pidfd::open_if(polite.pid(), |_| true).unwrap();
        let t = Instant::now();
        terminate(std::slice::from_ref(&p), Duration::from_secs(2)).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "the wait ends at the exit, not after the grace: {:?}",
            t.elapsed()
        );
        assert!(p.exited());
        let d = Pidfd::open_if(deaf.pid(), |_| true).unwrap();
        let t = Instant::now();
        terminate(std::slice::from_ref(&d), Duration::from_millis(300)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(d.exited());
        // Both were reaped: their pids are gone from /proc.
        assert!(!Path::new(&format!("/proc/{}", polite.pid())).exists());
        assert!(!Path::new(&format!("/proc/{}", deaf.pid())).exists());
        polite.reaped();
        deaf.reaped();
    }

    #[test]
    fn a_check_that_fails_after_the_pidfd_is_open_opens_nothing() {
        let sh = Sh::start("exec sleep 30");
        assert!(Pidfd::open_if(sh.pid(), |_| false).is_none());
        assert!(Pidfd::open_if(u32::MAX / 2, |_| true).is_none());
        let p = Pidfd::open_if(sh.pid(), |_| true).unwrap();
        assert!(!p.exited());
        p.signal(libc::SIGKILL).unwrap();
        assert!(wait_exit(std::slice::from_ref(&p), Duration::from_secs(5)).is_empty());
        p.signal(libc::SIGTERM).unwrap();
        assert!(
            Pidfd::open_if(sh.pid(), |_| true).is_none(),
            "an exited process opens nothing"
        );
    }
}
