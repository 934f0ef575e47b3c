//! Root tests of changing a running lab: `up` of an edited file applies the
//! difference, checked against `ip -j`, and what it does not name keeps its
//! identity (namespace inode, ifindex, dataplane and program pids); a ping
//! across an untouched tunnel while spokes come and go; SIGKILLs midway,
//! each followed by `up` (the new lab, verified) or `down` (nothing left).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// Hub and spokes s0..s(n-1): a veth and a GRE tunnel each; s0 routes a
/// prefix through the hub; `extra` goes under the hub's node.
fn hub(n: usize, hub_extra: &str, tunnel_type: &str) -> String {
    let mut nodes = format!("  hub:\n    forwarding: true\n{hub_extra}");
    let (mut links, mut tunnels) = (String::new(), String::new());
    for i in 0..n {
        let routes = if i == 0 {
            "\n    routes: [{to: 10.99.0.0/16, via: 10.0.0.1}]"
        } else {
            ""
        };
        nodes.push_str(&format!(
            "  s{i}:{}\n",
            if routes.is_empty() { " {}" } else { routes }
        ));
        let b = i * 4;
        links.push_str(&format!(
            "  - endpoints: [\"hub:h{i}\", \"s{i}:eth0\"]\n    addresses: [10.0.{i}.1/24, 10.0.{i}.2/24]\n"
        ));
        let ty = if i == 1 { tunnel_type } else { "gre" };
        tunnels.push_str(&format!(
            "  - name: t{i}\n    type: {ty}\n    endpoints:\n      - {{node: hub, local: 10.0.{i}.1, address: 100.64.0.{}/30}}\n      - {{node: s{i}, local: 10.0.{i}.2, address: 100.64.0.{}/30}}\n",
            b + 1,
            b + 2
        ));
    }
    format!("name: rc\nnodes:\n{nodes}links:\n{links}tunnels:\n{tunnels}")
}

