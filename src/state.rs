//! Lab state: one record per lab under /run/grelab/<lab>/, written
//! atomically, and a lock so two `up`/`down` of one lab never interleave.
//!
//! The record is a convenience, not the truth: every namespace grelab makes
//! carries an ownership mark (the alias `grelab:<lab>` on its `lo`), so a lab
//! can be found and removed even when its record is lost.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Where lab records live (tmpfs, so a reboot, which removes every
/// namespace, removes the records too).
pub const STATE_DIR: &str = "/run/grelab";

/// The ownership mark put on every interface of a lab.
pub fn mark(lab: &str) -> String {
    format!("grelab:{lab}")
}

/// The lab a mark names, if it is a grelab mark.
pub fn lab_of_mark(alias: &str) -> Option<&str> {
    alias.strip_prefix("grelab:")
}

/// The directory of lab `lab`.
pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(STATE_DIR).join(lab)
}

/// What `up` built, as recorded for `verify`, `status` and `down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The plan that was applied (checks, tunnels, namespaces).
    pub plan: Plan,
    /// The topology file it came from, if any.
    pub source: Option<PathBuf>,
    /// Digest of the plan, to tell an unchanged file from a changed one.
    pub digest: String,
    /// Seconds since the epoch when the lab came up.
    pub created: u64,
    /// The userspace dataplane process, when some tunnel uses it (records
    /// from before identities name only `dataplane_pid`: read as none, and
    /// `down` looks for the dataplane as without a record).
    #[serde(default)]
    pub dataplane: Option<crate::process::Identity>,
    /// Tunnel ends and the backend that built each: (namespace, device, backend).
    pub backends: Vec<(String, String, String)>,
}

/// A digest of a plan: equal plans, equal digests.
pub fn digest(plan: &Plan) -> String {
    let json = serde_json::to_vec(plan).unwrap_or_default();
    format!("{:016x}", crate::plan::fnv1a(json))
}

/// Reads lab `lab`'s record: Ok(None) when there is none.
pub fn load(lab: &str) -> Result<Option<State>> {
    let path = lab_dir(lab).join("state.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "the record {} is corrupt (grelab down still finds the lab by its marks)",
            path.display()
        )
    })
}

/// Writes lab state atomically: temporary file, rename. No fsync: the
/// record describes namespaces, which a power loss removes too.
pub fn save(state: &State) -> Result<()> {
    let dir = lab_dir(&state.plan.lab);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join("state.json.tmp");
    let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(state)?)?;
    fs::rename(&tmp, dir.join("state.json")).context("renaming the lab record into place")?;
    Ok(())
}

/// Removes lab `lab`'s directory.
pub fn remove(lab: &str) -> Result<()> {
    match fs::remove_dir_all(lab_dir(lab)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", lab_dir(lab).display()))
        }
        _ => Ok(()),
    }
}

/// Names of the labs that have a record, sorted.
pub fn labs() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let dir = match fs::read_dir(STATE_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {STATE_DIR}")),
    };
    for entry in dir {
        let entry = entry?;
        // Lab names never start with `.`; `.locks` is not a lab.
        if entry.file_type()?.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// An exclusive lock on one lab, held until dropped.
pub struct Lock {
    _flock: Flock<File>,
}

impl Lock {
    /// Takes lab `lab`'s lock, waiting up to `wait` for another grelab.
    pub fn acquire(lab: &str, wait: Duration) -> Result<Lock> {
        let locks = Path::new(STATE_DIR).join(".locks");
        fs::create_dir_all(&locks).with_context(|| {
            format!(
                "creating {}: grelab needs root to manage labs",
                locks.display()
            )
        })?;
        let path = locks.join(lab);
        let deadline = Instant::now() + wait;
        let mut said = false;
        loop {
            let file =
                File::create(&path).with_context(|| format!("opening {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(Lock { _flock: flock }),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    if !said {
                        eprintln!("waiting for another grelab working on lab `{lab}` ...");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => {
                    return Err(crate::error::environment(format!(
                        "lab `{lab}` is busy: another grelab holds {} ({e}); try again when it is done",
                        path.display()
                    )));
                }
            }
        }
    }
}
