//! Root tests of `up`, `down`, `status` and `exec` on real labs: what the
//! kernel reports after `up`, traffic across the userspace GRE dataplane,
//! idempotence, rollback, teardown without a record, labs side by side.
//! Each test has its own namespace prefix, so they run in parallel.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The link of `dev` in namespace `ns`, from `ip -j -d link`.
fn link(ns: &str, dev: &str) -> Value {
    ip_json(ns, &["-d", "link", "show", "dev", dev])[0].clone()
}

/// The addresses (`addr/len`) of family `family` (`inet`/`inet6`) on `dev`.
fn addrs(ns: &str, dev: &str, family: &str) -> Vec<String> {
    ip_json(ns, &["addr", "show", "dev", dev])[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == family)
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn flags(l: &Value) -> Vec<&str> {
    l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

/// A sysctl as seen inside `ns`.
fn sysctl(ns: &str, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = in_ns(ns, &["cat", &path]);
    out.ok();
    out.stdout.trim().to_owned()
}

#[test]
fn up_builds_the_basic_lab_as_the_file_says_and_down_removes_it() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    let up = lab.up(&[]);
    up.ok();
    assert!(
        up.stdout.contains(&format!("lab `{}` is up", lab.name)),
        "{up}"
    );
    // This kernel (and CI's) has no ip_gre; the VM tests cover kernel GRE.
    assert!(
        up.stdout.contains("backend: userspace for gre tunnels"),
        "auto should pick the userspace dataplane here: {up}"
    );
    assert!(
        up.stdout.contains("PASS") && up.stdout.contains("1 passed, 0 failed"),
        "up's ping check: {up}"
    );

    let mark = format!("grelab:{}", lab.name);
    // (node, interface, address, peer node, peer interface)
    let veths = [
        ("host1", "veth0", "172.16.10.2/24", "internet", "veth1"),
        ("internet", "veth1", "172.16.10.1/24", "host1", "veth0"),
        ("internet", "veth2", "152.16.10.1/24", "host2", "veth3"),
        ("host2", "veth3", "152.16.10.2/24", "internet", "veth2"),
    ];
    let tunnels = [
        ("host1", "tun0", "192.168.50.1/30"),
        ("host2", "tun0", "192.168.50.2/30"),
    ];
    for node in ["host1", "internet", "host2"] {
        let ns = lab.ns(node);
        let links = ip_json(&ns, &["-d", "link", "show"]);
        let mut have: Vec<&str> = links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = std::iter::once("lo")
            .chain(veths.iter().filter(|v| v.0 == node).map(|v| v.1))
            .chain(tunnels.iter().filter(|t| t.0 == node).map(|t| t.1))
            .collect();
        have.sort();
        want.sort();
        assert_eq!(have, want, "interfaces of {ns}");
        for l in links.as_array().unwrap() {
            assert_eq!(
                l["ifalias"],
                mark.as_str(),
                "the mark on {ns} {}",
                l["ifname"]
            );
        }
    }

    for (node, dev, addr, peer_node, peer) in veths {
        let ns = lab.ns(node);
        let l = link(&ns, dev);
        let what = format!("{ns} {dev}");
        assert_eq!(l["linkinfo"]["info_kind"], "veth", "{what}: {l}");
        assert_eq!(l["mtu"], 1500, "{what}");
        assert!(flags(&l).contains(&"UP"), "{what} is not up: {l}");
        assert!(
            eventually(Duration::from_secs(3), || link(&ns, dev)["operstate"]
                == "UP"),
            "{what} never reached operstate UP: {}",
            link(&ns, dev)
        );
        assert_eq!(addrs(&ns, dev, "inet"), [addr], "{what}");
        // The peer is in the right namespace, and is this veth's peer.
        let text = ip(&["-n", &ns, "-o", "-d", "link", "show", "dev", dev]);
        text.ok();
        assert!(
            text.stdout
                .contains(&format!("link-netns {}", lab.ns(peer_node))),
            "{what}'s peer should be in {}: {text}",
            lab.ns(peer_node)
        );
        let p = link(&lab.ns(peer_node), peer);
        assert_eq!(l["link_index"], p["ifindex"], "{what}'s peer is {peer}");
        assert_eq!(p["link_index"], l["ifindex"], "{peer}'s peer is {what}");
    }

    for (node, dev, addr) in tunnels {
        let ns = lab.ns(node);
        let l = link(&ns, dev);
        let what = format!("{ns} {dev}");
        assert_eq!(l["linkinfo"]["info_kind"], "tun", "{what}: {l}");
        assert_eq!(l["linkinfo"]["info_data"]["type"], "tun", "{what}: {l}");
        assert_eq!(l["mtu"], 1476, "{what}");
        assert!(flags(&l).contains(&"UP"), "{what} is not up: {l}");
        assert_eq!(addrs(&ns, dev, "inet"), [addr], "{what}");
    }

    for (node, gateway, dev) in [
        ("host1", "172.16.10.1", "veth0"),
        ("host2", "152.16.10.1", "veth3"),
    ] {
        let routes = ip_json(&lab.ns(node), &["route", "show", "default"]);
        let r = routes.as_array().unwrap();
        assert_eq!(r.len(), 1, "{node}'s default routes: {routes}");
        assert_eq!(r[0]["gateway"], gateway, "{node}: {routes}");
        assert_eq!(r[0]["dev"], dev, "{node}: {routes}");
    }
    let routes = ip_json(&lab.ns("internet"), &["route", "show", "default"]);
    assert_eq!(
        routes,
        Value::Array(vec![]),
        "the router has no default route"
    );

    assert_eq!(sysctl(&lab.ns("internet"), "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl(&lab.ns("host1"), "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl(&lab.ns("host2"), "net.ipv4.ip_forward"), "0");

    let out = in_ns(
        &lab.ns("host1"),
        &["ping", "-c", "3", "-W", "1", "192.168.50.2"],
    );
    assert!(
        out.code == 0 && out.stdout.contains("3 packets transmitted, 3 received"),
        "{out}"
    );

    let st = lab.status().expect("status lists the lab");
    assert_eq!(st["status"], "up", "{st}");
    assert_eq!(st["namespaces"].as_array().unwrap().len(), 3, "{st}");
    let human = grelab(&["status"]);
    human.ok();
    assert!(
        human.stdout.contains(&format!("{}: up", lab.name)),
        "{human}"
    );

    let dp = lab.dataplane_pid();
    assert!(alive(dp), "the dataplane {dp} runs while the lab is up");
    let file = lab.file.to_string_lossy();
    let down = grelab(&["down", &file, "--prefix", &lab.prefix]);
    down.ok();
    assert!(
        down.stdout
            .contains("3 namespaces removed, dataplane stopped"),
        "{down}"
    );
    lab.assert_gone();
    assert!(!alive(dp), "dataplane {dp} still runs after down");
    // No device of the lab went astray into the root namespace.
    let root_links = ip(&["-j", "link", "show"]);
    root_links.ok();
    assert!(!root_links.stdout.contains(&mark), "{root_links}");
    assert!(
        lab.status().is_none(),
        "status still lists the lab after down"
    );
}

#[test]
fn ipv6_addresses_on_interfaces_whose_names_hold_dots() {
    // The interface name is one sysctl path component, dots and all.
    let s = Scope::new();
    let lab = s.yaml(
        "dots.yaml",
        "name: dots\nnodes:\n  a: {}\n  b: {}\nlinks:\n  - endpoints: [\"a:v.1\", \"b:v.2\"]\n    addresses: [\"fd00:9::1/64\", \"fd00:9::2/64\"]\n",
    );
    lab.start();
    let v6 = addrs(&lab.ns("a"), "v.1", "inet6");
    assert!(v6.contains(&"fd00:9::1/64".to_owned()), "{v6:?}");
    let dad = in_ns(
        &lab.ns("a"),
        &["cat", "/proc/sys/net/ipv6/conf/v.1/accept_dad"],
    );
    assert_eq!(dad.stdout.trim(), "0", "{dad}");
    lab.down().ok();
    lab.assert_gone();
}

#[test]
fn a_capture_on_the_underlay_shows_the_seed_packet() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    assert_seed_packet(&lab);
}

/// Pings across the basic lab's tunnel and checks what tcpdump -v shows of
/// the echo request on host1's veth0: the seed's packet.
fn assert_seed_packet(lab: &Lab) {
    // GRE carrying IPv4 (protocol type 0x0800 at GRE offset 2): the first
    // such packet is the echo request. (IPv6 chatter is another test's job.)
    let cap = Tcpdump::start(
        &lab.ns("host1"),
        "veth0",
        1,
        "proto 47 and ip[22:2] = 0x0800",
    );
    let p = ping(&lab.ns("host1"), "192.168.50.2", 3);
    let text = cap.finish(Duration::from_secs(10));
    assert!(p.stdout.contains("3 received"), "{p}");
    for want in [
        "proto GRE (47)",
        "ttl 255",
        "flags [DF]",
        "length 108",
        "172.16.10.2 > 152.16.10.2: GREv0",
        "192.168.50.1 > 192.168.50.2: ICMP echo request",
    ] {
        assert!(text.contains(want), "capture lacks `{want}`:\n{text}");
    }
}

/// A flow moves the userspace tunnel onto the in-kernel fast path (where
/// the kernel has eBPF and TCX, as here); the wire does not change.
#[test]
fn a_flow_gets_the_fast_path_and_the_wire_stays_the_same() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let flood = in_ns(
        &lab.ns("host1"),
        &["ping", "-q", "-c", "100", "-i", "0.002", "192.168.50.2"],
    );
    assert!(flood.stdout.contains("100 received"), "{flood}");
    let stats = lab.dir().join("dataplane-stats.json");
    let read = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap_or_default())
            .unwrap_or(Value::Null)
    };
    let all_fast = || {
        read()["tunnels"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["fast_path"] == true))
    };
    assert!(
        eventually(Duration::from_secs(5), all_fast),
        "the tunnel ends never got the fast path: {}",
        read()
    );
    let status = lab.status().expect("status lists the lab");
    for t in status["tunnels"].as_array().expect("tunnels in status") {
        assert_eq!(t["fast_path"], true, "status: {status}");
    }
    assert_seed_packet(&lab);
    assert!(
        eventually(Duration::from_secs(2), || {
            read()["tunnels"][0]["fast_tx_packets"]
                .as_u64()
                .is_some_and(|n| n >= 3)
        }),
        "the fast path did not carry the pings: {}",
        read()
    );
}

