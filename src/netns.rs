//! Named network namespaces, compatible with iproute2: a bind mount of the
//! namespace at `/run/netns/NAME`, so `ip netns exec NAME ...` works on a lab.
//!
//! A thread enters a namespace with `setns`; the process as a whole never
//! moves. Work for a namespace runs on a thread of its own ([`run_in`]), so a
//! tokio worker or the main thread is never switched.

use std::fs::{self, File};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

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

/// Opens namespace `name`; the file keeps the namespace alive while held.
pub fn open(name: &str) -> Result<File> {
    let p = path(name);
    File::open(&p).with_context(|| format!("opening network namespace `{name}` ({})", p.display()))
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
    std::thread::spawn(move || create_here(&name))
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace-creating thread panicked"))?
}

/// Makes /run/netns ready for [`create_here`]: once per batch of namespaces.
pub fn prepare() -> Result<()> {
    prepare_dir()
}

/// Creates the named namespace `name` and moves the calling thread into it:
/// call it only on a thread of your own, after [`prepare`]. Saves a thread
/// per namespace when making many.
pub fn create_here(name: &str) -> Result<()> {
    let target = path(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("network namespace `{name}` already exists")
            } else {
                anyhow::Error::new(e).context(format!("creating {}", target.display()))
            }
        })?;
    let made = unshare(CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET)")
        .and_then(|()| {
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
    Ok(())
}

/// Deletes the named namespace `name`: unmounts and removes its file. The
/// kernel frees the namespace once nothing else holds it.
pub fn delete(name: &str) -> Result<()> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
    }
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
