//! Which lab, which record and which namespace a command is about.

use anyhow::Result;

use crate::error::{self, bad_input};
use crate::lab::state::{self, State};

/// The lab a command is about: the one given, or the only one up.
pub(super) fn the_lab(lab: Option<String>) -> Result<String> {
    if let Some(lab) = lab {
        return Ok(state::check_lab(&lab)?.to_owned());
    }
    let labs = state::labs()?;
    match labs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(error::environment(
            "no lab is up; start one with `grelab up FILE`",
        )),
        many => Err(bad_input(format!(
            "several labs are up ({}); say which with --lab NAME",
            many.join(", ")
        ))),
    }
}

/// The record of lab `lab`, or exit 3 saying it is not up.
pub(super) fn record(lab: &str) -> Result<State> {
    state::load(lab)?
        .ok_or_else(|| error::environment(format!("lab `{lab}` is not up (see `grelab status`)")))
}

/// The record of lab `lab` once no change is under way: a change running
/// (it holds the lab's lock) is waited for; one a crash stopped is an error
/// saying how to finish it.
pub(super) fn settled_record(lab: &str) -> Result<State> {
    let s = record(lab)?;
    if s.pending.is_none() {
        return Ok(s);
    }
    eprintln!("lab `{lab}` is changing: waiting for the change to finish ...");
    drop(state::Lock::acquire(
        lab,
        std::time::Duration::from_secs(60),
    )?);
    let s = record(lab)?;
    if s.pending.is_some() {
        return Err(error::environment(format!(
            "lab `{lab}` was stopped in the middle of a change: `grelab up` finishes it, \
             `grelab down` removes the lab"
        )));
    }
    Ok(s)
}

/// The namespace of `node` in lab `lab` (default: the only lab up).
pub(super) fn node_ns(lab: Option<String>, node: &str) -> Result<String> {
    let lab = the_lab(lab)?;
    let s = record(&lab)?;
    s.trust();
    s.plan.ns_of(node).map(str::to_owned).ok_or_else(|| {
        bad_input(format!(
            "lab `{lab}` has no node `{node}`; nodes: {}",
            s.plan.node_names()
        ))
    })
}
