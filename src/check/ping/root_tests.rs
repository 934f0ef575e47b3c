//! Root tests: real pings between namespaces this test makes, joined by veth.

use super::*;
use crate::sys::netns;
use crate::sys::testns::TestNs;
use crate::wire::ipv4::Ipv4Packet;
use std::sync::{Arc, Barrier};

/// The nodes of one test, on the crate's namespace fixture.
struct Lab {
    nodes: Vec<TestNs>,
}

impl Lab {
    fn new(tag: &str, nodes: &[&str]) -> Lab {
        Lab {
            nodes: nodes
                .iter()
                .map(|n| TestNs::new(&format!("icmp-{tag}-{n}")))
                .collect(),
        }
    }

    fn ns(&self, i: usize) -> &str {
        &self.nodes[i].0
    }

    /// `ip -n NS ARGS...`, which must succeed.
    fn ip(&self, i: usize, args: &str) {
        self.nodes[i].ip(args);
    }

    /// A veth from node `a` (`dev_a`) to node `b` (`dev_b`), both up.
    fn link(&self, a: usize, dev_a: &str, b: usize, dev_b: &str, mtu: u32) {
        self.ip(
            a,
            &format!(
                "link add {dev_a} mtu {mtu} type veth peer name {dev_b} mtu {mtu} netns {}",
                self.ns(b)
            ),
        );
        self.ip(a, &format!("link set {dev_a} up"));
        self.ip(b, &format!("link set {dev_b} up"));
    }

    fn addr(&self, i: usize, dev: &str, cidr: &str) {
        let nodad = if cidr.contains(':') { " nodad" } else { "" };
        self.ip(i, &format!("addr add {cidr} dev {dev}{nodad}"));
    }

    fn sysctl(&self, i: usize, path: &'static str, value: &'static str) {
        netns::run_in(self.ns(i), move || Ok(std::fs::write(path, value)?))
            .unwrap_or_else(|e| panic!("writing {path}: {e:#}"));
    }

    fn ping(&self, i: usize, target: &str, opts: PingOptions) -> Result<PingReport, PingError> {
        let target: IpAddr = target.parse().unwrap();
        netns::run_in(self.ns(i), move || Ok(ping(target, &opts)))
            .expect("running in the namespace")
    }
}

/// Two nodes on one veth: 198.51.100.1/2 and 2001:db8:100::1/2 (documentation
/// ranges, reachable only inside these namespaces).
fn pair(tag: &str, mtu: u32) -> Lab {
    let lab = Lab::new(tag, &["a", "b"]);
    lab.link(0, "v0", 1, "v1", mtu);
    lab.addr(0, "v0", "198.51.100.1/24");
    lab.addr(1, "v1", "198.51.100.2/24");
    lab.addr(0, "v0", "2001:db8:100::1/64");
    lab.addr(1, "v1", "2001:db8:100::2/64");
    lab
}

fn assert_all_replies(r: &PingReport, count: u32) {
    let lines = r.lines().join("\n");
    assert_eq!(r.transmitted, count, "{lines}");
    assert_eq!(r.received(), count, "{lines}");
    assert_eq!(r.loss_percent(), 0.0);
    assert!(r.errors.is_empty(), "{lines}");
    let mut seqs: Vec<u16> = r.replies.iter().map(|x| x.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=count as u16).collect::<Vec<_>>(), "{lines}");
    for x in &r.replies {
        assert_eq!(x.from, r.target);
        assert_eq!(x.bytes, ICMP_HDR + r.payload);
        assert!(
            x.rtt > Duration::ZERO && x.rtt < Duration::from_secs(1),
            "{lines}"
        );
    }
    let (min, avg, max, _) = r.rtt_stats().unwrap();
    assert!(min <= avg && avg <= max);
}

#[test]
fn replies_v4_and_v6_both_ways() {
    let lab = pair("ok", 1500);
    for (from, to) in [
        (0, "198.51.100.2"),
        (1, "198.51.100.1"),
        (0, "2001:db8:100::2"),
        (1, "2001:db8:100::1"),
    ] {
        let r = lab.ping(from, to, PingOptions::default()).unwrap();
        assert_all_replies(&r, 3);
        assert!(r.replies.iter().all(|x| x.ttl == 64), "{:?}", r.replies);
        // Three requests 200 ms apart: about 400 ms from first to last.
        assert!(r.elapsed >= Duration::from_millis(400) && r.elapsed < Duration::from_millis(900));
        assert!(r.lines()[1].starts_with(&format!("64 bytes from {to}: icmp_seq=1 ttl=64 time=")));
    }
}

