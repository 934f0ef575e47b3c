//! The multicast check: the receiving node joins a group (on every
//! interface, or the one named), the sending node sends UDP datagrams to
//! it, and a datagram carrying this attempt's nonce must arrive, through
//! interfaces that have the MULTICAST flag (the kernel forwards without it,
//! but routing daemons refuse such an interface). Both sockets are made in
//! their namespaces, then used from one thread: a socket stays in the
//! namespace it was made in.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrStorage,
    sockopt,
};

use super::{Outcome, fail, pass};
use crate::sys::netns;

/// Hops a datagram may cross: enough for a lab's routers (a default of 1
/// would stop at the first).
const HOPS: u8 = 16;
/// Time between datagrams.
const RESEND: Duration = Duration::from_millis(10);

/// One multicast probe, resolved: namespaces known.
#[derive(Debug, Clone)]
pub(in crate::check) struct Probe {
    /// The sending and receiving nodes, for messages.
    pub(in crate::check) nodes: (String, String),
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

/// An interface of a node: index, name, whether it has the MULTICAST flag.
#[derive(Debug, Clone)]
struct Iface {
    index: u32,
    name: String,
    multicast: bool,
}

/// A node's interfaces and the owner of each of its addresses.
struct Interfaces {
    ifaces: Vec<Iface>,
    addrs: Vec<(IpAddr, String)>,
}

/// A datagram received: where from, the interface it arrived on, its bytes.
struct Datagram {
    from: Option<IpAddr>,
    index: Option<u32>,
    data: Vec<u8>,
}

/// Sends to the group from `from_ns` until a datagram with this attempt's
/// nonce reaches the joined socket in `to_ns`, or the timeout runs out.
pub(super) fn check(p: Probe) -> Result<Outcome> {
    let (group, port, join) = (p.group, p.port, p.join.clone());
    let (rx, joined, to_ifaces) =
        netns::run_in(&p.to_ns, move || receiver(group, port, join.as_deref()))?;
    let dev = p.dev.clone();
    let (tx, out) = netns::run_in(&p.from_ns, move || sender(group, port, dev.as_deref()))?;
    let nonce = format!("grelab multicast check {:016x}", nonce());
    let dest = SocketAddr::new(group, port);
    let via = out
        .as_ref()
        .map_or("the route to the group".to_owned(), |i| {
            format!("`{}`", i.name)
        });
    let mut details = vec![format!("joined {group} on {}", joined.join(", "))];
    let start = Instant::now();
    let deadline = start + p.timeout;
    let (mut sent, mut other) = (0u32, 0u32);
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
        while let Some(got) = receive(&rx, until)? {
            if got.data != nonce.as_bytes() {
                // Another check's datagram to the same group and port.
                other += 1;
                continue;
            }
            details.push(format!("{sent} datagram(s) sent through {via}"));
            let took = start.elapsed();
            return Ok(judge(&p, &got, took, out.as_ref(), &to_ifaces, details));
        }
    }
    details.push(format!(
        "{sent} datagram(s) sent through {via}; {other} other datagram(s) received"
    ));
    Ok(fail(
        format!(
            "none of {sent} datagrams to {dest} arrived within {:?}: the path does not carry multicast (a router that does not forward it? a `dev` would send across a tunnel)",
            p.timeout
        ),
        details,
    ))
}

/// The probe's own datagram `got` arrived after `took`: a pass, unless the
/// interface it left by (`out`, where known) or arrived on lacks the
/// MULTICAST flag.
fn judge(
    p: &Probe,
    got: &Datagram,
    took: Duration,
    out: Option<&Iface>,
    to_ifaces: &[Iface],
    mut details: Vec<String>,
) -> Outcome {
    let from = got.from.map_or("?".to_owned(), |f| f.to_string());
    let index = got.index.unwrap_or(0);
    let arrived = to_ifaces.iter().find(|i| i.index == index);
    let on = arrived.map_or(format!("interface {index}"), |i| format!("`{}`", i.name));
    let summary = format!(
        "a datagram to {} from {from} arrived on {on} in {:.1} ms",
        SocketAddr::new(p.group, p.port),
        took.as_secs_f64() * 1e3
    );
    let (a, b) = &p.nodes;
    let flagless: Vec<String> = [(out, a), (arrived, b)]
        .into_iter()
        .filter_map(|(i, node)| i.filter(|i| !i.multicast).map(|i| (i, node)))
        .map(|(i, node)| format!("`{}` of {node}", i.name))
        .collect();
    if flagless.is_empty() {
        return pass(summary, details);
    }
    details.push(
        "set it with `ip link set DEV multicast on`, or `multicast: true` on a tunnel".into(),
    );
    fail(
        format!(
            "{summary}, but {} {} the MULTICAST flag: routing daemons will not use it",
            flagless.join(" and "),
            if flagless.len() == 1 { "lacks" } else { "lack" }
        ),
        details,
    )
}

