//! Verify: proves a lab works. The file's checks plus derived ones (underlay
//! reachability, a ping each way across every tunnel, path MTU, and the
//! encapsulation seen on the wire), run concurrently, each in its node's
//! namespace; a check with `within` is retried until it passes. Imports `plan`, `topology`, `sys::netns`, `capture`, `wire`;
//! never changes the lab and never prints: `report` makes the text.

mod jobs;
pub mod ping;
pub mod report;

use std::time::{Duration, Instant};

use crate::check::report::{CheckResult, Status};
use crate::plan::Plan;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Add the derived checks to the file's.
    pub derived: bool,
    /// Only ping checks (what `up` runs at its end).
    pub only_ping: bool,
}

/// Runs the checks of `plan`, concurrently, and returns their results in order.
pub fn run(plan: &Plan, opts: Options) -> Vec<CheckResult> {
    let jobs = jobs::jobs(plan, opts);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|p| {
                s.spawn(move || {
                    let start = Instant::now();
                    let (status, summary, details) = match p.job {
                        Err(e) => (Status::Error, e, vec![]),
                        Ok(job) => jobs::execute(job, p.within),
                    };
                    CheckResult {
                        name: p.name,
                        kind: p.kind.to_owned(),
                        status,
                        duration: start.elapsed(),
                        summary,
                        details,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| CheckResult {
                    name: "?".into(),
                    kind: "?".into(),
                    status: Status::Error,
                    duration: Duration::ZERO,
                    summary: "the check panicked".into(),
                    details: vec![],
                })
            })
            .collect()
    })
}
