//! Whether the calling thread's network namespace filters packets: any
//! nftables chain (an nfnetlink dump; iptables-nft makes chains too), or
//! any table of legacy iptables. The dataplane's fast path bypasses the
//! netfilter hooks a packet of kernel GRE or of the userspace path passes,
//! so a namespace where this finds something keeps its tunnel ends off it.
//!
//! A small nfnetlink dump of its own: rtnl speaks rtnetlink, this the
//! netfilter family, which no crate here models.

use std::io;

use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
/// Legacy iptables' tables of this namespace, one name a line.
const LEGACY: [(&str, &str); 2] = [
    ("iptables", "/proc/thread-self/net/ip_tables_names"),
    ("ip6tables", "/proc/thread-self/net/ip6_tables_names"),
];

/// What filters packets in the calling thread's namespace, in a few words
/// (`nftables chain input of table inet filter`), or None.
pub fn rules_here() -> io::Result<Option<String>> {
    let mut found = Vec::new();
    let chains = nft_chains()?;
    if let Some(first) = chains.first() {
        let more = match chains.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        found.push(format!("nftables chain {first}{more}"));
    }
    for (tool, path) in LEGACY {
        let tables = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No legacy iptables in this kernel (or not loaded): none.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let names: Vec<&str> = tables.split_whitespace().collect();
        if !names.is_empty() {
            found.push(format!("{tool}-legacy tables {}", names.join(", ")));
        }
    }
    Ok((!found.is_empty()).then(|| found.join("; ")))
}

/// Every nftables chain of the namespace, as `NAME of table FAMILY TABLE`.
fn nft_chains() -> io::Result<Vec<String>> {
    let socket = match Socket::new(NETLINK_NETFILTER) {
        Ok(s) => s,
        // No nfnetlink in this kernel: no nftables either.
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut req = Vec::with_capacity(20);
    req.extend(20u32.to_ne_bytes());
    req.extend(((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN).to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // sequence
    req.extend(0u32.to_ne_bytes()); // port: the kernel's
    req.extend([libc::AF_UNSPEC as u8, 0, 0, 0]); // every family, NFNETLINK_V0
    socket.send_to(&req, &SocketAddr::new(0, 0), 0)?;
    let mut chains = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut rest = &data[..];
        while rest.len() >= 16 {
            let u16_at = |i: usize| u16::from_ne_bytes([rest[i], rest[i + 1]]);
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len < 16 || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a malformed nfnetlink reply",
                ));
            }
            let (kind, body) = (u16_at(4), &rest[16..len]);
            match kind {
                NLMSG_DONE => return Ok(chains),
                NLMSG_ERROR => {
                    let code = body
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return match -code {
                        0 => Ok(chains),
                        // No nf_tables in this kernel: no chains.
                        libc::EOPNOTSUPP | libc::ENOENT => Ok(Vec::new()),
                        errno => Err(io::Error::from_raw_os_error(errno)),
                    };
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN => {
                    chains.push(describe_chain(body));
                }
                _ => {}
            }
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        }
    }
}

/// `NAME of table FAMILY TABLE` from a chain message's body (nfgenmsg, then
/// attributes).
fn describe_chain(body: &[u8]) -> String {
    let family = match body.first().map(|&f| i32::from(f)) {
        Some(libc::NFPROTO_INET) => "inet",
        Some(libc::NFPROTO_IPV4) => "ip",
        Some(libc::NFPROTO_IPV6) => "ip6",
        Some(libc::NFPROTO_ARP) => "arp",
        Some(libc::NFPROTO_BRIDGE) => "bridge",
        Some(libc::NFPROTO_NETDEV) => "netdev",
        _ => "?",
    };
    let (mut table, mut name) = ("?".to_owned(), "?".to_owned());
    let mut attrs = body.get(4..).unwrap_or_default();
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        let Some(value) = attrs.get(4..len.max(4)) else {
            break;
        };
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches('\0')
                .to_owned()
        };
        match kind {
            NFTA_CHAIN_TABLE => table = text(),
            NFTA_CHAIN_NAME => name = text(),
            _ => {}
        }
        attrs = attrs
            .get(len.max(4).next_multiple_of(4)..)
            .unwrap_or_default();
    }
    format!("{name} of table {family} {table}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn a_chain_message_names_its_table() {
        let mut body = vec![libc::NFPROTO_INET as u8, 0, 0, 0];
        body.extend(attr(NFTA_CHAIN_TABLE, b"filter\0"));
        body.extend(attr(2, &7u64.to_be_bytes())); // a handle, skipped
        body.extend(attr(NFTA_CHAIN_NAME, b"input\0"));
        assert_eq!(describe_chain(&body), "input of table inet filter");
        assert_eq!(
            describe_chain(&[2, 0, 0, 0, 200, 0]),
            "? of table ip ?",
            "a cut attribute"
        );
        assert_eq!(describe_chain(&[]), "? of table ? ?");
    }

    // Namespaces of their own: root only (tests/run.sh).
    #[cfg(feature = "root-tests")]
    fn in_new_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root)");
            f()
        })
        .join()
        .unwrap()
    }

    /// Needs root and nft: a namespace of its own, first empty, then with
    /// a table and no chain, then with a chain.
    #[test]
    #[cfg(feature = "root-tests")]
    fn nftables_chains_are_found_in_the_namespace_only() {
        let found = in_new_ns(|| {
            let nft = |script: &str| {
                let ok = std::process::Command::new("nft")
                    .args(["-f", "-"])
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write;
                        c.stdin.take().unwrap().write_all(script.as_bytes())?;
                        c.wait()
                    })
                    .expect("running nft (Debian package nftables)");
                assert!(ok.success(), "nft -f: {script}");
            };
            let empty = rules_here().unwrap();
            nft("add table ip t");
            let table_only = rules_here().unwrap();
            nft("add chain ip t input { type filter hook input priority 0; }");
            (empty, table_only, rules_here().unwrap())
        });
        assert_eq!(found.0, None);
        assert_eq!(found.1, None, "a table without chains filters nothing");
        assert_eq!(
            found.2.as_deref(),
            Some("nftables chain input of table ip t")
        );
    }

    /// Needs root and iptables-legacy.
    #[test]
    #[cfg(feature = "root-tests")]
    fn legacy_iptables_tables_are_found() {
        let found = in_new_ns(|| {
            let ok = std::process::Command::new("iptables-legacy")
                .args(["-A", "INPUT", "-p", "gre", "-j", "DROP"])
                .status()
                .expect("running iptables-legacy (Debian package iptables)");
            assert!(ok.success());
            rules_here().unwrap()
        });
        assert_eq!(found.as_deref(), Some("iptables-legacy tables filter"));
    }
}