/// `nft ARGS` in namespace `ns`, which must succeed.
fn nft(ns: &str, args: &str) {
    require_tool("nft");
    let mut cmd = vec!["nft"];
    cmd.extend(args.split_whitespace());
    in_ns(ns, &cmd).ok();
}

/// Lab `lab`'s tunnel end `tun0` in namespace `ns`, as `status --format json` lists it.
fn tunnel_status(lab: &Lab, ns: &str) -> Value {
    lab.status()
        .and_then(|s| {
            s["tunnels"]
                .as_array()?
                .iter()
                .find(|t| t["namespace"] == ns)
                .cloned()
        })
        .unwrap_or(Value::Null)
}

/// The fast path bypasses netfilter's hooks, so a node with nftables rules
/// keeps its tunnel end off it, whether the rules come before the traffic
/// or while the end is on it: a firewall dropping GRE stops the tunnel,
/// as with kernel GRE, and `status` says why.
#[test]
fn netfilter_rules_keep_a_tunnel_end_off_the_fast_path() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let (h1, h2) = (lab.ns("host1"), lab.ns("host2"));
    let drop_gre = || {
        nft(&h2, "add table ip fw");
        nft(
            &h2,
            "add chain ip fw input { type filter hook input priority 0 ; }",
        );
        nft(&h2, "add rule ip fw input ip protocol gre drop");
    };
    let flood = |from: &str, to: &str| {
        in_ns(
            from,
            &["ping", "-q", "-c", "100", "-i", "0.002", "-W", "1", to],
        );
    };
    let off_for_netfilter = || {
        let t = tunnel_status(&lab, &h2);
        t["fast_path"] == false
            && t["fast_path_off"]
                .as_str()
                .is_some_and(|w| w.contains(&format!("netfilter rules in namespace `{h2}`")))
    };
    let no_replies = |from: &str, to: &str| {
        let out = ping(from, to, 3);
        assert!(
            out.stdout.contains("3 packets transmitted, 0 received"),
            "{from} -> {to} crossed a node that drops GRE: {out}\nstatus: {}",
            tunnel_status(&lab, &h2)
        );
    };

    // Rules first: host2's end sends 100 echo requests (their replies
    // are dropped), enough for the fast path, which it does not get.
    drop_gre();
    flood(&h2, "192.168.50.1");
    assert!(
        eventually(Duration::from_secs(5), off_for_netfilter),
        "status does not say why host2's end is off the fast path: {}",
        tunnel_status(&lab, &h2)
    );
    no_replies(&h1, "192.168.50.2");
    no_replies(&h2, "192.168.50.1");
    let text = grelab(&["status"]);
    text.ok();
    assert!(
        text.stdout.contains(&format!(
            "tunnel tun0 on {h2}: userspace (not on the eBPF fast path: netfilter rules in namespace `{h2}`: nftables chain input of table ip fw)"
        )),
        "{text}"
    );

    // Without rules the end gets the fast path; rules added then take it off again.
    nft(&h2, "flush ruleset");
    assert!(
        eventually(Duration::from_secs(15), || {
            flood(&h1, "192.168.50.2");
            tunnel_status(&lab, &h2)["fast_path"] == true
        }),
        "host2's end never got the fast path without rules: {}",
        tunnel_status(&lab, &h2)
    );
    assert_pings(&h1, "192.168.50.2", 3);
    drop_gre();
    assert!(
        eventually(Duration::from_secs(5), off_for_netfilter),
        "host2's end stayed on the fast path under a rule dropping GRE: {}",
        tunnel_status(&lab, &h2)
    );
    no_replies(&h1, "192.168.50.2");
}

