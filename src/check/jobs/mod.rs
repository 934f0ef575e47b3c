//! Verify's jobs: the plan's checks resolved into jobs (`resolve`), one
//! file per kind of check that runs its job and judges the outcome, and
//! the retrying of a check that has a `within` (here).

mod encap;
mod exec;
mod mtu;
mod multicast;
mod ping;
mod resolve;
mod route;
mod tcp;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(super) use self::resolve::jobs;
use crate::check::report::Status;
use crate::sys::netns;
use crate::topology::Expect;

/// A check resolved against the plan: namespaces and addresses known.
#[derive(Debug, Clone)]
pub(super) enum Job {
    Ping {
        ns: String,
        to: IpAddr,
        count: u32,
        expect: Expect,
        interval: Duration,
        timeout: Duration,
    },
    Mtu {
        ns: String,
        to: IpAddr,
        mtu: u32,
        timeout: Duration,
    },
    Encap(encap::Probe),
    Route {
        ns: String,
        to: IpAddr,
        dev: String,
    },
    Exec {
        ns: String,
        lab: String,
        node: String,
        cmd: Vec<String>,
        exit: i32,
        timeout: Duration,
    },
    Tcp {
        ns: String,
        to: IpAddr,
        port: u16,
        timeout: Duration,
    },
    Multicast(multicast::Probe),
}

impl Job {
    /// The job with its per-attempt timeout cut to `cap`, so an attempt
    /// never runs past its check's `within`.
    fn capped(mut self, cap: Duration) -> Job {
        let t = match &mut self {
            Job::Ping { timeout, .. }
            | Job::Mtu { timeout, .. }
            | Job::Exec { timeout, .. }
            | Job::Tcp { timeout, .. } => timeout,
            Job::Encap(p) => &mut p.timeout,
            Job::Multicast(p) => &mut p.timeout,
            Job::Route { .. } => return self,
        };
        *t = (*t).min(cap);
        self
    }
}

type Outcome = (Status, String, Vec<String>);

fn pass(summary: String, details: Vec<String>) -> Outcome {
    (Status::Pass, summary, details)
}

fn fail(summary: String, details: Vec<String>) -> Outcome {
    (Status::Fail, summary, details)
}

/// The shortest attempt a `within` still starts: less cannot see anything.
const MIN_ATTEMPT: Duration = Duration::from_millis(10);
/// The pause between attempts, first and longest: short at first, so a
/// check passes soon after its condition appears; longer later, so a slow
/// convergence is not hammered.
const PAUSE: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));

/// Runs one job and judges it: once, or (`within`) again and again until it
/// passes or the time runs out; then the last attempt's outcome says what
/// was seen.
pub(super) fn execute(job: Job, within: Option<Duration>) -> Outcome {
    let Some(within) = within else {
        return attempt(job);
    };
    let start = Instant::now();
    let deadline = start + within;
    let mut pause = PAUSE.0;
    let mut n = 0;
    loop {
        n += 1;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_ATTEMPT);
        let (status, summary, details) = attempt(job.clone().capped(left));
        let took = start.elapsed();
        if status == Status::Pass {
            let when = if n == 1 {
                String::new()
            } else {
                format!(" (attempt {n}, after {})", ms(took))
            };
            return (status, format!("{summary}{when}"), details);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let summary = format!(
                "still failing after {} ({n} attempt{}); last: {summary}",
                ms(took),
                if n == 1 { "" } else { "s" }
            );
            return (status, summary, details);
        }
        // The last pause ends at the deadline, for one more attempt.
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(PAUSE.1);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// One attempt of a job.
fn attempt(job: Job) -> Outcome {
    let r = match job {
        Job::Ping {
            ns,
            to,
            count,
            expect,
            interval,
            timeout,
        } => ping::check(&ns, to, count, expect, interval, timeout),
        Job::Mtu {
            ns,
            to,
            mtu,
            timeout,
        } => mtu::check(&ns, to, mtu, timeout),
        Job::Encap(probe) => encap::check(probe),
        Job::Route { ns, to, dev } => route::check(&ns, to, dev),
        Job::Exec {
            ns,
            lab,
            node,
            cmd,
            exit,
            timeout,
        } => netns::run_in(&ns, move || {
            // In the node's view (this thread is the check's own, so its
            // namespaces may change).
            let command = crate::lab::keeper::node_command(&lab, &node, &cmd)?;
            exec::exec(command, &cmd, exit, timeout)
        }),
        Job::Tcp {
            ns,
            to,
            port,
            timeout,
        } => tcp::check(&ns, to, port, timeout),
        Job::Multicast(probe) => multicast::check(probe),
    };
    r.unwrap_or_else(|e| (Status::Error, format!("{e:#}"), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose namespace does not exist: every attempt is an error.
    fn doomed() -> Job {
        Job::Tcp {
            ns: "grelab-checks-no-such-namespace".into(),
            to: "192.0.2.1".parse().unwrap(),
            port: 80,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_check_that_never_passes_is_retried_until_within_runs_out() {
        let start = Instant::now();
        let (status, summary, _) = execute(doomed(), Some(Duration::from_millis(300)));
        let took = start.elapsed();
        assert_eq!(status, Status::Error, "{summary}");
        assert!(summary.starts_with("still failing after"), "{summary}");
        assert!(summary.contains("no-such-namespace"), "{summary}");
        let n: u32 = summary
            .split_once(" (")
            .and_then(|(_, r)| r.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{summary}"));
        // Pauses of 20, 40, 80, 160 ms, the last cut to the deadline.
        assert!((4..=6).contains(&n), "{n} attempts: {summary}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }

    #[test]
    fn without_within_a_check_runs_once() {
        let (status, summary, _) = execute(doomed(), None);
        assert_eq!(status, Status::Error);
        assert!(!summary.contains("attempt"), "{summary}");
    }

    #[test]
    fn an_attempt_never_outlasts_what_is_left_of_within() {
        let Job::Tcp { timeout, .. } = doomed().capped(Duration::from_millis(50)) else {
            unreachable!()
        };
        assert_eq!(timeout, Duration::from_millis(50));
        let Job::Tcp { timeout, .. } = doomed().capped(Duration::from_secs(60)) else {
            unreachable!()
        };
        assert_eq!(timeout, Duration::from_secs(5));
    }
}
