//! Lab state: one directory per lab under /run/grelab/<lab>/ holding the
//! record (state.json), the namespace journal and the dataplane's files, and
//! a lock per lab so two `up`/`down` of one lab never interleave.
//!
//! grelab runs as root, so every lab name is checked against one rule before
//! it becomes a path, and every file is opened relative to a directory handle
//! that was checked (owned by root, writable by root only, not a symlink),
//! without following symlinks, with fixed modes whatever the umask.
//!
//! The record is a convenience, not the truth: the journal proves which
//! namespaces a lab created (`journal`), and every namespace carries an
//! ownership mark (the alias `grelab:<lab>` on its `lo`), the fallback when
//! the state is lost.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use crate::error;
use crate::model::Backend;
use crate::plan::Plan;
use crate::sys::netns::NsId;

/// Where lab state lives (tmpfs, so a reboot, which removes every
/// namespace, removes the records too). `GRELAB_STATE_DIR` moves it, for
/// tests and for side-by-side installs.
pub fn state_dir() -> PathBuf {
    std::env::var_os("GRELAB_STATE_DIR").map_or_else(|| "/run/grelab".into(), PathBuf::from)
}

/// The longest lab name: a 32-byte prefix and a 32-byte name.
pub const MAX_LAB_NAME: usize = 64;

/// Why `name` cannot name a lab, if it cannot: the one rule for `--lab`,
/// `--prefix` + the file's name, the name in a mark and in a record.
pub fn lab_name_problem(name: &str) -> Option<String> {
    crate::validate::name_problem("lab name", name, MAX_LAB_NAME)
}

/// `name` if it can name a lab, else a bad-input error (exit 2).
pub fn check_lab(name: &str) -> Result<&str> {
    match lab_name_problem(name) {
        None => Ok(name),
        Some(p) => Err(error::bad_input(format!(
            "{p}; `grelab status` lists the labs that are up"
        ))),
    }
}

/// The ownership mark put on every interface of a lab.
pub fn mark(lab: &str) -> String {
    format!("grelab:{lab}")
}

/// What an interface alias says about ownership.
#[derive(Debug, PartialEq, Eq)]
pub enum Mark<'a> {
    /// Not a grelab mark.
    Foreign,
    /// The mark of lab `.0`.
    Lab(&'a str),
    /// A grelab mark whose name breaks the lab-name rule: forged or corrupt.
    Invalid(&'a str),
}

/// Reads an alias as a mark.
pub fn parse_mark(alias: &str) -> Mark<'_> {
    match alias.strip_prefix("grelab:") {
        None => Mark::Foreign,
        Some(lab) if lab_name_problem(lab).is_none() => Mark::Lab(lab),
        Some(lab) => Mark::Invalid(lab),
    }
}

/// The directory of lab `lab`, for messages and for the dataplane's files
/// (`lab` is checked by whoever made it: see [`LabDir`]).
pub fn lab_dir(lab: &str) -> PathBuf {
    state_dir().join(lab)
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
    pub dataplane: Option<crate::sys::process::Identity>,
    /// The keeper of the nodes' programs and views, when a node has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper: Option<crate::sys::process::Identity>,
    /// Tunnel ends and the backend that built each.
    pub backends: Vec<EndBackend>,
    /// Each namespace's identity as created, from the journal: `exec`,
    /// `verify` and `capture` act only in these.
    #[serde(default)]
    pub identities: Vec<(String, NsId)>,
    /// The plan a reconcile is taking the lab to, until it is done: the lab
    /// is `plan`, this one, or a known point between (see `reconcile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Plan>,
}

/// A tunnel end and the backend that built it (kernel or userspace, never
/// auto). Recorded as `[namespace, device, backend]`, as records always were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, String, Backend)", into = "(String, String, Backend)")]
pub struct EndBackend {
    pub namespace: String,
    pub device: String,
    pub backend: Backend,
}

impl From<(String, String, Backend)> for EndBackend {
    fn from((namespace, device, backend): (String, String, Backend)) -> Self {
        EndBackend {
            namespace,
            device,
            backend,
        }
    }
}

impl From<EndBackend> for (String, String, Backend) {
    fn from(e: EndBackend) -> Self {
        (e.namespace, e.device, e.backend)
    }
}

impl State {
    /// The lab's namespaces that are gone or were replaced (another
    /// identity than the one created; by name alone for a record of an
    /// older grelab, which kept none).
    pub fn missing(&self) -> Vec<&str> {
        let ids: std::collections::HashMap<&str, &crate::sys::netns::NsId> = self
            .identities
            .iter()
            .map(|(n, id)| (n.as_str(), id))
            .collect();
        self.plan
            .namespaces()
            .filter(|ns| match ids.get(ns) {
                Some(id) => {
                    crate::sys::netns::inspect(ns).ok()
                        != Some(crate::sys::netns::Found::Namespace(**id))
                }
                None => !crate::sys::netns::exists(ns),
            })
            .collect()
    }

