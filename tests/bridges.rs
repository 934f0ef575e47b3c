//! Root tests of bridges in nodes and the multicast flag of tunnel devices:
//! l2-islands joins two LANs into one segment across gretap (userspace
//! here; tests/vm.rs runs it on kernel GRE), and `multicast` reaches the
//! devices. Each test has its own namespace prefix (support::Scope).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The link of `dev` in namespace `ns`, from `ip -j -d link`.
fn link(ns: &str, dev: &str) -> Value {
    ip_json(ns, &["-d", "link", "show", "dev", dev])[0].clone()
}

fn has_flag(l: &Value, flag: &str) -> bool {
    l["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

#[test]
fn l2_islands_joins_two_lans_into_one_segment_across_gretap() {
    let s = Scope::new();
    // The example as it is, under a name of this branch's tests.
    let text = std::fs::read_to_string(root().join("topologies/l2-islands.yaml")).unwrap();
    let lab = s.yaml(
        "l2.yaml",
        &text.replace("name: l2-islands", "name: bridges-l2"),
    );
    assert!(lab.name.ends_with("bridges-l2"), "{}", lab.name);
    let up = lab.up(&[]);
    up.ok();
    assert!(
        up.stdout.contains("3 passed, 0 failed"),
        "up's checks: {up}"
    );
    for sw in ["sw1", "sw2"] {
        let ns = lab.ns(sw);
        let br = link(&ns, "br0");
        assert_eq!(br["linkinfo"]["info_kind"], "bridge", "{br}");
        assert!(has_flag(&br, "UP"), "{br}");
        assert_eq!(br["ifalias"], format!("grelab:{}", lab.name), "{br}");
        for port in ["lan0", "gt0"] {
            let l = link(&ns, port);
            assert_eq!(l["master"], "br0", "{sw}:{port} {l}");
            assert!(has_flag(&l, "UP"), "{l}");
        }
        // The userspace end's TAP device carries multicast.
        assert!(has_flag(&link(&ns, "gt0"), "MULTICAST"), "{sw}");
        let addrs = ip_json(&ns, &["addr", "show", "dev", "lan0"]);
        assert!(
            addrs[0]["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["family"] != "inet"),
            "a bridged port has no address: {addrs}"
        );
    }
    let (h1, h2) = (lab.ns("h1"), lab.ns("h2"));
    assert_pings(&h1, "10.1.0.12", 3);
    assert_pings(&h2, "10.1.0.1", 2);
    // ARP crossed the tunnel: h1 knows h2 by h2's own MAC, not a router's.
    let mac = link(&h2, "eth0")["address"].clone();
    let neigh = ip_json(&h1, &["neigh", "show", "dev", "eth0"]);
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == "10.1.0.12" && n["lladdr"] == mac),
        "h1 should know 10.1.0.12 at h2's MAC {mac}: {neigh}"
    );
    // The bridge on sw2 learnt h1's MAC on its tunnel port.
    let h1_mac = link(&h1, "eth0")["address"].as_str().unwrap().to_owned();
    let fdb = in_ns(&lab.ns("sw2"), &["bridge", "fdb", "show", "br", "br0"]);
    assert!(
        fdb.stdout
            .lines()
            .any(|l| l.starts_with(&h1_mac) && l.contains("dev gt0")),
        "{fdb}"
    );
    // A flow moves the TAP ends onto the eBPF fast path; bridged, they go
    // on carrying frames both ways through it.
    let flood = in_ns(
        &h1,
        &["ping", "-q", "-c", "200", "-i", "0.002", "10.1.0.12"],
    );
    assert!(flood.stdout.contains("200 received"), "{flood}");
    let stats = lab.dir().join("dataplane-stats.json");
    let read = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap_or_default())
            .unwrap_or(Value::Null)
    };
    let fast_both_ways = || {
        read()["tunnels"].as_array().is_some_and(|t| {
            t.len() == 2
                && t.iter().all(|t| {
                    t["fast_path"] == true
                        && t["fast_tx_packets"].as_u64().is_some_and(|p| p > 0)
                        && t["fast_rx_packets"].as_u64().is_some_and(|p| p > 0)
                })
        })
    };
    assert!(
        eventually(Duration::from_secs(5), fast_both_ways),
        "the bridged tunnel ends never got the fast path: {}",
        read()
    );
    assert_pings(&h2, "10.1.0.11", 3);
    lab.verify(&[]).ok();
    lab.down().ok();
    lab.assert_gone();
}

#[test]
fn multicast_false_takes_the_flag_off_a_userspace_tun_device() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    let on = s.yaml(
        "mc-on.yaml",
        &basic.replace("name: basic", "name: bridges-mc-on"),
    );
    on.start();
    for node in ["host1", "host2"] {
        let tun = link(&on.ns(node), "tun0");
        assert_eq!(tun["linkinfo"]["info_data"]["type"], "tun", "{tun}");
        assert!(has_flag(&tun, "MULTICAST"), "on by default: {tun}");
    }
    let off_text = basic
        .replace("name: basic", "name: bridges-mc-off")
        .replace("    ttl: 255\n", "    ttl: 255\n    multicast: false\n");
    assert!(off_text.contains("multicast: false"));
    // A scope of its own: another namespace prefix.
    let s2 = Scope::new();
    let off = s2.yaml("mc-off.yaml", &off_text);
    off.start();
    for node in ["host1", "host2"] {
        let tun = link(&off.ns(node), "tun0");
        assert!(!has_flag(&tun, "MULTICAST"), "{tun}");
        assert!(has_flag(&tun, "UP"), "{tun}");
    }
    assert_pings(&off.ns("host1"), "192.168.50.2", 2);
    for lab in [on, off] {
        lab.down().ok();
        lab.assert_gone();
    }
}