fn inode(ns: &str) -> u64 {
    std::fs::metadata(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"))
        .ino()
}

/// Each device of `ns` by name: its ifindex.
fn ifindexes(ns: &str) -> BTreeMap<String, u64> {
    ip_json(ns, &["link"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_owned(),
                l["ifindex"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn addrs(ns: &str, dev: &str) -> Vec<String> {
    ip_json(ns, &["addr", "show", "dev", dev])[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// What must not move: every namespace's inode and devices' ifindexes.
#[derive(Debug, PartialEq)]
struct Identity(BTreeMap<String, (u64, BTreeMap<String, u64>)>);

fn identity(lab: &Lab, nodes: &[&str]) -> Identity {
    Identity(
        nodes
            .iter()
            .map(|n| {
                let ns = lab.ns(n);
                (n.to_string(), (inode(&ns), ifindexes(&ns)))
            })
            .collect(),
    )
}

/// `up` of `text` as the lab's file, which must reconcile.
fn change(s: &Scope, text: &str) -> Out {
    let lab = s.yaml("rc.yaml", text);
    let out = lab.up(&["--no-check"]);
    out.ok();
    assert!(out.stdout.contains("applied"), "{out}");
    out
}

#[test]
fn addresses_sysctls_and_routes_change_in_place_and_nothing_else_moves() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    let before = identity(&lab, &["hub", "s0", "s1"]);
    let dp = lab.dataplane_pid();

    let new = hub(
        2,
        "    sysctls: {net.ipv4.conf.all.rp_filter: \"2\"}\n",
        "gre",
    )
    .replace("100.64.0.6/30", "100.64.0.7/30")
    .replace("via: 10.0.0.1}", "via: 10.0.0.3}");
    // The dry run says it, and changes nothing.
    let dry = lab_of(&s, &new).up(&["--dry-run"]);
    dry.ok();
    for line in [
        &format!("ip -n {} addr del 100.64.0.6/30 dev t1", lab.ns("s1")),
        &format!("ip -n {} addr add 100.64.0.7/30 dev t1", lab.ns("s1")),
        &format!(
            "ip -n {} route replace 10.99.0.0/16 via 10.0.0.3",
            lab.ns("s0")
        ),
        &format!(
            "ip netns exec {} sysctl -qw net.ipv4.conf.all.rp_filter=2",
            lab.ns("hub")
        ),
    ] {
        assert!(dry.stdout.contains(line), "missing `{line}`:\n{dry}");
    }
    assert_eq!(
        addrs(&lab.ns("s1"), "t1"),
        ["100.64.0.6/30"],
        "a dry run changed the lab"
    );
    let json = lab_of(&s, &new).up(&["--dry-run", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["changes"].as_array().unwrap().len(), 4, "{json}");

    change(&s, &new);
    assert_eq!(addrs(&lab.ns("s1"), "t1"), ["100.64.0.7/30"]);
    let routes = ip_json(&lab.ns("s0"), &["route", "show", "10.99.0.0/16"]);
    assert_eq!(routes[0]["gateway"], "10.0.0.3", "{routes}");
    let rp = in_ns(
        &lab.ns("hub"),
        &["sysctl", "-n", "net.ipv4.conf.all.rp_filter"],
    );
    assert_eq!(rp.stdout.trim(), "2");
    assert_eq!(identity(&lab, &["hub", "s0", "s1"]), before);
    assert_eq!(
        lab.dataplane_pid(),
        dp,
        "no tunnel end changed: same dataplane"
    );
    assert!(alive(dp));
    // Back: the sysctl gone from the file is what a new namespace has.
    change(&s, &hub(2, "", "gre"));
    let rp = in_ns(
        &lab.ns("hub"),
        &["sysctl", "-n", "net.ipv4.conf.all.rp_filter"],
    );
    let fresh =
        run(Command::new("unshare").args(["-n", "sysctl", "-n", "net.ipv4.conf.all.rp_filter"]));
    assert_eq!(rp.stdout.trim(), fresh.stdout.trim());
    assert_eq!(identity(&lab, &["hub", "s0", "s1"]), before);
    lab.verify(&[]).ok();
}

/// The lab of `text` without writing it as the lab's file yet.
fn lab_of(s: &Scope, text: &str) -> Lab {
    s.yaml("rc.yaml", text)
}

#[test]
fn a_spoke_added_and_removed_touches_no_other_spoke() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    let before = identity(&lab, &["hub", "s0", "s1"]);
    let dp = lab.dataplane_pid();
    let out = change(&s, &hub(3, "", "gre"));
    assert!(out.stdout.contains("serves the new set"), "{out}");
    assert_eq!(
        lab.dataplane_pid(),
        dp,
        "the dataplane changed its ends live"
    );
    assert!(namespaces_with(&lab.prefix).contains(&lab.ns("s2")));
    assert_eq!(addrs(&lab.ns("s2"), "t2"), ["100.64.0.10/30"]);
    assert_eq!(addrs(&lab.ns("hub"), "h2"), ["10.0.2.1/24"]);
    let mut now = identity(&lab, &["hub", "s0", "s1"]);
    // The hub gained h2 and t2; everything it had kept its ifindex.
    let hub_now = &mut now.0.get_mut("hub").unwrap().1;
    assert!(hub_now.remove("h2").is_some() && hub_now.remove("t2").is_some());
    assert_eq!(now, before);
    lab.verify(&[]).ok();
    assert_pings(&lab.ns("s2"), "100.64.0.9", 2);

    change(&s, &hub(2, "", "gre"));
    assert_eq!(lab.dataplane_pid(), dp);
    assert!(!namespaces_with(&lab.prefix).contains(&lab.ns("s2")));
    assert_eq!(identity(&lab, &["hub", "s0", "s1"]), before);
    lab.verify(&[]).ok();
    // Again: the new s2 is a new namespace, and its tunnel end is made there.
    change(&s, &hub(3, "", "gre"));
    assert_eq!(lab.dataplane_pid(), dp);
    assert_eq!(addrs(&lab.ns("s2"), "t2"), ["100.64.0.10/30"]);
    assert_pings(&lab.ns("s2"), "100.64.0.9", 2);
    lab.verify(&[]).ok();
}

#[test]
fn a_new_tunnel_type_remakes_only_that_tunnel_and_an_mtu_changes_in_place() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    let before = identity(&lab, &["hub", "s0", "s1"]);
    change(&s, &hub(2, "", "gretap"));
    let t1 = &ip_json(&lab.ns("s1"), &["-d", "link", "show", "t1"])[0];
    assert_eq!(t1["link_type"], "ether", "a TAP now: {t1}");
    assert_eq!(
        addrs(&lab.ns("s1"), "t1"),
        ["100.64.0.6/30"],
        "its address again"
    );
    let mut now = identity(&lab, &["hub", "s0", "s1"]);
    let mut was = before.0.clone();
    for n in ["hub", "s1"] {
        let new_t1 = now.0.get_mut(n).unwrap().1.remove("t1").unwrap();
        let old_t1 = was.get_mut(n).unwrap().1.remove("t1").unwrap();
        assert_ne!(new_t1, old_t1, "t1 on {n} was made again");
    }
    assert_eq!(now, Identity(was), "nothing else moved");
    lab.verify(&[]).ok();

    // An MTU: the same devices.
    let before = identity(&lab, &["hub", "s0", "s1"]);
    let mtu = hub(2, "", "gretap").replace(
        "addresses: [10.0.0.1/24, 10.0.0.2/24]",
        "addresses: [10.0.0.1/24, 10.0.0.2/24]\n    mtu: 1400",
    );
    change(&s, &mtu);
    let h0 = &ip_json(&lab.ns("hub"), &["link", "show", "h0"])[0];
    assert_eq!(h0["mtu"], 1400);
    let e0 = &ip_json(&lab.ns("s0"), &["link", "show", "eth0"])[0];
    assert_eq!(e0["mtu"], 1400);
    let t0 = &ip_json(&lab.ns("s0"), &["link", "show", "t0"])[0];
    assert_eq!(t0["mtu"], 1376);
    assert_eq!(identity(&lab, &["hub", "s0", "s1"]), before);
    lab.verify(&[]).ok();
}

#[test]
fn changed_software_restarts_the_programs_and_nothing_else() {
    let s = Scope::new();
    let text = |secs: &str| {
        hub(1, "", "gre").replace(
            "  s0:\n",
            &format!("  s0:\n    run: [{{name: nap, cmd: [sleep, \"{secs}\"]}}]\n"),
        )
    };
    let lab = s.yaml("rc.yaml", &text("1000"));
    lab.start();
    let before = identity(&lab, &["hub", "s0"]);
    let pid = |lab: &Lab| {
        let st = lab.status().unwrap();
        st["programs"][0]["pid"].as_u64().unwrap() as u32
    };
    let p1 = pid(&lab);
    assert!(alive(p1));
    let out = change(&s, &text("2000"));
    assert!(out.stdout.contains("programs restarted"), "{out}");
    let p2 = pid(&lab);
    assert_ne!(p1, p2);
    assert!(alive(p2) && eventually(Duration::from_secs(5), || !alive(p1)));
    assert_eq!(identity(&lab, &["hub", "s0"]), before);
    let cmd = std::fs::read_to_string(format!("/proc/{p2}/cmdline")).unwrap();
    assert!(cmd.contains("2000"), "{cmd}");
}

/// 100 pings 10 ms apart from s0 across t0 while `changes` run: the replies.
fn ping_during(s: &Scope, lab: &Lab, changes: &[String]) -> (u32, String) {
    let ping = Command::new("ip")
        .args(["netns", "exec", &lab.ns("s0")])
        .args([
            "ping",
            "-n",
            "-c",
            "100",
            "-i",
            "0.01",
            "-W",
            "1",
            "100.64.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    for c in changes {
        change(s, c);
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary from ping:\n{text}"));
    (received, text)
}

#[test]
fn pings_across_an_untouched_tunnel_survive_spokes_coming_and_going() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    // A spoke of the underlay only: the dataplane is not touched at all.
    let plain = hub(2, "", "gre").replace("links:\n", "  x: {}\nlinks:\n  - endpoints: [\"hub:hx\", \"x:eth0\"]\n    addresses: [10.0.200.1/24, 10.0.200.2/24]\n");
    let dp = lab.dataplane_pid();
    let (got, text) = ping_during(&s, &lab, &[plain, hub(2, "", "gre")]);
    assert_eq!(
        got, 100,
        "pings lost while a spoke was added and removed:\n{text}"
    );
    assert_eq!(lab.dataplane_pid(), dp);
    // A spoke with a tunnel: the running dataplane takes the new end and
    // drops it again, serving t0 throughout.
    let (got, text) = ping_during(&s, &lab, &[hub(3, "", "gre"), hub(2, "", "gre")]);
    assert_eq!(
        got, 100,
        "pings lost while a tunnel was added and removed:\n{text}"
    );
    assert_eq!(lab.dataplane_pid(), dp, "the same dataplane");
}

/// A small deterministic generator, so a failure can be replayed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn sigkill_at_any_moment_of_a_change_then_up_finishes_it_or_down_removes_all() {
    let s = Scope::new();
    let versions = [hub(2, "", "gre"), hub(3, "", "gre"), hub(2, "", "gretap")];
    let mut seed = 15u64;
    let mut at = 0usize;
    s.yaml("rc.yaml", &versions[at]).start();
    for round in 0..30 {
        let to = (at + 1 + next(&mut seed) as usize % 2) % versions.len();
        let lab = s.yaml("rc.yaml", &versions[to]);
        let file = lab.file.to_string_lossy().into_owned();
        let mut child = Command::new(GRELAB)
            .args(["up", &file, "--prefix", &lab.prefix, "--no-check"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 40_000));
        let _ = child.kill();
        let _ = child.wait();
        if round % 2 == 0 {
            lab.up(&["--no-check"]).ok();
            let (code, report) = lab.verify_json(&[]);
            assert_eq!(code, 0, "round {round}: {report}");
            let want: Vec<String> = lab.namespaces();
            let have = namespaces_with(&lab.prefix);
            assert_eq!(
                have,
                {
                    let mut w = want.clone();
                    w.sort();
                    w
                },
                "round {round}"
            );
            at = to;
        } else {
            lab.down().ok();
            lab.assert_gone();
            assert!(namespaces_with(&lab.prefix).is_empty(), "round {round}");
            at = next(&mut seed) as usize % versions.len();
            s.yaml("rc.yaml", &versions[at]).start();
        }
    }
}

#[test]
fn restart_builds_one_node_again_and_leaves_the_rest_running() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    let before = identity(&lab, &["hub", "s0", "s1"]);
    let out = grelab(&["restart", "s1", "--lab", &lab.name]);
    out.ok();
    assert!(out.stdout.contains("built again"), "{out}");
    assert_ne!(inode(&lab.ns("s1")), before.0["s1"].0, "a new namespace");
    let mut now = identity(&lab, &["hub", "s0", "s1"]);
    let mut was = before.0.clone();
    // The veth to s1 was made again (from the hub's side); the rest stayed.
    let h1 = now.0.get_mut("hub").unwrap().1.remove("h1").unwrap();
    assert_ne!(h1, was.get_mut("hub").unwrap().1.remove("h1").unwrap());
    now.0.remove("s1");
    was.remove("s1");
    assert_eq!(now, Identity(was));
    assert_eq!(addrs(&lab.ns("hub"), "h1"), ["10.0.1.1/24"]);
    assert_eq!(addrs(&lab.ns("s1"), "t1"), ["100.64.0.6/30"]);
    lab.verify(&[]).ok();
    let bad = grelab(&["restart", "nope", "--lab", &lab.name]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("no node `nope`"), "{bad}");
}

#[test]
fn a_change_killed_midway_is_reported_by_verify_and_finished_by_up() {
    let s = Scope::new();
    let lab = s.yaml("rc.yaml", &hub(2, "", "gre"));
    lab.start();
    for point in ["reconcile-pending", "reconcile-removed", "reconcile-added"] {
        let to = if point == "reconcile-removed" {
            hub(3, "", "gretap")
        } else {
            hub(3, "", "gre")
        };
        let next = s.yaml("rc.yaml", &to);
        let file = next.file.to_string_lossy().into_owned();
        let killed = run(Command::new(GRELAB).env("GRELAB_CRASH_AT", point).args([
            "up",
            &file,
            "--prefix",
            &next.prefix,
            "--no-check",
        ]));
        assert_eq!(killed.code, -1, "killed at {point}: {killed}");
        let v = next.verify(&[]);
        v.expect_code(3);
        assert!(
            v.stderr.contains("stopped in the middle of a change"),
            "{v}"
        );
        next.up(&["--no-check"]).ok();
        next.verify(&[]).ok();
        // And back, for the next point.
        s.yaml("rc.yaml", &hub(2, "", "gre"))
            .up(&["--no-check"])
            .ok();
    }
}
