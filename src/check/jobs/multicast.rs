//! The multicast check: the receiving node joins a group (on every
//! interface, or the one named), the sending node sends UDP datagrams to
//! it, and a datagram carrying this attempt's nonce must arrive. Both
//! sockets are made in their namespaces and then used from one thread: a
//! socket stays in the namespace it was made in.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use super::{Outcome, fail, pass};
use crate::sys::netns;

/// Hops a datagram may cross: enough for a lab's routers (iputils uses 1,
/// which would stop at the first one).
const HOPS: u8 = 16;
/// Time between datagrams.
const RESEND: Duration = Duration::from_millis(10);

/// One multicast probe, resolved: namespaces known.
#[derive(Debug, Clone)]
pub(in crate::check) struct Probe {
    pub(in crate::check) from_ns: String,
    pub(in crate::check) to_ns: String,
    pub(in crate::check) group: IpAddr,
    pub(in crate::check) port: u16,
    /// The sending interface (default: the route lookup).
    pub(in crate::check) dev: Option<String>,
    /// The interface that joins (default: every one but `lo`).
    pub(in crate::check) join: Option<String>,
    pub(in crate::check) timeout: Duration,
}

/// Sends to the group from `from_ns` until a datagram with this attempt's
/// nonce reaches the joined socket in `to_ns`, or the timeout runs out.
pub(super) fn check(p: Probe) -> Result<Outcome> {
    let (group, port, join) = (p.group, p.port, p.join.clone());
    let (rx, joined) = netns::run_in(&p.to_ns, move || receiver(group, port, join.as_deref()))?;
    let dev = p.dev.clone();
    let tx = netns::run_in(&p.from_ns, move || sender(group, dev.as_deref()))?;
    let nonce = format!("grelab multicast check {:016x}", nonce());
    let dest = SocketAddr::new(group, port);
    let via = p
        .dev
        .as_deref()
        .map_or("the route to the group".to_owned(), |d| format!("`{d}`"));
    let mut details = vec![format!("joined {group} on {}", joined.join(", "))];
    let start = Instant::now();
    let deadline = start + p.timeout;
    let (mut sent, mut other) = (0u32, 0u32);
    let mut buf = [0u8; 128];
    while Instant::now() < deadline {
        match tx.send_to(nonce.as_bytes(), dest) {
            Ok(_) => sent += 1,
            Err(e) if sent == 0 => {
                return Ok(fail(
                    format!("sending to {dest} through {via}: {e}"),
                    vec!["give the check a `dev`, or the node a route to the group".into()],
                ));
            }
            Err(_) => {}
        }
        let until = (Instant::now() + RESEND).min(deadline);
        while let Some(wait) = until
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        {
            rx.set_read_timeout(Some(wait))?;
            match rx.recv_from(&mut buf) {
                Ok((n, from)) if buf[..n] == *nonce.as_bytes() => {
                    details.push(format!("{sent} datagram(s) sent through {via}"));
                    return Ok(pass(
                        format!(
                            "a datagram to {dest} from {} arrived in {:.1} ms",
                            from.ip(),
                            start.elapsed().as_secs_f64() * 1e3
                        ),
                        details,
                    ));
                }
                // Another check's datagram to the same group and port.
                Ok(_) => other += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e).context("receiving multicast datagrams"),
            }
        }
    }
    details.push(format!(
        "{sent} datagram(s) sent through {via}; {other} other datagram(s) received"
    ));
    Ok(fail(
        format!(
            "none of {sent} datagrams to {dest} arrived within {:?}: the path does not carry multicast (a router on it that does not forward multicast, or an interface without the MULTICAST flag?)",
            p.timeout
        ),
        details,
    ))
}

/// A fresh nonce: this process, the clock, a counter.
fn nonce() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    (u64::from(std::process::id()) << 40) ^ t ^ N.fetch_add(1, Ordering::Relaxed)
}

/// In the receiving node: a socket bound to the group and port (shared, so
/// checks of one group run side by side), joined on `join` or on every
/// interface but `lo`; the names of those joined.
fn receiver(group: IpAddr, port: u16, join: Option<&str>) -> Result<(UdpSocket, Vec<String>)> {
    let family = if group.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context("opening a UDP socket for the multicast check")?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(group, port)),
    )
    .with_context(|| format!("binding to {group} port {port}"))?;
    let sock = UdpSocket::from(fd);
    let mut joined = Vec::new();
    let mut errors = Vec::new();
    for i in nix::ifaddrs::getifaddrs().context("listing interfaces")? {
        let name = i.interface_name.clone();
        if join.is_some_and(|j| j != name)
            || (join.is_none() && i.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        {
            continue;
        }
        let r = match (group, i.address.as_ref()) {
            (IpAddr::V4(g), Some(a)) => match a.as_sockaddr_in() {
                Some(a) => sock.join_multicast_v4(&g, &a.ip()),
                None => continue,
            },
            // IPv6 joins by index: once per interface (its link-layer entry).
            (IpAddr::V6(g), Some(a)) if a.as_link_addr().is_some() => {
                match nix::net::if_::if_nametoindex(name.as_str()) {
                    Ok(idx) => sock.join_multicast_v6(&g, idx),
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        let note = if i.flags.contains(InterfaceFlags::IFF_MULTICAST) {
            ""
        } else {
            " (no MULTICAST flag)"
        };
        match r {
            Ok(()) => joined.push(format!("{name}{note}")),
            Err(e) => errors.push(format!("{name}{note}: {e}")),
        }
    }
    if joined.is_empty() {
        bail!(
            "joining {group}: no interface{} could join ({})",
            join.map(|j| format!(" `{j}`")).unwrap_or_default(),
            if errors.is_empty() {
                "none has an address of the group's family".to_owned()
            } else {
                errors.join("; ")
            }
        );
    }
    Ok((sock, joined))
}

/// In the sending node: a socket that sends to the group with hops to
/// spare, not looped back, through `dev` if given.
fn sender(group: IpAddr, dev: Option<&str>) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(if group.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .context("opening a UDP socket to send to the group")?;
    if group.is_ipv4() {
        sock.set_multicast_ttl_v4(u32::from(HOPS))?;
        sock.set_multicast_loop_v4(false)?;
    } else {
        socket::setsockopt(&sock, sockopt::Ipv6MulticastHops, &i32::from(HOPS))?;
        sock.set_multicast_loop_v6(false)?;
    }
    if let Some(dev) = dev {
        socket::setsockopt(&sock, sockopt::BindToDevice, &dev.into())
            .with_context(|| format!("sending through `{dev}` (SO_BINDTODEVICE)"))?;
    }
    Ok(sock)
}