#[test]
fn gretap_resolves_arp_across_the_tunnel() {
    let s = Scope::new();
    let lab = s.example("gretap.yaml");
    lab.start();
    let (h1, h2) = (lab.ns("host1"), lab.ns("host2"));
    let tap = link(&h1, "gtap0");
    assert_eq!(tap["linkinfo"]["info_data"]["type"], "tap", "{tap}");
    assert_eq!(tap["mtu"], 1462, "{tap}");
    assert_pings(&h1, "192.168.60.2", 3);
    let mac = link(&h2, "gtap0")["address"].clone();
    let neigh = ip_json(&h1, &["neigh", "show", "dev", "gtap0"]);
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == "192.168.60.2" && n["lladdr"] == mac),
        "host1 should know 192.168.60.2 at host2's gtap0 MAC {mac}: {neigh}"
    );
}

#[test]
fn ipv6_overlay_crosses_the_ipv4_underlay() {
    let s = Scope::new();
    let lab = s.example("ipv6-over-ipv4.yaml");
    lab.start();
    let global: Vec<String> = addrs(&lab.ns("host1"), "tun6", "inet6")
        .into_iter()
        .filter(|a| !a.starts_with("fe80:"))
        .collect();
    assert_eq!(global, ["fd00:50::1/64"]);
    assert_pings(&lab.ns("host1"), "fd00:50::2", 3);
    assert_pings(&lab.ns("host2"), "fd00:50::1", 3);
}

