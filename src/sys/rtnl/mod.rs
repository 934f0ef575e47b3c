//! The only module that speaks rtnetlink: links, addresses, routes,
//! neighbours, kernel GRE tunnels and the qdiscs and filters of impairments
//! (`qdisc`) in one network namespace, one file per object. May import `error`, `validate`'s name rule and `plan`'s tunnel
//! ends; never `lab`, `check`, `dataplane` or `cli`.
//!
//! A netlink socket belongs to the namespace of the thread that opened it, so
//! each namespace gets a worker thread that has entered it and runs a tokio
//! current-thread runtime (with IO enabled); [`Rtnl::new`] is called there.
//! Methods take `&self`, so many requests can be in flight at once.

use std::fmt::Display;
use std::net::IpAddr;

use anyhow::{Context, Result, anyhow};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use crate::error;
use crate::model::TunnelKind;

mod addr;
mod bridge;
mod link;
mod neigh;
pub mod netfilter;
mod qdisc;
mod route;
mod tunnel;

#[cfg(all(test, feature = "root-tests"))]
mod fixture;

pub use link::{Link, link_mtu, lo_alias, mark_lo};
pub use qdisc::{Carrier, PROGRAM_PREFIX, program_name};
pub use route::{Route, route_oif};

/// A netlink connection to the kernel, bound to one network namespace.
#[derive(Clone)]
pub struct Rtnl {
    handle: Handle,
}

/// What a request acted on, so an errno can name it in advice.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Link(&'a str),
    Tunnel(&'a str, TunnelKind),
    Mtu(&'a str, u32),
    Address(&'a str, IpAddr),
    Route(Option<&'a str>, IpAddr),
}

impl Rtnl {
    /// Opens a netlink connection in the calling thread's namespace; call it
    /// inside a tokio runtime with IO enabled (the connection task is spawned).
    pub fn new() -> Result<Self> {
        tokio::runtime::Handle::try_current()
            .context("opening a netlink connection: not inside a tokio runtime")?;
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink (rtnetlink) socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }
}

/// An interface name grelab may ask the kernel about: the rule of
/// topology files (`lo` included), checked before asking so the error can
/// say what is wrong.
fn check_name(name: &str, doing: &str) -> Result<()> {
    match crate::validate::device_name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(error::bad_input(format!("{doing}: {problem}"))),
    }
}

/// One request, acknowledged, on a blocking socket of the calling thread's
/// namespace: the replies before the acknowledgement.
fn request_blocking(msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    socket
        .send_to(&buf, &SocketAddr::new(0, 0), 0)
        .context("sending a netlink request")?;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().context("reading a netlink reply")?;
        let mut rest = &data[..];
        while !rest.is_empty() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| anyhow!("malformed netlink reply: {e}"))?;
            let len = (reply.header.length as usize).next_multiple_of(4);
            match reply.payload {
                NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                    return Err(std::io::Error::from_raw_os_error(-e.raw_code()).into());
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::InnerMessage(m) => replies.push(m),
                _ => {}
            }
            // deserialize checked the length against `rest`; only the last
            // message's alignment padding may be missing.
            rest = rest.get(len..).unwrap_or_default();
        }
    }
}

/// The errno of a kernel refusal, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(-m.raw_code()),
        _ => None,
    }
}

fn explain_nl(e: rtnetlink::Error, doing: &str, target: Option<Target<'_>>) -> anyhow::Error {
    match (errno(&e), target) {
        (Some(n), Some(t)) => explain(n, doing, t),
        (Some(n), None) => anyhow!("{doing}: {}", std::io::Error::from_raw_os_error(n)),
        _ => anyhow!("{doing}: {e}"),
    }
}