#[test]
fn back_to_back_requests_lose_no_reply() {
    // With no interval, replies must be read between sends: left unread,
    // the socket buffer would hold only about 256 of them.
    let lab = pair("burst", 1500);
    let opts = PingOptions {
        count: 1000,
        interval: Duration::ZERO,
        ..Default::default()
    };
    assert_all_replies(&lab.ping(0, "198.51.100.2", opts).unwrap(), 1000);
}

#[test]
fn missing_neighbour_gets_nothing() {
    let lab = pair("gone", 1500);
    let opts = PingOptions {
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    for to in ["198.51.100.99", "2001:db8:100::99"] {
        let t0 = Instant::now();
        let r = lab.ping(0, to, opts.clone()).unwrap();
        assert_eq!((r.transmitted, r.received()), (3, 0), "{:?}", r.lines());
        assert_eq!(r.loss_percent(), 100.0);
        assert!(r.rtt_stats().is_none());
        // 2 intervals + the wait for the last, not more.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
}

#[test]
fn dont_fragment_probe_finds_the_mtu() {
    let lab = pair("df", 1400);
    let df = |payload| PingOptions {
        payload,
        dont_fragment: true,
        count: 2,
        ..Default::default()
    };
    // 1372 + 8 ICMP + 20 IPv4 = 1400; IPv6 has a 40-byte header.
    for (to, fits) in [("198.51.100.2", 1372), ("2001:db8:100::2", 1352)] {
        assert_all_replies(&lab.ping(0, to, df(fits)).unwrap(), 2);
        match lab.ping(0, to, df(fits + 1)) {
            Err(e @ PingError::MessageTooLong { mtu: Some(1400) }) => {
                assert!(e.to_string().contains("path MTU is 1400"), "{e}")
            }
            other => panic!(
                "{to} payload {}: expected MessageTooLong(1400), got {other:?}",
                fits + 1
            ),
        }
        // Without DF the same size is fragmented and answered.
        let frag = PingOptions {
            payload: fits + 1,
            count: 2,
            ..Default::default()
        };
        assert_all_replies(&lab.ping(0, to, frag).unwrap(), 2);
    }
}

#[test]
fn concurrent_pings_in_one_namespace_keep_their_replies() {
    let lab = pair("conc", 1500);
    let ns = lab.ns(0).to_owned();
    // Same target, different payloads: a reply taken by the wrong ping
    // would show up as a wrong size. (Replies come within ~50 us, so a
    // missing identifier check rarely shows here; the parse tests pin it.)
    let runs = [
        ("198.51.100.2", 56),
        ("198.51.100.2", 100),
        ("2001:db8:100::2", 56),
        ("2001:db8:100::2", 100),
    ];
    let start = Arc::new(Barrier::new(runs.len()));
    let threads: Vec<_> = runs
        .iter()
        .map(|&(t, payload)| {
            let (ns, start, t) = (ns.clone(), start.clone(), t.parse::<IpAddr>().unwrap());
            std::thread::spawn(move || {
                netns::run_in(&ns, move || {
                    start.wait();
                    let opts = PingOptions {
                        count: 5,
                        interval: Duration::from_millis(20),
                        payload,
                        ..Default::default()
                    };
                    Ok(ping(t, &opts))
                })
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap().unwrap().unwrap();
        assert_all_replies(&r, 5);
    }
}

/// A ping's socket gets its own echo replies, not another ping's.
#[test]
fn a_ping_socket_sees_only_its_own_replies() {
    let lab = pair("filt", 1500);
    let got = netns::run_in(lab.ns(0), || {
        let target: IpAddr = "198.51.100.2".parse()?;
        let mine =
            open(target, &PingOptions::default(), 0x1111).map_err(|e| anyhow::anyhow!("{e}"))?;
        let other =
            open(target, &PingOptions::default(), 0x2222).map_err(|e| anyhow::anyhow!("{e}"))?;
        let to = SocketAddr::new(target, 0);
        for (sock, id) in [(&other, 0x2222u16), (&mine, 0x1111)] {
            let mut req = [ECHO_REQUEST_V4, 0, 0, 0, 0, 0, 0, 1];
            req[4..6].copy_from_slice(&id.to_be_bytes());
            let sum = checksum(&req);
            req[2..4].copy_from_slice(&sum.to_be_bytes());
            let addr = SockaddrStorage::from(to);
            socket::sendto(sock.as_raw_fd(), &req, &addr, MsgFlags::empty())?;
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut ids = Vec::new();
        let mut buf = [0u8; 1500];
        while let Ok(n) = socket::recv(mine.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            if let Ok(ip) = Ipv4Packet::new_checked(&buf[..n])
                && let Some(icmp) = ip.payload().get(..ICMP_HDR)
            {
                ids.push(u16::from_be_bytes([icmp[4], icmp[5]]));
            }
        }
        Ok(ids)
    })
    .unwrap();
    assert_eq!(got, vec![0x1111], "replies on the socket of ping 0x1111");
}

/// a --(1500)-- r --(1400)-- b, r forwarding; a and b route via r.
fn routed(tag: &str) -> Lab {
    let lab = Lab::new(tag, &["a", "r", "b"]);
    lab.link(0, "v0", 1, "ra", 1500);
    lab.link(1, "rb", 2, "v0", 1400);
    for (i, dev, v4, v6) in [
        (0, "v0", "198.51.100.1/24", "2001:db8:100::1/64"),
        (1, "ra", "198.51.100.2/24", "2001:db8:100::2/64"),
        (1, "rb", "203.0.113.2/24", "2001:db8:113::2/64"),
        (2, "v0", "203.0.113.1/24", "2001:db8:113::1/64"),
    ] {
        lab.addr(i, dev, v4);
        lab.addr(i, dev, v6);
    }
    lab.ip(0, "route add default via 198.51.100.2");
    lab.ip(0, "-6 route add default via 2001:db8:100::2");
    lab.ip(2, "route add default via 203.0.113.2");
    lab.ip(2, "-6 route add default via 2001:db8:113::2");
    lab.sysctl(1, "/proc/sys/net/ipv4/ip_forward", "1");
    lab.sysctl(1, "/proc/sys/net/ipv6/conf/all/forwarding", "1");
    // The kernel's ICMP rate limits stay at their defaults: a burst of
    // about 6 errors per peer covers these tests. (icmp_ratelimit=0 would
    // even starve net-unreachables, which share the per-peer tokens.)
    lab
}

fn assert_errors(r: &PingReport, want: &[String]) {
    assert_eq!(r.received(), 0, "{:?}", r.lines());
    assert_eq!(r.errors, want, "{:?}", r.lines());
    let stats = &r.lines()[r.lines().len() - 1];
    assert!(
        stats.contains(&format!("+{} errors", want.len())),
        "{stats}"
    );
}

#[test]
fn errors_from_the_path_are_recorded() {
    let lab = routed("path");
    // Routed, the reply has one hop less.
    let r = lab.ping(0, "203.0.113.1", PingOptions::default()).unwrap();
    assert_all_replies(&r, 3);
    assert!(r.replies.iter().all(|x| x.ttl == 63), "{:?}", r.replies);

    // (target, ttl, error line): r's errors come back to a.
    let cases = [
        (
            "203.0.113.1",
            Some(1),
            "From 198.51.100.2 {} Time to live exceeded",
        ),
        (
            "2001:db8:113::1",
            Some(1),
            "From 2001:db8:100::2 {} Time exceeded: Hop limit",
        ),
        (
            "192.0.2.1",
            None,
            "From 198.51.100.2 {} Destination Net Unreachable",
        ),
        (
            "2001:db8:ffff::1",
            None,
            "From 2001:db8:100::2 {} Destination unreachable: No route",
        ),
    ];
    for (to, ttl, line) in cases {
        let count = 2;
        let timeout = Duration::from_millis(500);
        let r = lab
            .ping(
                0,
                to,
                PingOptions {
                    ttl,
                    count,
                    timeout,
                    ..Default::default()
                },
            )
            .unwrap();
        let want: Vec<String> = (1..=count)
            .map(|s| line.replace("{}", &format!("icmp_seq={s}")))
            .collect();
        assert_errors(&r, &want);
    }

    // DF bigger than the r--b link: r answers "too big" once, then the
    // kernel knows the path MTU and refuses locally.
    for (to, from, payload, why) in [
        (
            "203.0.113.1",
            "198.51.100.2",
            1472,
            "Frag needed and DF set (mtu = 1400)",
        ),
        (
            "2001:db8:113::1",
            "2001:db8:100::2",
            1452,
            "Packet too big: mtu=1400",
        ),
    ] {
        let opts = PingOptions {
            count: 1,
            payload,
            dont_fragment: true,
            ..Default::default()
        };
        let r = lab.ping(0, to, opts.clone()).unwrap();
        assert_errors(&r, &[format!("From {from} icmp_seq=1 {why}")]);
        assert!(
            matches!(
                lab.ping(0, to, opts),
                Err(PingError::MessageTooLong { mtu: Some(1400) })
            ),
            "{to}: the path MTU should be known now"
        );
    }
}