#[test]
fn keyed_tunnels_carry_their_own_keys() {
    let s = Scope::new();
    let lab = s.example("keyed.yaml");
    lab.start();
    let h1 = lab.ns("host1");
    assert_pings(&h1, "192.168.50.2", 3);
    assert_pings(&h1, "192.168.51.2", 3);
    // Two requests and two replies per tunnel cross host1's veth0.
    let cap = Tcpdump::start(&h1, "veth0", 8, "proto 47 and ip[22:2] = 0x0800");
    ping(&h1, "192.168.50.2", 2);
    ping(&h1, "192.168.51.2", 2);
    let text = cap.finish(Duration::from_secs(10));
    // One block per packet: a line at column 0, then indented lines.
    let mut packets: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) || packets.is_empty() {
            packets.push(String::new());
        }
        packets.last_mut().unwrap().push_str(line);
    }
    let with = |key: &str| {
        packets
            .iter()
            .filter(|p| p.contains(key))
            .collect::<Vec<_>>()
    };
    let (k1, k2) = (with("key=0x1,"), with("key=0x2,"));
    assert!(
        !k1.is_empty() && !k2.is_empty(),
        "both keys on the wire:\n{text}"
    );
    assert!(
        k1.iter().all(|p| p.contains("192.168.50.")),
        "key 1 is tun0's:\n{text}"
    );
    assert!(
        k2.iter().all(|p| p.contains("192.168.51.")),
        "key 2 is tun1's:\n{text}"
    );
}

#[test]
fn up_is_idempotent_and_applies_a_changed_file() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let pid = lab.dataplane_pid();
    let again = lab.up(&["--no-check"]);
    again.ok();
    assert!(again.stdout.contains("unchanged"), "{again}");
    assert_eq!(
        lab.dataplane_pid(),
        pid,
        "an unchanged up keeps the dataplane"
    );

    let basic = std::fs::read_to_string(&lab.file).unwrap();
    let changed = s.yaml(
        "changed.yaml",
        &basic.replace("192.168.50.1/30", "192.168.50.5/30"),
    );
    assert_eq!(changed.name, lab.name);
    // A changed file changes the running lab in place (tests/reconcile.rs).
    let out = changed.up(&["--no-check"]);
    out.ok();
    assert!(out.stdout.contains("applied"), "{out}");
    assert_eq!(lab.dataplane_pid(), pid, "the tunnel did not change");
    assert_eq!(addrs(&lab.ns("host1"), "tun0", "inet"), ["192.168.50.5/30"]);
}

