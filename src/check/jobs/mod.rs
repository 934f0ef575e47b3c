//! Verify's jobs: the plan's checks resolved into jobs (`resolve`), and one
//! file per kind of check that runs its job and judges the outcome.

mod encap;
mod exec;
mod mtu;
mod ping;
mod resolve;
mod route;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;

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
        timeout: Duration,
        /// Between requests (default: ping's).
        interval: Option<Duration>,
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
        sources: Vec<(IpAddr, String)>,
    },
    Exec {
        ns: String,
        lab: String,
        node: String,
        cmd: Vec<String>,
        exit: i32,
        timeout: Duration,
    },
}

type Outcome = (Status, String, Vec<String>);

fn pass(summary: String, details: Vec<String>) -> Outcome {
    (Status::Pass, summary, details)
}

fn fail(summary: String, details: Vec<String>) -> Outcome {
    (Status::Fail, summary, details)
}

/// Runs one job and judges it.
pub(super) fn execute(job: Job) -> Result<Outcome> {
    match job {
        Job::Ping {
            ns,
            to,
            count,
            expect,
            timeout,
            interval,
        } => ping::check(&ns, to, count, expect, (timeout, interval)),
        Job::Mtu {
            ns,
            to,
            mtu,
            timeout,
        } => mtu::check(&ns, to, mtu, timeout),
        Job::Encap(probe) => encap::check(probe),
        Job::Route {
            ns,
            to,
            dev,
            sources,
        } => route::check(&ns, to, dev, sources),
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
    }
}