/// The one place where errno values become advice.
fn explain(errno: i32, doing: &str, target: Target<'_>) -> anyhow::Error {
    use Target::*;
    let raw = std::io::Error::from_raw_os_error(errno);
    let msg = |advice: &dyn Display| format!("{doing}: {advice}");
    match (errno, target) {
        (libc::EEXIST, Link(n)) => anyhow!(msg(&format_args!("interface `{n}` already exists"))),
        (libc::EEXIST, Tunnel(n, k)) => anyhow!(msg(&format_args!(
            "interface `{n}`, or another {} tunnel with the same local, remote and key, already exists",
            k.as_str()
        ))),
        (libc::EEXIST, Address(d, a)) => {
            anyhow!(msg(&format_args!("`{d}` already has address {a}")))
        }
        (libc::EEXIST, Route(..)) => anyhow!(msg(&"this route already exists")),
        (libc::EOPNOTSUPP, Tunnel(_, k)) => {
            let module = if k.is_ipv6() { "ip6_gre" } else { "ip_gre" };
            error::environment(msg(&format_args!(
                "this kernel has no {} support (module {module}): load it with \
                 `modprobe {module}`, or use `--backend userspace`",
                k.as_str()
            )))
        }
        (libc::EACCES, Address(d, IpAddr::V6(_))) => error::environment(msg(&format_args!(
            "permission denied: is IPv6 disabled on `{d}` (net.ipv6.conf.{d}.disable_ipv6)? \
             Otherwise grelab needs root (CAP_NET_ADMIN)"
        ))),
        (libc::EPERM | libc::EACCES, _) => {
            error::environment(msg(&"permission denied: grelab needs root (CAP_NET_ADMIN)"))
        }
        (libc::ENODEV, Link(n) | Tunnel(n, _) | Mtu(n, _) | Address(n, _) | Route(Some(n), _)) => {
            anyhow!(msg(&format_args!("no interface `{n}`")))
        }
        (libc::EINVAL, Mtu(n, mtu)) => {
            anyhow!(msg(&format_args!("MTU {mtu} is out of range for `{n}`")))
        }
        (libc::EINVAL, Link(n) | Tunnel(n, _)) => anyhow!(msg(&format_args!(
            "the kernel rejected it as invalid: check the interface name `{n}` \
             (1 to 15 bytes, no `/`, `:` or whitespace) and the settings"
        ))),
        (libc::ENETUNREACH, Route(_, via)) => anyhow!(msg(&format_args!(
            "gateway {via} is on no connected subnet: give an interface here an address \
             in the gateway's subnet first"
        ))),
        _ => anyhow!(msg(&raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipa(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn errno_values_become_advice() {
        let e = |n, t| explain(n, "doing it", t).to_string();
        assert_eq!(
            e(libc::EEXIST, Target::Link("v0")),
            "doing it: interface `v0` already exists"
        );
        assert_eq!(
            e(libc::ENODEV, Target::Mtu("v0", 9000)),
            "doing it: no interface `v0`"
        );
        assert_eq!(
            e(libc::EINVAL, Target::Mtu("v0", 9)),
            "doing it: MTU 9 is out of range for `v0`"
        );
        assert!(e(libc::EINVAL, Target::Link("v0")).contains("check the interface name `v0`"));
        let root = explain(libc::EPERM, "doing it", Target::Link("v0"));
        assert_eq!(
            root.to_string(),
            "doing it: permission denied: grelab needs root (CAP_NET_ADMIN)"
        );
        assert_eq!(error::exit_code(&root), 3);
        assert!(e(libc::EACCES, Target::Address("v0", ipa("::1"))).contains("disable_ipv6"));
        assert!(
            e(libc::EOPNOTSUPP, Target::Tunnel("t", TunnelKind::Ip6gre))
                .contains("modprobe ip6_gre")
        );
        assert!(
            e(libc::ENETUNREACH, Target::Route(None, ipa("10.0.0.1")))
                .contains("no connected subnet")
        );
        assert_eq!(
            e(libc::ENOBUFS, Target::Link("v0")),
            format!(
                "doing it: {}",
                std::io::Error::from_raw_os_error(libc::ENOBUFS)
            )
        );
    }

    #[test]
    fn new_outside_a_runtime_is_an_error() {
        let err = Rtnl::new().err().expect("an error, not a connection");
        assert!(
            err.to_string().contains("not inside a tokio runtime"),
            "{err}"
        );
    }

    /// One rule for interface names, validate's: what a topology may not
    /// name is refused here too (exit 2, before asking the kernel), and
    /// `lo`, which every namespace has, is fine.
    #[test]
    fn interface_names_follow_the_topology_rule() {
        for ok in ["lo", "veth0", "eth0.10", "a_b-c", "abcdefghijklmno"] {
            assert!(check_name(ok, "doing it").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a@b",
            "é",
            "all",
        ] {
            let err = check_name(bad, "doing it").expect_err(bad);
            assert_eq!(error::exit_code(&err), 2, "{bad}");
            let want = crate::validate::device_name_problem(bad).unwrap();
            assert_eq!(err.to_string(), format!("doing it: {want}"));
        }
    }
}