/// `up` of `lab` fails midway (the file is valid) and leaves nothing.
fn assert_rolls_back(lab: &Lab, why: &str) {
    let file = lab.file.to_string_lossy();
    grelab(&["validate", &file]).ok();
    let out = lab.up(&[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("everything created was removed") && out.stderr.contains(why),
        "the error should say what failed ({why}): {out}"
    );
    lab.assert_gone();
}

#[test]
fn up_rolls_back_when_the_kernel_refuses_a_route() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    // Valid (the gateway is on a connected subnet), but the connected
    // route of veth0 is the same route: the kernel says it exists.
    let text = basic.replacen(
        "routes: [{to: default, via: 172.16.10.1}]",
        "routes: [{to: default, via: 172.16.10.1}, {to: 172.16.10.0/24, via: 172.16.10.1}]",
        1,
    );
    assert_rolls_back(&s.yaml("route.yaml", &text), "172.16.10.0/24");
}

#[test]
fn up_rolls_back_after_the_dataplane_started() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    // A net.* key this kernel does not have: found out in the last phase,
    // after namespaces, veths and the dataplane exist.
    let text = basic.replacen(
        "forwarding: true",
        "forwarding: true\n    sysctls: {net.ipv4.no_such_key: 1}",
        1,
    );
    assert_rolls_back(&s.yaml("sysctl.yaml", &text), "net.ipv4.no_such_key");
}

#[test]
fn down_without_the_record_removes_everything_by_the_marks() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let dp = lab.dataplane_pid();
    std::fs::remove_dir_all(lab.dir()).unwrap();
    assert!(lab.status().is_none());
    let out = lab.down();
    out.ok();
    assert!(
        out.stdout
            .contains("3 namespaces removed, dataplane stopped"),
        "{out}"
    );
    lab.assert_gone();
    assert!(!alive(dp), "dataplane {dp} survived down");
}

#[test]
fn down_and_up_leave_a_namespace_grelab_did_not_make_alone() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    let h1 = lab.ns("host1");
    ip(&["netns", "add", &h1]).ok();

    let out = lab.down();
    out.ok();
    assert!(out.stdout.contains("is not up"), "{out}");
    assert!(
        namespaces_with(&lab.prefix).contains(&h1),
        "down removed {h1}"
    );

    let out = lab.up(&[]);
    out.expect_code(3);
    assert!(
        out.stderr.contains(&format!("namespace `{h1}` exists"))
            && out.stderr.contains("did not create it"),
        "{out}"
    );
    assert_eq!(
        namespaces_with(&lab.prefix),
        vec![h1.clone()],
        "up created nothing"
    );
    assert!(!lab.dir().exists());
    ip(&["netns", "del", &h1]).ok();

    // A lab whose namespace was swapped for a foreign one under the same name.
    lab.start();
    let dp = lab.dataplane_pid();
    ip(&["netns", "del", &h1]).ok();
    ip(&["netns", "add", &h1]).ok();
    let out = lab.down();
    out.ok();
    assert!(
        out.stdout.contains(&format!("left namespace `{h1}` alone")),
        "{out}"
    );
    assert_eq!(namespaces_with(&lab.prefix), vec![h1.clone()]);
    assert!(!alive(dp));
    assert!(!lab.dir().exists());
}

/// A thread adding and deleting namespaces `PREFIXchurnTAG-N` until dropped.
struct Churn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(prefix: &str, tag: &str) -> Churn {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, name) = (stop.clone(), format!("{prefix}churn{tag}-"));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let ns = format!("{name}{}", n % 4);
                ip(&["netns", "add", &ns]);
                ip(&["netns", "del", &ns]);
                n += 1;
            }
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn down_without_a_record_tolerates_namespaces_coming_and_going() {
    // Other labs (other CI jobs, other tests) create and delete namespaces
    // while this down scans every namespace for the lab's mark.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    std::fs::remove_dir_all(lab.dir()).unwrap();
    let churn = [Churn::start(&s.prefix, "a"), Churn::start(&s.prefix, "b")];
    let mut failures = Vec::new();
    // A lab that is not up: a quick scan, many times, for the race to show.
    let nothing = format!("{}nothing", s.prefix);
    for _ in 0..40 {
        let out = grelab(&["down", "--lab", &nothing]);
        if out.code != 0 {
            failures.push(out.to_string());
        }
    }
    let out = lab.down();
    drop(churn);
    assert!(
        failures.is_empty(),
        "{} of 40 `down` runs failed while other namespaces came and went, e.g.\n{}",
        failures.len(),
        failures[0]
    );
    out.ok();
    lab.assert_gone();
}

