//! A node's view of the file system, as a container would have it: a mount
//! namespace of its own where /sys shows the node's interfaces, /proc its
//! lab's processes, /run is private, and the node's files sit at their
//! paths. The rest of the host's file system is seen as it is.
//!
//! `enter` runs in a single-threaded process (a fork of the keeper, or a
//! child before exec): a mount namespace cannot be entered by a process
//! that shares its file-system attributes with other threads.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// An overlay that makes missing paths exist in the view alone: `dir`
/// shows the host's entries plus those in `upper`.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// What a view holds beyond the node's network namespace.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Missing directories made to exist, shallowest first.
    pub overlays: Vec<Overlay>,
    /// (source on the host, target) files bound over existing ones.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// A private /run, with these files (absolute paths under /run) in it.
    pub run: Option<Vec<(PathBuf, Vec<u8>)>>,
    /// A /proc of the calling process's PID namespace.
    pub proc: bool,
}

fn mount_err(what: &str, target: &Path) -> impl FnOnce(nix::Error) -> anyhow::Error {
    let target = target.display().to_string();
    let what = what.to_owned();
    move |e| anyhow::anyhow!("mounting {what} on {target}: {e}")
}

/// Moves the calling (single-threaded) process into a new mount namespace
/// that sees nothing of what it mounts propagate back, into the network
/// namespace `netns`, and builds `view` there.
pub fn enter(netns: &impl AsFd, view: &View) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("creating the node's mount namespace (unshare)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("making the node's mounts private (mount --make-rslave /)")?;
    setns(netns, CloneFlags::CLONE_NEWNET).context("entering the node's network namespace")?;
    for o in &view.overlays {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            o.dir.display(),
            o.upper.display(),
            o.work.display()
        );
        if [&o.dir, &o.upper, &o.work]
            .iter()
            .any(|p| p.to_str().is_none_or(|s| s.contains([',', ':', '\\'])))
        {
            bail!(
                "cannot overlay {}: its path holds `,`, `:` or `\\`",
                o.dir.display()
            );
        }
        mount(
            Some("overlay"),
            &o.dir,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(mount_err("an overlay", &o.dir))?;
    }
    for (src, dst) in &view.binds {
        mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(mount_err(&src.display().to_string(), dst))?;
    }
    // sysfs shows the interfaces of the namespace of whoever mounts it.
    let _ = umount2("/sys", MntFlags::MNT_DETACH);
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(mount_err("sysfs", Path::new("/sys")))?;
    if view.proc {
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(mount_err("proc", Path::new("/proc")))?;
    }
    if let Some(files) = &view.run {
        private_run(files)?;
    }
    Ok(())
}

/// A fresh tmpfs on /run. The host's /run goes from this view first, with
/// the namespace mounts under /run/netns: a copy here would keep other
/// labs' namespaces alive.
fn private_run(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    if umount2("/run", MntFlags::MNT_DETACH).is_err() {
        let _ = umount2("/run/netns", MntFlags::MNT_DETACH);
    }
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(mount_err("tmpfs", Path::new("/run")))?;
    for dir in ["/run/lock", "/run/user"] {
        fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    for (path, content) in files {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Moves this single-threaded process into the view that the process
/// behind `holder` keeps: its mount and network namespaces.
pub fn join(holder: &impl AsFd) -> Result<()> {
    setns(holder, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
        .context("entering the node's view (setns)")
}

/// Moves the calling thread's future children into the PID namespace of
/// the process behind `pidfd` (the lab's keeper).
pub fn children_into_pid_ns(pidfd: &impl AsFd) -> Result<()> {
    setns(pidfd, CloneFlags::CLONE_NEWPID).context("entering the lab's PID namespace (setns)")
}
