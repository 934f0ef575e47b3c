//! The raw ICMP / ICMPv6 socket of one ping run: opened, filtered to the
//! run's own replies and the errors that quote its requests, and the small
//! setsockopt / getsockopt wrappers it needs.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt,
};

use super::{ECHO_REPLY_V4, ECHO_REPLY_V6, PingError, PingOptions};

/// The sender of a received packet, from the address recvmsg gave.
pub(super) fn source_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Opens and sets up the raw socket for one ping run with identifier `id`.
pub(super) fn open(target: IpAddr, opts: &PingOptions, id: u16) -> Result<OwnedFd, PingError> {
    let (family, proto) = match target {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let sock =
        socket::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto).map_err(|e| {
            let hint = if e == Errno::EPERM {
                ": run as root (CAP_NET_RAW)"
            } else {
                ""
            };
            io_err(
                e,
                &format!("opening a raw ICMP socket to ping {target}{hint}"),
            )
        })?;
    let ctx = |what: &str| format!("setting {what} on the socket to ping {target}");
    match target {
        IpAddr::V4(_) => {
            // Let through only echo replies and the errors that quote a request.
            let pass = [0u32, 3, 11, 12].iter().fold(0u32, |m, t| m | 1 << t);
            set_opt(&sock, libc::SOL_RAW, ICMP_FILTER, &!pass)
                .map_err(|e| io_ctx(e, &ctx("ICMP_FILTER")))?;
            let pmtu = if opts.dont_fragment {
                libc::IP_PMTUDISC_DO
            } else {
                libc::IP_PMTUDISC_DONT
            };
            set_int(&sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, pmtu)
                .map_err(|e| io_ctx(e, &ctx("IP_MTU_DISCOVER")))?;
            if let Some(ttl) = opts.ttl {
                socket::setsockopt(&sock, sockopt::Ipv4Ttl, &i32::from(ttl))
                    .map_err(|e| io_err(e, &ctx("IP_TTL")))?;
            }
        }
        IpAddr::V6(_) => {
            // struct icmp6_filter: a set bit blocks that type.
            let mut filter = [u32::MAX; 8];
            for t in [1u8, 2, 3, 4, ECHO_REPLY_V6] {
                filter[usize::from(t >> 5)] &= !(1 << (t & 31));
            }
            set_opt(&sock, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
                .map_err(|e| io_ctx(e, &ctx("ICMP6_FILTER")))?;
            socket::setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true)
                .map_err(|e| io_err(e, &ctx("IPV6_RECVHOPLIMIT")))?;
            if opts.dont_fragment {
                set_int(
                    &sock,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MTU_DISCOVER,
                    libc::IPV6_PMTUDISC_DO,
                )
                .map_err(|e| io_ctx(e, &ctx("IPV6_MTU_DISCOVER")))?;
                socket::setsockopt(&sock, sockopt::Ipv6DontFrag, &true)
                    .map_err(|e| io_err(e, &ctx("IPV6_DONTFRAG")))?;
            }
            if let Some(ttl) = opts.ttl {
                socket::setsockopt(&sock, sockopt::Ipv6Ttl, &i32::from(ttl))
                    .map_err(|e| io_err(e, &ctx("IPV6_UNICAST_HOPS")))?;
            }
        }
    }
    only_our_replies(&sock, target.is_ipv4(), id)
        .map_err(|e| io_ctx(e, &ctx("SO_ATTACH_FILTER")))?;
    Ok(sock)
}

/// Keeps other pings' echo replies off the socket (a raw socket gets every
/// ICMP packet of its namespace, and verify runs thousands of pings at once
/// in a hub, whose replies would otherwise fill every socket and wake every
/// thread). Errors pass, as ICMP_FILTER chose them.
fn only_our_replies(sock: &OwnedFd, v4: bool, id: u16) -> io::Result<()> {
    use libc::{BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_MSH};
    use libc::{BPF_RET, BPF_W};
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let reply = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    let prog = [
        // X: where ICMP starts (after the IPv4 header; IPv6 sockets get
        // no IP header).
        if v4 {
            op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0)
        } else {
            op(BPF_LDX | BPF_W | BPF_IMM, 0, 0, 0)
        },
        op(BPF_LD | BPF_B | BPF_IND, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, u32::from(reply)),
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 4),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(id)),
        op(BPF_RET | BPF_K, 0, 0, u32::MAX),
        op(BPF_RET | BPF_K, 0, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    set_opt(sock, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// ICMP_FILTER (linux/icmp.h), level SOL_RAW; libc does not export it.
const ICMP_FILTER: libc::c_int = 1;
/// ICMP6_FILTER (linux/icmpv6.h), level IPPROTO_ICMPV6.
const ICMP6_FILTER: libc::c_int = 1;

/// The error for a refused oversized send, with the path MTU the kernel
/// knows. IP_MTU / IPV6_MTU need a connected socket; this one is done with.
pub(super) fn too_long(sock: &OwnedFd, target: IpAddr) -> PingError {
    let dest = SockaddrStorage::from(SocketAddr::new(target, 0));
    let mtu = socket::connect(sock.as_raw_fd(), &dest)
        .ok()
        .and_then(|()| {
            let (level, name) = match target {
                IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
                IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
            };
            get_int(sock, level, name)
                .ok()
                .and_then(|m| u32::try_from(m).ok())
        });
    PingError::MessageTooLong { mtu }
}

fn set_int(
    sock: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    set_opt(sock, level, name, &val)
}

fn set_opt<T>(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live, initialised T of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(sock: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw mut val).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(val)
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(super) fn io_err(e: Errno, doing: &str) -> PingError {
    io_ctx(io::Error::from(e), doing)
}

fn io_ctx(e: io::Error, doing: &str) -> PingError {
    PingError::Io(io::Error::new(e.kind(), format!("{doing}: {e}")))
}