#[test]
fn two_labs_from_one_file_coexist_and_go_down_independently() {
    let s = Scope::new();
    let a = s.example("basic.yaml");
    let b = s.example_as("basic.yaml", "b-");
    a.start();
    b.start();
    assert_ne!(a.name, b.name);
    assert_pings(&a.ns("host1"), "192.168.50.2", 3);
    assert_pings(&b.ns("host1"), "192.168.50.2", 3);
    assert_eq!(a.status().unwrap()["status"], "up");
    assert_eq!(b.status().unwrap()["status"], "up");
    let b_dp = b.dataplane_pid();

    a.down().ok();
    a.assert_gone();
    assert!(
        alive(b_dp),
        "downing {} stopped {}'s dataplane",
        a.name,
        b.name
    );
    assert_eq!(b.status().unwrap()["status"], "up");
    assert_pings(&b.ns("host1"), "192.168.50.2", 3);
    b.down().ok();
    b.assert_gone();
}

#[test]
fn the_dataplane_outlives_the_shell_and_up_repairs_it() {
    use std::os::unix::process::CommandExt;
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    // A shell job in a process group of its own runs `up`, then lingers.
    let file = lab.file.to_string_lossy();
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" up \"$1\" --prefix \"$2\" --no-check >&2 && echo returned && exec sleep 60")
        .args([GRELAB, &file, &lab.prefix])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let sh = shell.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = shell.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let said = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    assert_eq!(said.trim(), "returned", "grelab up failed in the shell");
    let dp = lab.dataplane_pid();
    let st = stat(dp).expect("the dataplane runs after up returned");
    let me = stat(std::process::id()).unwrap();
    assert_ne!(st.ppid, sh, "the dataplane is not the shell's child");
    assert_eq!(st.session, dp, "the dataplane leads a session of its own");
    assert_ne!(st.session, me.session);
    assert_ne!(st.pgrp, sh, "the dataplane is not in the shell job's group");
    // The terminal goes away: the job gets SIGHUP. (`sh` is our unreaped
    // child, so its group id cannot belong to anyone else yet.)
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(sh as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let _ = shell.wait();
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(dp), "the dataplane died with the shell");
    assert_pings(&lab.ns("host1"), "192.168.50.2", 3);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dp as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(dp)));
    let st = lab.status().unwrap();
    let health = st["status"].as_str().unwrap();
    assert!(
        health.starts_with("broken") && health.contains("dataplane"),
        "status after the dataplane died: {st}"
    );
    lab.verify(&[]).expect_code(1);

    let up = lab.up(&[]);
    up.ok();
    assert!(up.stderr.contains("rebuilding"), "{up}");
    let new = lab.dataplane_pid();
    assert_ne!(new, dp);
    assert!(alive(new));
    assert_eq!(lab.status().unwrap()["status"], "up");
    assert_pings(&lab.ns("host1"), "192.168.50.2", 3);
}

#[test]
fn up_as_an_unprivileged_user_says_root_is_needed() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    let lab = s.yaml("basic.yaml", &basic);
    // A copy nobody can run, wherever the build directory is.
    let exe = s.dir.join("grelab");
    std::fs::copy(GRELAB, &exe).unwrap();
    let file = lab.file.to_string_lossy();
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["up", &file, "--prefix", &lab.prefix]));
    out.expect_code(3);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out}");
    assert!(lines[0].contains("needs root"), "{out}");
    assert!(namespaces_with(&lab.prefix).is_empty());
}

#[test]
fn exec_runs_a_command_in_a_node() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let out = grelab(&[
        "exec", "--lab", &lab.name, "host1", "--", "ip", "-o", "addr",
    ]);
    out.ok();
    assert!(out.stdout.contains("172.16.10.2/24"), "{out}");
    assert!(!out.stdout.contains("152.16.10."), "host1 only: {out}");
    let out = grelab(&["exec", "--lab", &lab.name, "nosuch", "--", "true"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no node `nosuch`"), "{out}");
}

#[test]
fn tunnel_devices_carry_no_ipv6_link_local_address() {
    // README: tunnel devices get addrgenmode none, so no IPv6 link-local
    // chatter (router solicitations, MLD) crosses the tunnels.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    for node in ["host1", "host2"] {
        let ns = lab.ns(node);
        assert_eq!(link(&ns, "tun0")["inet6_addr_gen_mode"], "none");
        assert_eq!(
            addrs(&ns, "tun0", "inet6"),
            Vec::<String>::new(),
            "{ns} tun0 has an IPv6 link-local address"
        );
    }
}

