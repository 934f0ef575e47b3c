//! TUN/TAP devices through `/dev/net/tun`: the userspace dataplane's side of
//! a tunnel. A device is made in the calling thread's network namespace and
//! is persistent: it outlives its file descriptor, so that stopping a
//! dataplane of thousands of devices does not unregister them one by one
//! (each waits for an RCU grace period); deleting the lab's namespaces then
//! removes them all in one batch. `set_persist(false)` undoes it.
//!
//! Every packet read or written carries a 10-byte `virtio_net_hdr` in
//! front (IFF_VNET_HDR): with [`set_offload`] the kernel hands over
//! unchecksummed packets and 64 KiB TCP super-packets, and takes them back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

/// Length of the `virtio_net_hdr` that leads every packet on a device.
pub const VNET_HDR_LEN: usize = 10;

/// Opens a non-blocking TUN (IP packets) or, with `l2`, TAP (Ethernet
/// frames) device `name` with MTU `mtu`, packets led by a virtio_net_hdr,
/// and brings it up; `ctl` is any socket of the calling thread's namespace
/// (see [`crate::sys::netns::ioctl_socket`]), for the interface ioctls.
pub fn open(name: &str, l2: bool, mtu: u32, ctl: BorrowedFd<'_>) -> Result<File> {
    let mut req = ifreq(name)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun: is the tun driver available (CONFIG_TUN)?")?;
    let kind = if l2 { libc::IFF_TAP } else { libc::IFF_TUN };
    req.ifr_ifru.ifru_flags = (kind | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            ": a device of that name exists already in the namespace"
        } else {
            ""
        };
        return Err(e).with_context(|| format!("creating {} device `{name}`{hint}", kind_name(l2)));
    }
    set_persist(file.as_raw_fd(), true).with_context(|| format!("making `{name}` persistent"))?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = i32::try_from(mtu).unwrap_or(i32::MAX);
    // SAFETY: SIOCSIFMTU reads an ifreq.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFMTU, &req) } < 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("setting MTU {mtu} on `{name}`: is it within 68..=65535?"));
    }
    // No IPv6 link-local address comes with it: grelab's namespaces default
    // to addrgenmode none (apply::init_namespace).
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq.
    unsafe {
        if libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("reading flags of `{name}`"));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("bringing `{name}` up"));
        }
    }
    Ok(file)
}

/// Lets the device behind `fd` hand over packets whose checksum is left to
/// the reader (`TUN_F_CSUM`) and TCP super-packets (`TUN_F_TSO4`/`6`, which
/// need `TUN_F_CSUM`): `flags` is a `TUN_F_*` mask, 0 for none.
pub fn set_offload(fd: std::os::fd::RawFd, flags: libc::c_uint) -> Result<()> {
    // SAFETY: TUNSETOFFLOAD takes an integer argument.
    if unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) } < 0 {
        return Err(io::Error::last_os_error()).context("enabling offloads (TUNSETOFFLOAD)");
    }
    Ok(())
}

/// Makes the device behind TUN descriptor `fd` outlive it (or not).
pub fn set_persist(fd: std::os::fd::RawFd, on: bool) -> Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument.
    if unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, libc::c_ulong::from(on)) } < 0 {
        return Err(io::Error::last_os_error()).context("TUNSETPERSIST");
    }
    Ok(())
}

fn kind_name(l2: bool) -> &'static str {
    if l2 { "TAP" } else { "TUN" }
}

/// An ifreq naming `name`, which must fit IFNAMSIZ with its NUL.
fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/', ' ']) {
        bail!("invalid interface name `{name}`: 1 to 15 bytes, no NUL, slash or space");
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}
