//! ethtool: the one setting grelab changes by SIOCETHTOOL (not netlink,
//! but about links).

use std::os::fd::AsRawFd;

use anyhow::{Context, Result, anyhow};

/// Turns off transmit checksum offload on interface `name` of the calling
/// thread's namespace (SIOCETHTOOL; not netlink, but about links). A veth
/// then fills in checksums in software, as a real wire would carry them:
/// needed where grelab's userspace GRE checks the checksums a kernel GRE end
/// sent, which a veth otherwise leaves blank (checksum offload).
pub fn disable_tx_checksum(name: &str) -> Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    // The bound of `req.name`, not a name rule: the name is the plan's.
    if name.len() >= libc::IFNAMSIZ {
        return Err(anyhow!("interface name `{name}` is too long"));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let doing = || format!("turning off transmit checksum offload on `{name}`");
    let sock = crate::sys::netns::ioctl_socket().with_context(doing)?;
    // SAFETY: `req` and `value` outlive the ioctl.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(doing);
    }
    Ok(())
}