#[test]
fn down_never_stops_another_labs_dataplane_through_a_reused_pid() {
    // A lab's dataplane died; the kernel gave its pid to another lab's
    // dataplane (pids wrap at 32768 here). The record still names the pid.
    let s = Scope::new();
    let a = s.example("basic.yaml");
    let b = s.example_as("basic.yaml", "b-");
    a.start();
    b.start();
    let (a_dp, b_dp) = (a.dataplane_pid(), b.dataplane_pid());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a_dp as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(a_dp)));
    // Only the pid changes: b's dataplane runs the same executable, so
    // the start time in a's identity is what tells them apart.
    let path = a.dir().join("state.json");
    let mut record = a.record();
    record["dataplane"]["pid"] = b_dp.into();
    std::fs::write(&path, record.to_string()).unwrap();

    let mut wrong = Vec::new();
    let st = a.status().unwrap();
    if !st["status"].as_str().unwrap().starts_with("broken") {
        wrong.push(format!("status calls {} healthy: {st}", a.name));
    }
    a.down().ok();
    if !alive(b_dp) {
        wrong.push(format!(
            "`down --lab {}` killed {}'s dataplane {b_dp}",
            a.name, b.name
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_pings(&b.ns("host1"), "192.168.50.2", 3);
}

#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    // `grelab plan FILE | head -1`, `grelab status | head -1`.
    let basic = root().join("topologies/basic.yaml");
    let basic = basic.to_string_lossy();
    for args in [vec!["plan", &*basic], vec!["status"]] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let out = Command::new(GRELAB)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(w))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(101) && !stderr.contains("panicked"),
            "`grelab {}` into a closed pipe: {:?}\n{stderr}",
            args.join(" "),
            out.status
        );
    }
}

#[test]
fn validate_refuses_interface_names_the_kernel_refuses() {
    // The kernel answers EINVAL to a device named `all` or `default` (they
    // would clash with /proc/sys/net/*/conf/{all,default}).
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    for name in ["all", "default"] {
        let lab = s.yaml(
            &format!("{name}.yaml"),
            &basic.replace("host1:veth0", &format!("host1:{name}")),
        );
        let file = lab.file.to_string_lossy();
        let out = grelab(&["validate", &file]);
        assert_eq!(
            out.code, 2,
            "an interface named `{name}` passes validation: {out}"
        );
        assert!(out.all().contains(&format!("`{name}`")), "{out}");
    }
}

/// Kills (by the pid it holds, never by name) and reaps a process the test
/// started, even when the test fails.
struct Started(std::process::Child);

