//! Down: removes a lab. It trusts only the ownership marks in the kernel:
//! a namespace is deleted only if its `lo` carries the lab's mark, so grelab
//! never removes what it did not create, and a lost record loses nothing.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::apply::pool;
use crate::dataplane;
use crate::netns;
use crate::process::{self, FileId};
use crate::rtnl;
use crate::state::{self, State};

/// The mark on each of `namespaces`' `lo` (None when unmarked or
/// unreadable: a namespace that vanished or is half made is no lab's).
pub fn marks(namespaces: Vec<String>) -> Result<Vec<(String, Option<String>)>> {
    let found: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());
    let jobs = namespaces.into_iter().map(|ns| (ns.clone(), ns)).collect();
    // Failures only mean "not marked": other namespaces come and go. A
    // mark is one short request: a thread reads many before another pays.
    let _unreadable = pool(
        jobs,
        32,
        false,
        || Ok(()),
        |(), ns| {
            let alias = rtnl::lo_alias()?;
            found
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .push((ns, alias));
            Ok(())
        },
    );
    Ok(found.into_inner().unwrap_or_default())
}

/// The grelab lab that owns namespace `ns`, if any.
pub fn owner(ns: &str) -> Result<Option<String>> {
    let m = marks(vec![ns.to_owned()])?;
    Ok(m.into_iter()
        .next()
        .and_then(|(_, a)| a)
        .and_then(|a| state::lab_of_mark(&a).map(str::to_owned)))
}

/// Labs found by their marks on the host's named namespaces.
pub fn marked_labs() -> Result<Vec<String>> {
    let mut labs: Vec<String> = marks(netns::list()?)?
        .into_iter()
        .filter_map(|(_, a)| a.and_then(|a| state::lab_of_mark(&a).map(str::to_owned)))
        .collect();
    labs.sort();
    labs.dedup();
    Ok(labs)
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    /// Namespaces named in the record but not carrying the lab's mark: left alone.
    pub skipped: Vec<String>,
    pub dataplane: bool,
    /// Processes that were still running in the lab's namespaces.
    pub processes: usize,
}

/// Stops every process still in one of `namespaces`, which would keep it
/// alive past its deletion; returns how many.
fn stop_processes(namespaces: &[&str]) -> Result<usize> {
    // Held open during the sweep, so each inode stays that namespace's.
    let files: Vec<std::fs::File> = namespaces
        .iter()
        .filter_map(|ns| netns::open(ns).ok())
        .collect();
    let ids: Vec<FileId> = files.iter().filter_map(FileId::of_file).collect();
    process::stop_in_namespaces(&ids, Duration::from_secs(2))
        .context("stopping the processes left in the lab's namespaces")
}

/// Removes lab `lab`: its dataplane, its marked namespaces, its record.
/// Keeps going past failures and reports them all.
pub fn remove_lab(lab: &str, record: Option<&State>) -> Result<Removed> {
    let mark = state::mark(lab);
    let mut removed = Removed::default();
    let mut failures = Vec::new();

    // By its identity (recorded, or left beside its spec), else by /proc.
    let dir = state::lab_dir(lab);
    for id in dataplane::find(&dir, record.and_then(|s| s.dataplane)) {
        match dataplane::stop(&id) {
            Ok(stopped) => removed.dataplane |= stopped,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }

    // With a record, check its namespaces; without, every namespace's mark.
    let candidates: Vec<String> = match record {
        Some(s) => s
            .plan
            .namespaces()
            .filter(|ns| netns::exists(ns))
            .map(str::to_owned)
            .collect(),
        None => netns::list()?,
    };
    let marked = marks(candidates)?;
    let ours: Vec<&str> = marked
        .iter()
        .filter(|(_, alias)| alias.as_deref() == Some(mark.as_str()))
        .map(|(ns, _)| ns.as_str())
        .collect();
    match stop_processes(&ours) {
        Ok(n) => removed.processes = n,
        Err(e) => failures.push(format!("{e:#}")),
    }
    for (ns, alias) in marked {
        if alias.as_deref() == Some(mark.as_str()) {
            match netns::delete(&ns) {
                Ok(()) => removed.namespaces.push(ns),
                Err(e) => failures.push(format!("{e:#}")),
            }
        } else if record.is_some() {
            removed.skipped.push(ns);
        }
    }
    if let Err(e) = state::remove(lab) {
        failures.push(format!("{e:#}"));
    }
    if failures.is_empty() {
        Ok(removed)
    } else {
        Err(anyhow!(
            "removing lab `{lab}` left problems: {}",
            failures.join("; ")
        ))
    }
}

/// `down` of one lab, under its lock. Ok(None) when the lab was not up.
pub fn down(lab: &str) -> Result<Option<Removed>> {
    let _lock = state::Lock::acquire(lab, Duration::from_secs(30))?;
    let record = match state::load(lab) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    };
    let removed = remove_lab(lab, record.as_ref())?;
    if record.is_none() && removed.namespaces.is_empty() && !removed.dataplane {
        return Ok(None);
    }
    Ok(Some(removed))
}
