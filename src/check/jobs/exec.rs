//! The exec check: a command run in a node's namespace exits as expected
//! within its timeout; the end of its output is kept for the report.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Outcome, fail, pass};

/// Bytes of each output stream of an exec check kept for the report: the end.
const TAIL: usize = 16 << 10;
/// How long an exec check's output is still read once its process has
/// ended: a background child holding the pipes open must not hold verify.
const DRAIN: Duration = Duration::from_millis(100);

/// Runs `cmd` in the calling thread's namespace for at most `timeout` and
/// judges its exit code against `exit`. Its output is read while it runs
/// (a full pipe would stall it), and the end of each stream is kept.
pub(super) fn exec(
    mut command: std::process::Command,
    cmd: &[String],
    exit: i32,
    timeout: Duration,
) -> Result<Outcome> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout also ends what it started.
        .process_group(0)
        .spawn()
        .with_context(|| format!("running `{}`", cmd[0]))?;
    let mut streams = [
        Stream::new(
            child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
            "stdout",
        ),
        Stream::new(
            child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
            "stderr",
        ),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            // The group is the one spawn made: its leader is not reaped
            // yet, so the id cannot name another group.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        // Short waits: the process's end is seen by polling it.
        read_ready(
            &mut streams,
            (deadline - now).min(Duration::from_millis(10)),
        );
    };
    let drained = Instant::now() + DRAIN;
    while streams.iter().any(|s| s.pipe.is_some()) {
        let left = drained.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        read_ready(&mut streams, left);
    }
    let details: Vec<String> = streams.iter().flat_map(Stream::lines).collect();
    let Some(status) = status else {
        return Ok(fail(format!("timed out after {timeout:?}"), details));
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) if code == exit => pass(format!("exited {code}"), details),
        (Some(code), _) => fail(format!("exited {code}, expected {exit}"), details),
        (None, sig) => fail(
            format!(
                "killed by signal {}, expected exit {exit}",
                sig.unwrap_or_default()
            ),
            details,
        ),
    })
}

/// One output pipe of an exec check and the end of what came through it.
struct Stream {
    /// Closed at its end, or once the check is over.
    pipe: Option<File>,
    name: &'static str,
    tail: Vec<u8>,
    /// Bytes read and not kept.
    cut: usize,
}

impl Stream {
    fn new(pipe: Option<File>, name: &'static str) -> Stream {
        Stream {
            pipe,
            name,
            tail: Vec::new(),
            cut: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        // Trimmed now and then, not at every read.
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
            self.cut += cut;
        }
    }

    /// The kept lines, after a line saying how much was cut, if any.
    fn lines(&self) -> Vec<String> {
        let mut text = &self.tail[self.tail.len().saturating_sub(TAIL)..];
        let mut cut = self.cut + (self.tail.len() - text.len());
        if cut > 0
            && let Some(i) = text.iter().position(|&b| b == b'\n')
        {
            // From the first whole line.
            cut += i + 1;
            text = &text[i + 1..];
        }
        let mut out = Vec::new();
        if cut > 0 {
            out.push(format!("... {cut} bytes of {} not kept", self.name));
        }
        out.extend(String::from_utf8_lossy(text).lines().map(str::to_owned));
        out
    }
}

/// Waits up to `wait` for output on the open pipes and reads what came.
fn read_ready(streams: &mut [Stream], wait: Duration) {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let ms = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
    let ready: Vec<bool> = {
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter_map(|s| s.pipe.as_ref())
            .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        if poll(&mut fds, ms).is_err() {
            return; // EINTR: the caller's loop comes back
        }
        fds.iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect()
    };
    let mut buf = [0u8; 64 << 10];
    let open = streams.iter_mut().filter(|s| s.pipe.is_some());
    for (s, _) in open.zip(ready).filter(|(_, r)| *r) {
        // Readable (or at its end): one read does not block.
        match s.pipe.as_mut().map(|p| p.read(&mut buf)) {
            Some(Ok(0)) | Some(Err(_)) | None => s.pipe = None,
            Some(Ok(n)) => s.push(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    /// `cmd` as a command of the calling thread's namespaces.
    fn command(cmd: &[String]) -> std::process::Command {
        let mut c = std::process::Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        c
    }
    use super::*;
    use crate::check::report::Status;

    /// Runs `sh -c script` as an exec check on a thread of its own, and
    /// fails the test if it has not ended within `limit` (not hangs).
    fn exec_within(
        script: &str,
        exit: i32,
        timeout: Duration,
        limit: Duration,
    ) -> (Outcome, Duration) {
        let cmd: Vec<String> = vec!["sh".into(), "-c".into(), script.into()];
        let (tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(exec(command(&cmd), &cmd, exit, timeout));
        });
        let out = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("`{script}` did not end within {limit:?}"))
            .expect("the check runs");
        (out, start.elapsed())
    }

    /// The pid a script printed as its first line (`echo $!`): a process
    /// this test started.
    fn printed_pid(out: &Outcome) -> Option<nix::unistd::Pid> {
        let pid = out.2.first()?.trim().parse().ok()?;
        Some(nix::unistd::Pid::from_raw(pid))
    }

    /// Whether `pid` runs a `sleep` (not a zombie): the one the test started.
    fn sleeping(pid: nix::unistd::Pid) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.contains("(sleep)") && !stat.contains(") Z ")
    }

    #[test]
    fn an_exec_check_printing_a_mebibyte_passes_promptly() {
        let (out, took) = exec_within(
            "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo last line; echo on stderr >&2",
            0,
            Duration::from_secs(10),
            Duration::from_secs(11),
        );
        let (status, summary, details) = &out;
        assert_eq!((*status, summary.as_str()), (Status::Pass, "exited 0"));
        assert!(took < Duration::from_secs(2), "took {took:?}");
        // A bounded tail of each stream is kept, saying what was cut.
        let kept: usize = details.iter().map(String::len).sum();
        assert!(kept < 40 << 10, "{kept} bytes of details kept");
        assert!(
            details[0].contains("bytes of stdout not kept"),
            "{}",
            details[0]
        );
        assert!(details.iter().any(|l| l == "last line"), "{details:?}");
        assert_eq!(details.last().map(String::as_str), Some("on stderr"));
    }

    #[test]
    fn an_exec_check_leaving_a_background_child_ends_with_its_result() {
        let timeout = Duration::from_secs(3);
        let (out, took) = exec_within(
            "sleep 300 & echo $!; exit 3",
            3,
            timeout,
            timeout + Duration::from_secs(1),
        );
        let pid = printed_pid(&out);
        if let Some(pid) = pid.filter(|p| sleeping(*p)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        assert!(pid.is_some(), "{out:?}");
        assert_eq!(
            (out.0, out.1.as_str()),
            (Status::Pass, "exited 3"),
            "{out:?}"
        );
        assert!(took < timeout, "took {took:?}");
    }

    #[test]
    fn an_exec_check_past_its_timeout_is_killed_with_its_children() {
        let timeout = Duration::from_millis(500);
        let (out, took) = exec_within(
            "sleep 300 & echo $!; wait",
            0,
            timeout,
            timeout + Duration::from_secs(1),
        );
        assert_eq!(out.0, Status::Fail, "{out:?}");
        assert!(out.1.contains("timed out after 500ms"), "{out:?}");
        assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
        let pid = printed_pid(&out).unwrap_or_else(|| panic!("no pid in {out:?}"));
        let deadline = Instant::now() + Duration::from_secs(1);
        while sleeping(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = sleeping(pid);
        if left {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        assert!(
            !left,
            "the check's background sleep {pid} outlived its timeout"
        );
    }
}
