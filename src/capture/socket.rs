//! The packet socket: every frame of one interface, both directions, with
//! the kernel's timestamps; bare IP packets of L3 devices get an Ethernet
//! header so every frame decodes alike.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, LinkAddr, MsgFlags, SockFlag, SockType, recvmsg,
    setsockopt, socket, sockopt,
};

use super::ETH_HLEN;

/// The largest frame kept whole: a 64 KiB IP packet and its Ethernet header.
pub const MAX_FRAME: usize = 65535 + ETH_HLEN;

/// One captured frame, always starting with an Ethernet header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's bytes, at most [`MAX_FRAME`].
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data.len()` if cut).
    pub wire_len: usize,
    /// When the kernel saw it.
    pub timestamp: SystemTime,
    /// Whether this host sent it (`PACKET_OUTGOING`) rather than received it.
    pub outgoing: bool,
}

/// A packet socket receiving every frame of one interface, both directions.
pub struct Capture {
    fd: OwnedFd,
    iface: String,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

impl Capture {
    /// Opens a capture on `iface` in the calling thread's network namespace
    /// (enter the namespace first, e.g. with [`crate::sys::netns::run_in`]).
    pub fn open(iface: &str) -> Result<Capture> {
        let index = nix::net::if_::if_nametoindex(iface).with_context(|| {
            format!("finding interface `{iface}` to capture on: is the thread in the right network namespace?")
        })?;
        // Protocol 0 receives nothing until bound, so no frame of another
        // interface slips in between socket() and bind().
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("opening a packet socket: capturing needs root (CAP_NET_RAW)")?;
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)
            .context("asking for kernel timestamps on the packet socket")?;
        // Room for a burst (iperf through a tunnel); best effort, the default also works.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: the pointer and length describe `sll`, which outlives the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("binding the packet socket to `{iface}`"));
        }
        Ok(Capture {
            fd,
            iface: iface.to_owned(),
            buf: vec![0; MAX_FRAME],
            cmsg: nix::cmsg_space!(libc::timespec),
        })
    }

    /// The next frame, or `None` once `deadline` passes without one.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<Frame>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Round up, so the last wait reaches the deadline instead of spinning.
            let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("waiting for frames on `{}`", self.iface));
                }
            }
            match self.receive() {
                Ok(frame) => return Ok(Some(frame)),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(Errno::ENETDOWN) => {
                    anyhow::bail!(
                        "`{0}` is down, so nothing can be captured on it: bring it up (`ip link set {0} up`)",
                        self.iface
                    );
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading a frame from `{}`", self.iface));
                }
            }
        }
    }

    fn receive(&mut self) -> nix::Result<Frame> {
        // Receive after room for an Ethernet header, in case the device has none.
        let mut iov = [IoSliceMut::new(&mut self.buf[ETH_HLEN..])];
        let msg = recvmsg::<LinkAddr>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
        )?;
        let mut timestamp = SystemTime::now();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    let since = Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
                    timestamp = SystemTime::UNIX_EPOCH + since;
                }
            }
        }
        let (wire_len, addr) = (msg.bytes, msg.address);
        let kept = wire_len.min(MAX_FRAME - ETH_HLEN);
        let outgoing = addr.is_some_and(|a| a.pkttype() == libc::PACKET_OUTGOING);
        let hatype = addr.map_or(libc::ARPHRD_ETHER, |a| a.hatype());
        if hatype == libc::ARPHRD_ETHER || hatype == libc::ARPHRD_LOOPBACK {
            let data = self.buf[ETH_HLEN..ETH_HLEN + kept].to_vec();
            return Ok(Frame {
                data,
                wire_len,
                timestamp,
                outgoing,
            });
        }
        // An L3 device (TUN, a kernel gre link) hands over bare IP packets:
        // give them a zeroed Ethernet header so every frame decodes alike.
        let ethertype = addr.map_or(0, |a| u16::from_be(a.protocol()));
        self.buf[..12].fill(0);
        self.buf[12..ETH_HLEN].copy_from_slice(&ethertype.to_be_bytes());
        let data = self.buf[..ETH_HLEN + kept].to_vec();
        Ok(Frame {
            data,
            wire_len: wire_len + ETH_HLEN,
            timestamp,
            outgoing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_names_a_missing_interface() {
        let err = Capture::open("gl-no-such-if")
            .err()
            .expect("no such interface");
        assert!(format!("{err:#}").contains("`gl-no-such-if`"), "{err:#}");
    }
}