    /// Whether every namespace of the lab is there, as created.
    pub fn intact(&self) -> bool {
        self.missing().is_empty()
    }

    /// From now on this process enters the lab's namespaces only if they
    /// are the ones created (`exec`, `verify`, `capture`).
    pub fn trust(&self) {
        for (ns, id) in &self.identities {
            crate::sys::netns::trust(ns, *id);
        }
    }
}

/// A digest of a plan: equal plans, equal digests.
pub fn digest(plan: &Plan) -> String {
    let json = serde_json::to_vec(plan).unwrap_or_default();
    format!("{:016x}", crate::plan::fnv1a(json))
}

const RECORD: &str = "state.json";

/// Reads lab `lab`'s record: Ok(None) when there is none.
pub fn load(lab: &str) -> Result<Option<State>> {
    let Some(dir) = LabDir::open(lab)? else {
        return Ok(None);
    };
    let Some(bytes) = dir.read(RECORD)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "the record {} is corrupt (grelab down still finds the lab by its journal and marks)",
            dir.path().join(RECORD).display()
        )
    })
}

/// Writes lab state atomically (temporary file, rename). No fsync: the
/// record describes namespaces, which a power loss removes too. Compact:
/// a large lab's record is megabytes, written twice by a reconcile.
pub fn save(state: &State) -> Result<()> {
    LabDir::create(&state.plan.lab)?.write(RECORD, &serde_json::to_vec(state)?)
}

/// Names of the labs that have a state directory, sorted. Entries that
/// break the lab-name rule are no lab of grelab's: skipped with a warning.
pub fn labs() -> Result<Vec<String>> {
    let Some(root) = open_root(false)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in entries(&root)? {
        let Some(name) = name.to_str() else { continue };
        // `.locks` is not a lab, and never matches the rule.
        if name.starts_with('.') {
            continue;
        }
        if lab_name_problem(name).is_some() {
            eprintln!(
                "warning: {} holds `{name}`, which is no lab's name: ignored",
                state_dir().display()
            );
            continue;
        }
        out.push(name.to_owned());
    }
    out.sort();
    Ok(out)
}

/// A state directory entry's metadata, checked: owned by root and not
/// writable by group or others (what grelab trusts enough to act on as
/// root), of the expected type.
fn check_trusted(st: &FileStat, kind: SFlag, path: &Path) -> Result<()> {
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let problem = if fmt != kind {
        Some("is not a regular file or directory as expected")
    } else if st.st_uid != 0 {
        Some("is not owned by root")
    } else if st.st_mode & 0o022 != 0 {
        Some("is writable by group or others")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(error::environment(format!(
            "{} {p}: grelab will not trust it as root; remove it (or fix its owner and mode: \
             root, 0755 for directories, 0644 for files) and run the command again",
            path.display()
        ))),
    }
}

/// Opens directory `name` in `parent` (absolute when `parent` is None)
/// without following a symlink, creating it (mode 0755) if asked, and
/// checks it.
fn open_dir(
    parent: Option<&OwnedFd>,
    name: &Path,
    shown: &Path,
    create: bool,
) -> Result<Option<OwnedFd>> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let at = |flags| match parent {
        Some(p) => openat(p, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    };
    let fd = match at(flags) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if create => {
            let made = match parent {
                Some(p) => mkdirat(p, name, Mode::from_bits_truncate(0o755)),
                None => mkdirat(nix::fcntl::AT_FDCWD, name, Mode::from_bits_truncate(0o755)),
            };
            match made {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "creating {}: grelab needs root to manage labs",
                            shown.display()
                        )
                    });
                }
            }
            let fd = at(flags).with_context(|| format!("opening {}", shown.display()))?;
            // The umask may have narrowed or widened nothing: set it exactly.
            let st = fstat(&fd)?;
            if st.st_uid == 0 && st.st_mode & 0o7777 != 0o755 {
                fchmod(&fd, Mode::from_bits_truncate(0o755))
                    .with_context(|| format!("setting the mode of {}", shown.display()))?;
            }
            fd
        }
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(error::environment(format!(
                "{} is a symbolic link or not a directory: grelab will not follow it as root; \
                 remove it and run the command again",
                shown.display()
            )));
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", shown.display())),
    };
    check_trusted(&fstat(&fd)?, SFlag::S_IFDIR, shown)?;
    Ok(Some(fd))
}

