//! Named network namespaces, compatible with iproute2: a bind mount of the
//! namespace at `/run/netns/NAME`, so `ip netns exec NAME ...` works on a lab.
//!
//! A thread enters a namespace with `setns`; the process as a whole never
//! moves. Work for a namespace runs on a thread of its own ([`run_in`]), so a
//! tokio worker or the main thread is never switched.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// Where iproute2 (and so grelab) keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The bind-mount path of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether a named namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of all named namespaces on the host, sorted.
pub fn list() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = match fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).with_context(|| format!("listing {NETNS_DIR}")),
    };
    for entry in dir {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A namespace's identity is its nsfs inode, which no other namespace
/// shares while it lives.
pub type NsId = crate::sys::process::FileId;

/// The identity of the calling thread's network namespace.
pub fn current_id() -> Result<NsId> {
    NsId::of("/proc/thread-self/ns/net").context("reading /proc/thread-self/ns/net")
}

/// The identity of the file `file` has open.
fn id_of(file: &File) -> Result<NsId> {
    NsId::of_file(file).context("fstat")
}

/// What is at `/run/netns/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Absent,
    /// A mounted namespace.
    Namespace(NsId),
    /// An empty regular file, nothing mounted on it: what a crash between
    /// creating the file and mounting leaves (or unmounting and removing).
    Placeholder(NsId),
    /// Anything else (a symlink, a non-empty file, ...): nobody's to touch.
    Other,
}

/// Looks at `/run/netns/NAME` without following a symlink.
pub fn inspect(name: &str) -> Result<Found> {
    let md = match fs::symlink_metadata(path(name)) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path(name).display())),
    };
    let id = NsId {
        dev: md.dev(),
        ino: md.ino(),
    };
    // Every namespace inode lives on the one nsfs: ours tells its device
    // (read once, not per namespace `down` looks at).
    static NSFS: OnceLock<u64> = OnceLock::new();
    let nsfs = match NSFS.get() {
        Some(dev) => *dev,
        None => {
            let dev = current_id()?.dev;
            *NSFS.get_or_init(|| dev)
        }
    };
    Ok(if md.dev() == nsfs {
        Found::Namespace(id)
    } else if md.file_type().is_file() && md.len() == 0 {
        Found::Placeholder(id)
    } else {
        Found::Other
    })
}

/// Namespace identities this process trusts, by name: once set, [`open`]
/// refuses a namespace of that name with another identity (one replaced
/// behind grelab's back).
fn trusted() -> &'static Mutex<HashMap<String, NsId>> {
    static TRUSTED: OnceLock<Mutex<HashMap<String, NsId>>> = OnceLock::new();
    TRUSTED.get_or_init(Default::default)
}

/// Trusts namespace `name` only with identity `id` from now on.
pub fn trust(name: &str, id: NsId) {
    if let Ok(mut t) = trusted().lock() {
        t.insert(name.to_owned(), id);
    }
}

/// Opens namespace `name`; the file keeps the namespace alive while held.
/// A namespace whose identity differs from the trusted one is refused.
pub fn open(name: &str) -> Result<File> {
    let p = path(name);
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
        .with_context(|| format!("opening network namespace `{name}` ({})", p.display()))?;
    let expected = trusted().lock().ok().and_then(|t| t.get(name).copied());
    if let Some(want) = expected
        && id_of(&file)? != want
    {
        return Err(crate::error::environment(format!(
            "network namespace `{name}` is not the one grelab created (it was replaced, \
             identity {want:?} expected): grelab will not act in it; `grelab down` leaves it \
             alone, then `grelab up` builds the lab again"
        )));
    }
    Ok(file)
}

/// Moves the calling thread into the namespace behind `ns`.
pub fn enter(ns: &impl AsFd) -> Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).context("entering a network namespace (setns)")
}

/// Runs `f` on a fresh thread inside namespace `name` and returns its result.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = open(name)?;
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            enter(&ns).with_context(|| format!("entering network namespace `{name}`"))?;
            f()
        })
        .context("spawning a namespace thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("a thread working in a namespace panicked"))?
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so namespaces
/// mounted there are seen from other mount namespaces too.
fn prepare_dir() -> Result<()> {
    fs::create_dir_all(NETNS_DIR).with_context(|| {
        format!("creating {NETNS_DIR}: grelab needs root (CAP_SYS_ADMIN) to create namespaces")
    })?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself first.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {NETNS_DIR} onto itself"))?;
            shared().with_context(|| format!("making {NETNS_DIR} a shared mount"))
        }
        Err(e) => Err(e).with_context(|| format!("making {NETNS_DIR} a shared mount")),
    }
}

/// Creates the named namespace `name` (fails if it exists already).
pub fn create(name: &str) -> Result<()> {
    prepare_dir()?;
    let name = name.to_owned();
    std::thread::spawn(move || create_here(&name, &|_| Ok(())))
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace-creating thread panicked"))?
}

/// What [`create_here`] tells its journal, in order.
#[derive(Debug, Clone, Copy)]
pub enum Created {
    /// The new namespace exists (not yet named): its identity.
    Namespace(NsId),
    /// The name was taken: nothing of ours is there.
    Existed,
    /// The placeholder file was made: its identity.
    Placeholder(NsId),
}

/// Makes /run/netns ready for [`create_here`]: once per batch of namespaces.
pub fn prepare() -> Result<()> {
    prepare_dir()
}

/// Creates the named namespace `name` and moves the calling thread into it:
/// call it only on a thread of your own, after [`prepare`]. Saves a thread
/// per namespace when making many. `journal` hears of each step before the
/// next, so that a crash at any point leaves only what it can name.
pub fn create_here(name: &str, journal: &dyn Fn(Created) -> Result<()>) -> Result<()> {
    let target = path(name);
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    journal(Created::Namespace(current_id()?))?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            journal(Created::Existed)?;
            bail!("network namespace `{name}` already exists");
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", target.display())),
    };
    let made = id_of(&file)
        .and_then(|id| journal(Created::Placeholder(id)))
        .and_then(|()| {
            crate::sys::interrupt::crash_point("namespace-placeholder");
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting the new namespace at {}", target.display()))
        });
    if let Err(e) = made {
        let _ = fs::remove_file(&target);
        return Err(e.context(format!("creating network namespace `{name}`")));
    }
    crate::sys::interrupt::crash_point("namespace-mounted");
    Ok(())
}

/// Deletes the named namespace `name`: unmounts and removes its file. The
/// kernel frees the namespace once nothing else holds it. Callers check
/// first that it is theirs ([`inspect`]).
pub fn delete(name: &str) -> Result<()> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
    }
    crate::sys::interrupt::crash_point("namespace-unmounted");
    match fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", target.display())),
    }
}

/// Checks that this process may create namespaces, or says what is needed.
pub fn check_privileges() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "grelab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to build labs: run it with sudo"
        );
    }
    Ok(())
}

/// A socket for interface ioctls (SIOCSIFMTU, SIOCETHTOOL, ...) in the
/// calling thread's namespace: an ioctl acts on the devices of the
/// namespace its socket lives in.
pub fn ioctl_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("opening an ioctl socket");
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
