//! Down: removes a lab. It deletes the namespaces the lab's journal proves
//! it created (their identity matches), and the placeholder files a crash
//! left; a namespace of the same name that is someone else's stays. Without
//! journal or record (state deleted by hand) the ownership marks are the
//! fallback: a namespace whose `lo` carries the lab's mark.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::dataplane;
use crate::lab::journal;
use crate::sys::netns::{self, Found};
use crate::sys::pool::{Options, pool};
use crate::sys::process::{self, FileId};

use crate::lab::state::{self, Mark, State};
use crate::sys::rtnl;

/// The mark on each of `namespaces`' `lo` (None when unmarked or
/// unreadable: a namespace that vanished or is half made is no lab's).
pub fn marks(namespaces: Vec<String>) -> Result<Vec<(String, Option<String>)>> {
    let found: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());
    let jobs = namespaces.into_iter().map(|ns| (ns.clone(), ns)).collect();
    // Failures only mean "not marked": other namespaces come and go. A
    // mark is one short request: a thread reads many before another pays.
    let options = Options {
        per_thread: 32,
        stop_on_error: false,
        done: None,
    };
    let _unreadable = pool(
        jobs,
        options,
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

/// The grelab lab whose mark namespace `ns` carries, if any.
pub fn owner(ns: &str) -> Result<Option<String>> {
    let m = marks(vec![ns.to_owned()])?;
    Ok(m.into_iter()
        .next()
        .and_then(|(_, a)| match state::parse_mark(a.as_deref()?) {
            Mark::Lab(lab) => Some(lab.to_owned()),
            _ => None,
        }))
}

/// Labs found by their marks on the host's named namespaces. A mark whose
/// name breaks the lab-name rule (forged, or corrupt) is ignored, with a
/// warning naming its namespace.
pub fn marked_labs() -> Result<Vec<String>> {
    let mut labs = Vec::new();
    for (ns, alias) in marks(netns::list()?)? {
        match alias.as_deref().map(state::parse_mark) {
            Some(Mark::Lab(lab)) => labs.push(lab.to_owned()),
            Some(Mark::Invalid(name)) => eprintln!(
                "warning: namespace `{ns}` carries a grelab mark naming `{name}`, which is no \
                 valid lab name: ignored (grelab did not make it so; it is left alone)"
            ),
            _ => {}
        }
    }
    labs.sort();
    labs.dedup();
    Ok(labs)
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    /// Empty namespace files a crash left (between creating and mounting,
    /// or unmounting and removing).
    pub placeholders: Vec<String>,
    /// Namespaces of the lab's names that are not the lab's (another
    /// identity, or no mark): left alone.
    pub skipped: Vec<String>,
    pub dataplane: bool,
    /// The keeper of the nodes' programs (and so every program) was stopped.
    pub keeper: bool,
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

/// Removes namespaces `names` of a running lab, each only if it is the one
/// `identities` recorded (a reconcile removing nodes), after ending the
/// processes left in them. One that is gone already is fine.
pub(crate) fn remove_namespaces(
    names: &[&str],
    identities: &[(String, crate::sys::netns::NsId)],
) -> Result<()> {
    let mut ours = Vec::new();
    for ns in names {
        let want = identities.iter().find(|(n, _)| n == ns).map(|(_, id)| *id);
        match netns::inspect(ns)? {
            Found::Absent => {}
            Found::Namespace(id) if Some(id) == want => ours.push(*ns),
            // A crash between unmounting and removing it.
            Found::Placeholder(_) if want.is_some() => netns::delete(ns)?,
            _ => {
                eprintln!("warning: namespace `{ns}` is not the one the lab created: left alone")
            }
        }
    }
    stop_processes(&ours)?;
    for ns in ours {
        netns::delete(ns)?;
    }
    Ok(())
}

/// Removes lab `lab`: its dataplane, its marked namespaces, its record.
/// Keeps going past failures and reports them all.
pub fn remove_lab(lab: &str, record: Option<&State>) -> Result<Removed> {
    state::check_lab(lab)?;
    let mark = state::mark(lab);
    let mut removed = Removed::default();
    let mut failures = Vec::new();

    // The programs first: they may hold the namespaces and the devices.
    // By the identity recorded, or left beside the keeper's spec.
    let keeper = record.and_then(|s| s.keeper).or_else(|| {
        state::LabDir::open(lab)
            .ok()
            .flatten()
            .and_then(|d| crate::lab::keeper::recorded(&d))
    });
    if let Some(id) = keeper {
        match crate::lab::keeper::stop(&id) {
            Ok(stopped) => removed.keeper = stopped,
            Err(e) => failures.push(e),
        }
    }

    // By its identity (recorded, or left beside its spec), else by /proc.
    let dir = state::lab_dir(lab);
    for id in dataplane::find(&dir, record.and_then(|s| s.dataplane)) {
        match dataplane::stop(&id) {
            Ok(stopped) => removed.dataplane |= stopped,
            Err(e) => failures.push(e),
        }
    }

    let dir = state::LabDir::open(lab)?;
    let journal = match &dir {
        Some(d) => journal::read(d)?,
        None => Default::default(),
    };
    // The lab's namespaces, and the placeholders a crash left: by what the
    // journal proves.
    let mut doomed: Vec<String> = Vec::new();
    for (ns, owned) in &journal {
        match netns::inspect(ns) {
            Ok(Found::Absent) => {}
            Ok(Found::Namespace(id)) if owned.has_namespace(id) => doomed.push(ns.clone()),
            Ok(Found::Placeholder(id)) if owned.has_placeholder(id) => match netns::delete(ns) {
                Ok(()) => removed.placeholders.push(ns.clone()),
                Err(e) => failures.push(e),
            },
            Ok(_) => removed.skipped.push(ns.clone()),
            Err(e) => failures.push(e),
        }
    }
    // What the journal cannot prove, by the marks: a record's namespaces
    // the journal does not name (made by an older grelab) and, with
    // neither record nor journal, every namespace.
    let candidates: Vec<String> = match record {
        Some(s) => s
            .plan
            .namespaces()
            .filter(|ns| !journal.contains_key(*ns) && netns::exists(ns))
            .map(str::to_owned)
            .collect(),
        None if journal.is_empty() => netns::list()?,
        None => Vec::new(),
    };
    for (ns, alias) in marks(candidates)? {
        if alias.as_deref() == Some(mark.as_str()) {
            doomed.push(ns);
        } else if record.is_some() {
            removed.skipped.push(ns);
        }
    }
    let doomed_refs: Vec<&str> = doomed.iter().map(String::as_str).collect();
    match stop_processes(&doomed_refs) {
        Ok(n) => removed.processes = n,
        Err(e) => failures.push(e),
    }
    for ns in doomed {
        match netns::delete(&ns) {
            Ok(()) => removed.namespaces.push(ns),
            Err(e) => failures.push(e),
        }
    }
    // Kept while something is left, so that `down` again can finish.
    if failures.is_empty()
        && let Some(d) = dir
        && let Err(e) = d.remove()
    {
        failures.push(e);
    }
    if failures.is_empty() {
        Ok(removed)
    } else {
        Err(Failures {
            lab: lab.to_owned(),
            failures,
        }
        .into())
    }
}

/// What `down` could not undo: every failure, in the order met, since it
/// keeps going past each.
#[derive(Debug)]
pub(crate) struct Failures {
    pub(crate) lab: String,
    pub(crate) failures: Vec<anyhow::Error>,
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "removing lab `{}` left problems: ", self.lab)?;
        for (i, e) in self.failures.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{e:#}")?;
        }
        Ok(())
    }
}

/// No source: as one failure of the operation it exits 1, whatever
/// its parts' own codes.
impl std::error::Error for Failures {}

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
    if record.is_none()
        && removed.namespaces.is_empty()
        && removed.placeholders.is_empty()
        && !removed.dataplane
        && !removed.keeper
    {
        return Ok(None);
    }
    Ok(Some(removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error;

    #[test]
    fn failures_are_kept_apart_and_shown_as_one_line() {
        let failures = vec![
            anyhow!("no such file").context("deleting namespace `a`"),
            error::environment("permission denied"),
        ];
        let err: anyhow::Error = Failures {
            lab: "lab1".into(),
            failures,
        }
        .into();
        let f = err.downcast_ref::<Failures>().expect("the list, typed");
        assert_eq!(f.failures.len(), 2);
        // The text of the string this list replaced.
        assert_eq!(
            format!("{err:#}"),
            "removing lab `lab1` left problems: deleting namespace `a`: no such file; \
             permission denied"
        );
        assert_eq!(error::exit_code(&err), 1);
    }
}