/// The state root, checked; created when `create`.
fn open_root(create: bool) -> Result<Option<OwnedFd>> {
    let root = state_dir();
    // The parent (/run) is the system's; the root itself must be ours.
    open_dir(None, &root, &root, create)
}

/// The names in directory `dir`.
fn entries(dir: &OwnedFd) -> Result<Vec<std::ffi::OsString>> {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let mut out = Vec::new();
    for e in std::fs::read_dir(&path).context("listing a state directory")? {
        out.push(e?.file_name());
    }
    Ok(out)
}

/// Reads file `name` of directory `dir` (shown as `shown`): Ok(None) when
/// absent; refuses a symlink, or a file that is not root's alone.
fn read_at(dir: &OwnedFd, name: &str, shown: &Path) -> Result<Option<Vec<u8>>> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => {
            return Err(error::environment(format!(
                "{} is a symbolic link: grelab will not follow it as root; remove it",
                shown.display()
            )));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", shown.display())),
    };
    check_trusted(&fstat(&fd)?, SFlag::S_IFREG, shown)?;
    let mut bytes = Vec::new();
    File::from(fd)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", shown.display()))?;
    Ok(Some(bytes))
}

/// Opens file `name` of `dir` for appending (created 0644 if missing),
/// never through a symlink.
fn append_at(dir: &OwnedFd, name: &str, shown: &Path) -> Result<File> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o644))
        .with_context(|| format!("opening {}", shown.display()))?;
    let st = fstat(&fd)?;
    check_trusted(&st, SFlag::S_IFREG, shown)?;
    if st.st_mode & 0o7777 != 0o644 {
        fchmod(&fd, Mode::from_bits_truncate(0o644))?;
    }
    Ok(File::from(fd))
}

/// The folders a lab's directory may hold (the keeper's: logs, the nodes'
/// files): removed with all they hold, never through a symlink.
const FOLDERS: [&str; 2] = ["logs", "nodes"];

/// Removes folder `name` of `dir` and everything in it. Symlinks in it are
/// removed, not followed.
fn remove_tree(dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<()> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let sub = openat(dir, name, flags, Mode::empty())
        .with_context(|| format!("opening {} to remove it", Path::new(name).display()))?;
    for entry in entries(&sub)? {
        match unlinkat(&sub, entry.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => remove_tree(&sub, &entry)?,
            Err(e) => {
                return Err(e).with_context(|| format!("removing {}", Path::new(&entry).display()));
            }
        }
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
        .with_context(|| format!("removing {}", Path::new(name).display()))
}

/// One lab's state directory, opened through checked handles.
pub struct LabDir {
    fd: OwnedFd,
    root: OwnedFd,
    lab: String,
}

impl LabDir {
    /// Opens lab `lab`'s directory, creating it (and the root) if missing.
    pub fn create(lab: &str) -> Result<LabDir> {
        Self::get(lab, true)?.ok_or_else(|| anyhow::anyhow!("creating the state of lab `{lab}`"))
    }

    /// Opens lab `lab`'s directory: Ok(None) when there is none.
    pub fn open(lab: &str) -> Result<Option<LabDir>> {
        Self::get(lab, false)
    }

    fn get(lab: &str, create: bool) -> Result<Option<LabDir>> {
        check_lab(lab)?;
        let Some(root) = open_root(create)? else {
            return Ok(None);
        };
        let path = lab_dir(lab);
        Ok(
            open_dir(Some(&root), Path::new(lab), &path, create)?.map(|fd| LabDir {
                fd,
                root,
                lab: lab.to_owned(),
            }),
        )
    }

    /// The directory's path, for messages and for the dataplane process.
    pub fn path(&self) -> PathBuf {
        lab_dir(&self.lab)
    }

    /// Reads file `name`: Ok(None) when absent. Refuses a symlink, or a file
    /// that is not root's alone.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        read_at(&self.fd, name, &self.path().join(name))
    }

    /// Creates a new file `name` (mode 0644) for writing, replacing nothing.
    fn create_new(&self, name: &str) -> Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(0o644))
            .with_context(|| format!("creating {}", self.path().join(name).display()))?;
        fchmod(&fd, Mode::from_bits_truncate(0o644))?;
        Ok(File::from(fd))
    }

    /// Writes file `name` atomically: a new temporary file, renamed over it.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let mut f = self.create_new(&tmp)?;
        let written = f
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.path().join(name).display()))
            .and_then(|()| {
                renameat(&self.fd, tmp.as_str(), &self.fd, name).with_context(|| {
                    format!("renaming {} into place", self.path().join(name).display())
                })
            });
        if written.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// Opens file `name` for appending (created 0644 if missing), never
    /// through a symlink.
    pub fn append(&self, name: &str) -> Result<File> {
        append_at(&self.fd, name, &self.path().join(name))
    }

    /// [`LabDir::append`] for file `name` of subfolder `sub`.
    pub fn append_in(&self, sub: &str, name: &str) -> Result<File> {
        let shown = self.path().join(sub);
        let fd = open_dir(Some(&self.fd), Path::new(sub), &shown, true)?
            .ok_or_else(|| anyhow::anyhow!("opening {}", shown.display()))?;
        append_at(&fd, name, &shown.join(name))
    }

    /// Makes subfolder `name` (0755) if it is missing.
    pub fn make_dir(&self, name: &str) -> Result<()> {
        open_dir(
            Some(&self.fd),
            Path::new(name),
            &self.path().join(name),
            true,
        )
        .map(drop)
    }

    /// [`LabDir::read`] for file `name` of subfolder `sub`.
    pub fn read_in(&self, sub: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let shown = self.path().join(sub);
        let Some(fd) = open_dir(Some(&self.fd), Path::new(sub), &shown, false)? else {
            return Ok(None);
        };
        read_at(&fd, name, &shown.join(name))
    }

    /// Removes folder `name` (one of the keeper's) and all it holds, if it
    /// is there: a restarted keeper lays the nodes' files out anew.
    pub fn remove_folder(&self, name: &str) -> Result<()> {
        if !FOLDERS.contains(&name) {
            anyhow::bail!("`{name}` is no folder of a lab's directory");
        }
        match remove_tree(&self.fd, OsStr::new(name)) {
            Err(e)
                if e.chain()
                    .any(|c| c.downcast_ref::<Errno>() == Some(&Errno::ENOENT)) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    /// The lab's name.
    pub fn lab(&self) -> &str {
        &self.lab
    }

    /// Removes the directory and the files in it. It holds only regular
    /// files of grelab's; anything else is left, with an error.
    pub fn remove(self) -> Result<()> {
        for name in entries(&self.fd)? {
            match unlinkat(&self.fd, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) if FOLDERS.iter().any(|f| name == *f) => {
                    remove_tree(&self.fd, &name).with_context(|| {
                        format!("removing {}", self.path().join(&name).display())
                    })?;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("removing {}", self.path().join(&name).display())
                    });
                }
            }
        }
        match unlinkat(
            &self.root,
            OsStr::from_bytes(self.lab.as_bytes()),
            UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.path().display())),
        }
    }
}

