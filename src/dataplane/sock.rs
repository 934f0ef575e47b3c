//! Raw GRE sockets, socket addresses, IPv6 control messages and epoll.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};

/// Space for the IPv6 control messages of one packet (8-byte words).
pub(super) const CTRL_WORDS: usize = 16;
/// How long a send waits for room in a full socket buffer before the rest
/// of its batch is lost.
pub(super) const SEND_WAIT_MS: i32 = 50;
pub(super) const IPPROTO_GRE: i32 = 47;

/// Fills `buf` with IPV6_PKTINFO (source), IPV6_HOPLIMIT and IPV6_TCLASS
/// control messages; returns their length.
pub(super) fn ipv6_control(
    buf: &mut [u64; CTRL_WORDS],
    src: Ipv6Addr,
    hops: u8,
    tclass: u8,
) -> usize {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: 0,
    };
    let mut at = 0;
    // SAFETY: the three messages take 88 of the buffer's 128 bytes; the
    // buffer is 8-byte aligned and each message starts aligned.
    unsafe {
        let base = buf.as_mut_ptr().cast::<u8>();
        let mut put = |kind: libc::c_int, data: *const u8, len: usize| {
            let h = base.add(at).cast::<libc::cmsghdr>();
            (*h).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
            (*h).cmsg_level = libc::IPPROTO_IPV6;
            (*h).cmsg_type = kind;
            std::ptr::copy_nonoverlapping(data, libc::CMSG_DATA(h), len);
            at += libc::CMSG_SPACE(len as u32) as usize;
        };
        put(
            libc::IPV6_PKTINFO,
            std::ptr::addr_of!(info).cast(),
            size_of::<libc::in6_pktinfo>(),
        );
        let hops = libc::c_int::from(hops);
        put(
            libc::IPV6_HOPLIMIT,
            std::ptr::addr_of!(hops).cast(),
            size_of::<libc::c_int>(),
        );
        let tclass = libc::c_int::from(tclass);
        put(
            libc::IPV6_TCLASS,
            std::ptr::addr_of!(tclass).cast(),
            size_of::<libc::c_int>(),
        );
    }
    at
}

/// The destination address (IPV6_PKTINFO) and traffic class (IPV6_TCLASS,
/// 0 if missing) of a received message.
///
/// # Safety
/// `h` must describe a control buffer the kernel filled.
pub(super) unsafe fn ipv6_received(h: &libc::msghdr) -> (Option<Ipv6Addr>, u8) {
    let (mut dst, mut tclass) = (None, 0);
    // SAFETY: walking kernel-written control messages within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_TCLASS {
                tclass = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()) as u8;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (dst, tclass)
}

pub(super) fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, big and aligned enough for
    // either address type.
    unsafe {
        let mut ss: libc::sockaddr_storage = zeroed();
        match ip {
            IpAddr::V4(a) => {
                let sa = std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>();
                (*sa).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sa).sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                (ss, size_of::<libc::sockaddr_in>() as u32)
            }
            IpAddr::V6(a) => {
                let sa = std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>();
                (*sa).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sa).sin6_addr.s6_addr = a.octets();
                (ss, size_of::<libc::sockaddr_in6>() as u32)
            }
        }
    }
}

/// Waits up to SEND_WAIT_MS for room to send on `fd`.
pub(super) fn writable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, owned here.
    let n = unsafe { libc::poll(&mut p, 1, SEND_WAIT_MS) };
    n > 0 && p.revents & libc::POLLOUT != 0
}

/// A non-blocking raw GRE socket in the calling thread's namespace: IPv4
/// with IP_HDRINCL (we write the outer header), or IPv6 reporting each
/// packet's destination and traffic class.
pub(super) fn raw_socket(v6: bool) -> Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_GRE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context(format!(
            "opening a raw GRE socket (IPv{}): it needs root (CAP_NET_RAW)",
            if v6 { 6 } else { 4 }
        ));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_HDRINCL)
    };
    setsockopt(&fd, level, name, 1).context("configuring the raw GRE socket")?;
    if v6 {
        // The outer traffic class, for RFC 6040's decapsulation.
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1)
            .context("configuring the raw GRE socket")?;
    }
    // A bigger receive buffer absorbs bursts for hubs (FORCE: root passes rmem_max).
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
    Ok(fd)
}

pub(super) fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(super) fn epoll_create() -> Result<OwnedFd> {
    // SAFETY: plain epoll_create1; the result is checked.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("creating an epoll instance");
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn epoll_add(epoll: &OwnedFd, fd: RawFd, token: u64) -> Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error()).context("adding a descriptor to epoll");
    }
    Ok(())
}

pub(super) fn epoll_del(epoll: &OwnedFd, fd: RawFd) {
    // SAFETY: EPOLL_CTL_DEL ignores the event argument.
    unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            std::ptr::null_mut(),
        )
    };
}

/// Raises the soft open-file limit to the hard one: a hub lab has one
/// device per tunnel end.
pub(super) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