impl Started {
    fn new(cmd: &mut Command) -> Started {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Started(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until it runs `exe` (past setpriv's exec).
    fn runs(&self, exe: &str) -> &Self {
        let pid = self.pid();
        let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert!(
            eventually(Duration::from_secs(5), || comm().trim() == exe),
            "process {pid} never ran {exe}"
        );
        self
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // Our unreaped child: its pid is still its own.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills `lab`'s dataplane by its pid and waits for it to be gone.
fn kill_dataplane(lab: &Lab) {
    let dp = lab.dataplane_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dp as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(dp)));
}

#[test]
fn down_spares_processes_whose_command_line_merely_names_the_spec() {
    // The dataplane died. Other processes name its spec on their command
    // lines: a `tail` run by `nobody`, and one run by root.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    kill_dataplane(&lab);
    let spec = lab.dir().join("dataplane.json");
    let nobody = Started::new(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["tail", "-F"])
            .arg(&spec),
    );
    let root_tail = Started::new(Command::new("tail").arg("-F").arg(&spec));
    nobody.runs("tail");
    root_tail.runs("tail");
    let out = lab.down();
    out.ok();
    for (who, p) in [("nobody", &nobody), ("root", &root_tail)] {
        assert!(
            alive(p.pid()),
            "`down` signalled {who}'s `tail -F {}` ({})\n{out}",
            spec.display(),
            p.pid()
        );
    }
    assert!(
        out.stdout.contains("3 namespaces removed") && !out.stdout.contains("dataplane"),
        "{out}"
    );
}

#[test]
fn down_never_signals_a_process_that_took_over_the_dataplanes_pid() {
    // The dataplane died and its pid went to another process of root's,
    // one that even names the spec on its command line. The identity
    // recorded for the dataplane (record and the file beside the spec)
    // now names that pid, with the dead dataplane's start time.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    kill_dataplane(&lab);
    let spec = lab.dir().join("dataplane.json");
    let heir = Started::new(Command::new("tail").arg("-F").arg(&spec));
    heir.runs("tail");
    let path = lab.dir().join("state.json");
    let mut record = lab.record();
    record["dataplane"]["pid"] = heir.pid().into();
    record["dataplane_pid"] = heir.pid().into(); // as records before identities said
    std::fs::write(&path, record.to_string()).unwrap();
    let file = lab.dir().join("dataplane-identity.json");
    std::fs::write(&file, record["dataplane"].to_string()).unwrap();
    let mut wrong = Vec::new();
    let st = lab.status().unwrap();
    if !st["status"].as_str().unwrap().starts_with("broken") {
        wrong.push(format!(
            "status calls a dataplane whose pid was taken over healthy: {st}"
        ));
    }
    let out = lab.down();
    out.ok();
    if !alive(heir.pid()) || out.stdout.contains("dataplane") {
        wrong.push(format!(
            "`down` signalled {}, which took over the dataplane's pid\n{out}",
            heir.pid()
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_record_from_before_identities_still_brings_its_dataplane_down() {
    // Written by a grelab that recorded only the pid, and no identity file.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let dp = lab.dataplane_pid();
    let mut record = lab.record();
    let fields = record.as_object_mut().unwrap();
    fields
        .remove("dataplane")
        .expect("an identity in the record");
    fields.insert("dataplane_pid".into(), dp.into());
    std::fs::write(lab.dir().join("state.json"), record.to_string()).unwrap();
    std::fs::remove_file(lab.dir().join("dataplane-identity.json")).unwrap();
    assert_eq!(lab.status().unwrap()["status"], "up", "the record reads");
    let out = lab.down();
    out.ok();
    assert!(
        out.stdout
            .contains("3 namespaces removed, dataplane stopped"),
        "{out}"
    );
    assert!(!alive(dp), "dataplane {dp} survived down");
    lab.assert_gone();
}

/// Runs `script` under sh in `node` of `lab` with `grelab exec`; returns
/// the pid it prints.
fn left_in_node(lab: &Lab, node: &str, script: &str) -> u32 {
    let out = grelab(&["exec", "--lab", &lab.name, node, "--", "sh", "-c", script]);
    out.ok();
    let pid: u32 = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(alive(pid), "{out}");
    pid
}

/// Kills `pid` through a pidfd opened while it is known to be the test's
/// (not our child, so its pid alone could be another's by then), so a
/// failing test leaves no process behind.
struct KillAfter(Option<grelab::sys::process::Pidfd>);

impl KillAfter {
    fn new(pid: u32) -> KillAfter {
        KillAfter(grelab::sys::process::Pidfd::open_if(pid, |_| true))
    }
}

impl Drop for KillAfter {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = p.signal(nix::libc::SIGKILL);
        }
    }
}

#[test]
fn down_stops_a_process_left_running_in_a_node() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let pid = left_in_node(&lab, "host1", "sleep 300 >/dev/null 2>&1 & echo $!");
    let _kill = KillAfter::new(pid);
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let host1 = std::fs::metadata(format!("/run/netns/{}", lab.ns("host1"))).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        ns.to_string_lossy(),
        format!("net:[{}]", host1.ino()),
        "the sleep runs in host1"
    );
    let out = lab.down();
    out.ok();
    assert!(!alive(pid), "the sleep ({pid}) outlived `down`\n{out}");
    assert!(
        out.stdout
            .contains("3 namespaces removed, dataplane stopped, 1 process stopped"),
        "{out}"
    );
    lab.assert_gone();
}

#[test]
fn down_kills_a_process_in_a_node_that_ignores_sigterm() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let pid = left_in_node(
        &lab,
        "host2",
        "trap '' TERM; sleep 300 >/dev/null 2>&1 & echo $!",
    );
    let _kill = KillAfter::new(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap();
    assert_ne!(ignored & 1 << (15 - 1), 0, "the sleep ignores SIGTERM");
    let out = lab.down();
    out.ok();
    assert!(!alive(pid), "the sleep ({pid}) outlived `down`\n{out}");
    assert!(out.stdout.contains("1 process stopped"), "{out}");
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "SIGKILL only after the grace period: {:?}",
        out.elapsed
    );
    lab.assert_gone();
}
