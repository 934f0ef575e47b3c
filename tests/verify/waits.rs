//! Checks that wait (`within`), the tcp and multicast kinds, and fast pings,
//! on real labs: a check passes once its condition appears, fails with the
//! last state it saw when it never does, and multicast is judged by what
//! the path carries.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::*;

/// The basic lab's text up to its checks, then `checks`.
fn basic_with(checks: &str) -> String {
    example_with("basic.yaml", checks)
}

/// Example `file`'s text up to its checks, then `checks`.
fn example_with(file: &str, checks: &str) -> String {
    let text = std::fs::read_to_string(root().join("topologies").join(file)).unwrap();
    let (head, _) = text.split_once("checks:").unwrap();
    format!("{head}checks:\n{checks}")
}

/// A TCP listener in namespace `ns` (a socket stays in the namespace it was
/// made in, so the thread that makes it may leave).
fn listen_in(ns: &str, port: u16) -> TcpListener {
    let ns = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind(("0.0.0.0", port)).unwrap()
    })
    .join()
    .unwrap()
}

/// Check `i` of a JSON report: status, summary, details as one text.
fn check(doc: &Value, i: usize) -> (String, String, String) {
    let c = &doc["checks"][i];
    (
        c["status"].as_str().unwrap().to_owned(),
        c["summary"].as_str().unwrap().to_owned(),
        c["details"].to_string(),
    )
}