/// A datagram read from `rx` before `until`; `None` when the time is up.
fn receive(rx: &UdpSocket, until: Instant) -> Result<Option<Datagram>> {
    let wait = until.saturating_duration_since(Instant::now());
    if wait.is_zero() {
        return Ok(None);
    }
    rx.set_read_timeout(Some(wait))?;
    let mut buf = [0u8; 128];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match socket::recvmsg::<SockaddrStorage>(
        rx.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(m) => m,
        Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e)).context("receiving multicast datagrams"),
    };
    let index = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::Ipv4PacketInfo(i) => u32::try_from(i.ipi_ifindex).ok(),
            ControlMessageOwned::Ipv6PacketInfo(i) => Some(i.ipi6_ifindex),
            _ => None,
        })
    });
    let from = msg.address.as_ref().and_then(|a| {
        a.as_sockaddr_in()
            .map(|a| IpAddr::V4(a.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
    });
    let n = msg.bytes;
    Ok(Some(Datagram {
        from,
        index,
        data: buf[..n].to_vec(),
    }))
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

/// The calling thread's namespace's interfaces, and each address's owner.
fn interfaces() -> Result<Interfaces> {
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut addrs = Vec::new();
    for i in nix::ifaddrs::getifaddrs().context("listing interfaces")? {
        if !ifaces.iter().any(|x| x.name == i.interface_name)
            && let Ok(index) = nix::net::if_::if_nametoindex(i.interface_name.as_str())
        {
            ifaces.push(Iface {
                index,
                name: i.interface_name.clone(),
                multicast: i.flags.contains(InterfaceFlags::IFF_MULTICAST),
            });
        }
        let ip = i.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| IpAddr::V4(a.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
        });
        if let Some(ip) = ip {
            addrs.push((ip, i.interface_name));
        }
    }
    Ok(Interfaces { ifaces, addrs })
}

/// In the receiving node: a socket bound to the group and port (shared, so
/// checks of one group run side by side) that reports each datagram's
/// interface, joined on `join` or on every interface but `lo`; the names
/// joined, and the node's interfaces.
fn receiver(
    group: IpAddr,
    port: u16,
    join: Option<&str>,
) -> Result<(UdpSocket, Vec<String>, Vec<Iface>)> {
    let v4 = group.is_ipv4();
    let family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context("opening a UDP socket for the multicast check")?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if v4 {
        socket::setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?;
    } else {
        socket::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(group, port)),
    )
    .with_context(|| format!("binding to {group} port {port}"))?;
    let sock = UdpSocket::from(fd);
    let Interfaces { ifaces, addrs } = interfaces()?;
    let (mut joined, mut errors) = (Vec::new(), Vec::new());
    for i in &ifaces {
        if join.is_some_and(|j| j != i.name) || (join.is_none() && i.name == "lo") {
            continue;
        }
        let r = match group {
            IpAddr::V4(g) => {
                // IPv4 joins name the interface by an address of it.
                let Some(IpAddr::V4(a)) = addrs
                    .iter()
                    .find(|(a, n)| *n == i.name && a.is_ipv4())
                    .map(|x| x.0)
                else {
                    continue;
                };
                sock.join_multicast_v4(&g, &a)
            }
            IpAddr::V6(g) => sock.join_multicast_v6(&g, i.index),
        };
        let note = if i.multicast {
            ""
        } else {
            " (no MULTICAST flag)"
        };
        match r {
            Ok(()) => joined.push(format!("{}{note}", i.name)),
            Err(e) => errors.push(format!("{}{note}: {e}", i.name)),
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
    Ok((sock, joined, ifaces))
}

/// In the sending node: a socket that sends to the group with hops to
/// spare, not looped back, through `dev` if given; and the interface it
/// sends through, where known (`dev`, or the route lookup's source address).
fn sender(group: IpAddr, port: u16, dev: Option<&str>) -> Result<(UdpSocket, Option<Iface>)> {
    let any = if group.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(any).context("opening a UDP socket to send to the group")?;
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
    let Interfaces { ifaces, addrs } = interfaces()?;
    let name = match dev {
        Some(d) => Some(d.to_owned()),
        // connect() asks the routing for the way out; nothing is sent.
        None => UdpSocket::bind(any)
            .and_then(|s| s.connect((group, port)).and_then(|()| s.local_addr()))
            .ok()
            .and_then(|src| {
                addrs
                    .iter()
                    .find(|(a, _)| *a == src.ip())
                    .map(|(_, n)| n.clone())
            }),
    };
    let out = name.and_then(|n| ifaces.into_iter().find(|i| i.name == n));
    Ok((sock, out))
}