/// An exclusive lock on one lab, held until dropped.
pub struct Lock {
    _flock: Flock<File>,
}

impl Lock {
    /// Takes lab `lab`'s lock, waiting up to `wait` for another grelab.
    pub fn acquire(lab: &str, wait: Duration) -> Result<Lock> {
        check_lab(lab)?;
        let root = open_root(true)?.ok_or_else(|| anyhow::anyhow!("no state directory"))?;
        let shown = state_dir().join(".locks");
        let locks = open_dir(Some(&root), Path::new(".locks"), &shown, true)?
            .ok_or_else(|| anyhow::anyhow!("no lock directory"))?;
        let path = shown.join(lab);
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&locks, lab, flags, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("opening {}", path.display()))?;
        check_trusted(&fstat(&fd)?, SFlag::S_IFREG, &path)?;
        fchmod(&fd, Mode::from_bits_truncate(0o600))?;
        let mut file = File::from(fd);
        let deadline = Instant::now() + wait;
        let mut said = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(Lock { _flock: flock }),
                Err((f, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    if !said {
                        eprintln!("waiting for another grelab working on lab `{lab}` ...");
                        said = true;
                    }
                    crate::sys::interrupt::check()?;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => {
                    return Err(error::environment(format!(
                        "lab `{lab}` is busy: another grelab holds {} ({e}); try again when it is done",
                        path.display()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backends as records have always held them: strings in a triple.
    #[test]
    fn backends_read_and_write_the_record_format_byte_for_byte() {
        let old = r#"[["gl-a","gre1","kernel"],["gl-b","gre1","userspace"]]"#;
        let read: Vec<EndBackend> = serde_json::from_str(old).unwrap();
        assert_eq!(
            read,
            [
                EndBackend {
                    namespace: "gl-a".into(),
                    device: "gre1".into(),
                    backend: Backend::Kernel,
                },
                EndBackend {
                    namespace: "gl-b".into(),
                    device: "gre1".into(),
                    backend: Backend::Userspace,
                },
            ]
        );
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
        let pretty = "[\n  [\n    \"gl-a\",\n    \"gre1\",\n    \"kernel\"\n  ]\n]";
        let one = &read[..1];
        assert_eq!(serde_json::to_string_pretty(one).unwrap(), pretty);
        assert!(serde_json::from_str::<Vec<EndBackend>>(r#"[["a","b","Kernel"]]"#).is_err());
    }
}