#[test]
fn a_check_with_within_passes_once_its_condition_appears() {
    let s = Scope::new();
    let lab = s.yaml(
        "waits.yaml",
        &basic_with(
            "  - tcp: {from: host1, to: 192.168.50.2, port: 8179, within: 10s, timeout: 1s}\n",
        ),
    );
    lab.start();
    let file = lab.name.clone();
    let start = Instant::now();
    let verify = std::thread::spawn(move || {
        grelab(&["verify", "--lab", &file, "--no-derived", "--format", "json"])
    });
    std::thread::sleep(Duration::from_millis(700));
    let _listener = listen_in(&lab.ns("host2"), 8179);
    let out = verify.join().unwrap();
    let took = start.elapsed();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let (status, summary, _) = check(&doc, 0);
    assert_eq!(status, "pass", "{doc:#}");
    assert!(
        summary.contains("connected to 192.168.50.2:8179"),
        "{summary}"
    );
    assert!(
        summary.contains("(attempt "),
        "it passed at once: {summary}"
    );
    assert!(took >= Duration::from_millis(700), "{took:?}");
    // Attempts at most 0.5 s apart: it saw the listener soon after it came.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn a_check_with_within_fails_with_the_last_state_it_saw() {
    let s = Scope::new();
    let lab = s.yaml(
        "fails.yaml",
        &basic_with(
            "  - route: {from: host1, to: 192.168.50.2, dev: veth0, within: 500ms}
  - exec: {node: host1, cmd: [sh, -c, \"echo tried-this; exit 3\"], within: 300ms}
  - tcp: {from: host1, to: 192.168.50.2, port: 9}
  - ping: {from: host1, to: 192.168.50.2, count: 20}
",
        ),
    );
    lab.start();
    let start = Instant::now();
    let (code, doc) = lab.verify_json(&["--no-derived"]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{doc:#}");
    let (status, summary, _) = check(&doc, 0);
    assert_eq!(status, "fail");
    assert!(summary.starts_with("still failing after"), "{summary}");
    assert!(
        summary.contains("last: leaves through tun0") && summary.contains("expected veth0"),
        "{summary}"
    );
    let (status, summary, details) = check(&doc, 1);
    assert_eq!(status, "fail");
    assert!(
        summary.contains("attempts); last: exited 3, expected 0"),
        "{summary}"
    );
    assert!(details.contains("tried-this"), "{details}");
    // Without `within`, once, as before.
    let (status, summary, _) = check(&doc, 2);
    assert_eq!(status, "fail");
    assert!(
        summary.contains("connecting to 192.168.50.2:9") && summary.contains("refused"),
        "{summary}"
    );
    assert!(!summary.contains("attempt"), "{summary}");
    // 20 echoes at the default interval: milliseconds, not 200 ms apart.
    let (status, summary, _) = check(&doc, 3);
    assert_eq!(status, "pass", "{summary}");
    let ping_s = doc["checks"][3]["duration"].as_f64().unwrap();
    assert!(ping_s < 0.5, "20 echoes took {ping_s} s");
    // The checks ran side by side: the longest `within` bounds the run.
    assert!(took < Duration::from_secs(2), "verify took {took:?}");
}

/// Two nodes on one veth, IPv4 and IPv6.
const PAIR: &str = "name: mcast
nodes: {a: {}, b: {}}
links:
  - endpoints: [\"a:e0\", \"b:e0\"]
    addresses: [[10.0.0.1/24, \"fd00::1/64\"], [10.0.0.2/24, \"fd00::2/64\"]]
checks:
  - multicast: {from: a, to: b, group: 239.1.2.3, dev: e0}
  - multicast: {from: a, to: b, group: \"ff0e::123\", port: 6000}
  - multicast: {from: a, to: b, group: 239.1.2.3, join: e0, timeout: 1s}
";

#[test]
fn multicast_crosses_a_veth_and_fails_without_a_route_or_the_multicast_flag() {
    let s = Scope::new();
    let lab = s.yaml("mcast.yaml", PAIR);
    lab.start();
    let (code, doc) = lab.verify_json(&["--no-derived"]);
    assert_eq!(code, 1, "{doc:#}");
    for i in [0, 1] {
        let (status, summary, details) = check(&doc, i);
        assert_eq!(status, "pass", "{doc:#}");
        assert!(summary.contains("arrived on `e0`"), "{summary}");
        assert!(details.contains("joined"), "{details}");
    }
    // a has no route to 239.0.0.0/4 and the check names no `dev`.
    let (status, summary, details) = check(&doc, 2);
    assert_eq!(status, "fail");
    assert!(summary.contains("Network is unreachable"), "{summary}");
    assert!(details.contains("give the check a `dev`"), "{details}");

    // The kernel still delivers through an interface without the flag;
    // the check fails, as a routing daemon would refuse it.
    ip(&["-n", &lab.ns("b"), "link", "set", "e0", "multicast", "off"]).ok();
    let (_, doc) = lab.verify_json(&["--no-derived"]);
    for i in [0, 1] {
        let (status, summary, _) = check(&doc, i);
        assert_eq!(status, "fail", "{doc:#}");
        assert!(
            summary.contains("`e0` of b lacks the MULTICAST flag"),
            "{summary}"
        );
    }
}

#[test]
fn multicast_crosses_a_userspace_gretap_both_ways() {
    let s = Scope::new();
    let lab = s.yaml(
        "mcast-gretap.yaml",
        &example_with(
            "gretap.yaml",
            "  - multicast: {from: host1, to: host2, group: 239.1.1.1, dev: gtap0}
  - multicast: {from: host2, to: host1, group: 239.1.1.1, dev: gtap0, join: gtap0, port: 6002}
",
        ),
    );
    lab.start();
    let (code, doc) = lab.verify_json(&["--no-derived"]);
    assert_eq!(code, 0, "{doc:#}");
    for (i, from) in [(0, "192.168.60.1"), (1, "192.168.60.2")] {
        let (_, summary, _) = check(&doc, i);
        assert!(
            summary.contains(&format!("from {from} arrived on `gtap0`")),
            "{summary}"
        );
    }
}

#[test]
fn multicast_crosses_the_userspace_tunnel_but_not_the_router() {
    let s = Scope::new();
    let lab = s.yaml(
        "mcast-tunnel.yaml",
        &basic_with(
            "  - multicast: {from: host1, to: host2, group: 239.1.1.1, dev: tun0}
  - multicast: {from: host1, to: host2, group: 239.1.1.1, port: 6001, timeout: 300ms}
",
        ),
    );
    lab.start();
    let (code, doc) = lab.verify_json(&["--no-derived"]);
    assert_eq!(code, 1, "{doc:#}");
    let (status, summary, _) = check(&doc, 0);
    assert_eq!(status, "pass", "{doc:#}");
    assert!(
        summary.contains("from 192.168.50.1 arrived on `tun0`"),
        "{summary}"
    );
    // The route lookup sends it to the router, which forwards no multicast.
    let (status, summary, details) = check(&doc, 1);
    assert_eq!(status, "fail", "{doc:#}");
    assert!(
        summary.contains("the path does not carry multicast"),
        "{summary}"
    );
    assert!(details.contains("sent through `veth0`"), "{details}");
}
