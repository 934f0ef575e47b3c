//! Root tests of `grelab verify` on real labs: a healthy lab passes every
//! check quickly, the reports parse, a lab broken by hand fails the right
//! check with a line that says what is wrong, and a file's own checks are
//! judged as written.

mod support;
#[path = "verify/waits.rs"]
mod waits;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// One check of verify's human report.
#[derive(Debug)]
struct Line {
    status: String,
    name: String,
    summary: String,
    details: Vec<String>,
}

/// Parses `STATUS NAME   SUMMARY  (N ms)` lines and their indented details.
fn report(text: &str) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for l in text.lines() {
        if let Some(d) = l.strip_prefix("      ") {
            if let Some(last) = lines.last_mut() {
                last.details.push(d.to_owned());
            }
            continue;
        }
        let Some(status) = ["PASS", "FAIL", "ERROR"]
            .into_iter()
            .find(|s| l.starts_with(s))
        else {
            continue;
        };
        let rest = l[5..].trim_start();
        let (name, summary) = rest.split_once("   ").unwrap_or((rest, ""));
        let summary = summary.trim();
        let summary = summary.rsplit_once("  (").map_or(summary, |(s, _)| s);
        lines.push(Line {
            status: status.to_owned(),
            name: name.trim().to_owned(),
            summary: summary.to_owned(),
            details: Vec::new(),
        });
    }
    lines
}

/// The line of check `name`, or a panic listing the report.
fn line<'a>(lines: &'a [Line], name: &str) -> &'a Line {
    lines
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {lines:#?}"))
}

/// The derived checks of the basic lab, in verify's order, after the file's ping.
const BASIC: [&str; 6] = [
    "ping host1 -> 192.168.50.2",
    "underlay tun0: host1 -> 152.16.10.2",
    "tunnel tun0: host1 -> 192.168.50.2",
    "tunnel tun0: host2 -> 192.168.50.1",
    "mtu tun0",
    "encap tun0",
];

#[test]
fn a_healthy_lab_passes_every_check_within_a_second() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let out = lab.verify(&["-v"]);
    println!(
        "grelab verify took {:?} (wall, process included)",
        out.elapsed
    );
    out.ok();
    let lines = report(&out.stdout);
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, BASIC, "{out}");
    assert!(lines.iter().all(|l| l.status == "PASS"), "{out}");
    assert!(out.stdout.contains("6 passed, 0 failed"), "{out}");
    assert!(
        out.elapsed < Duration::from_secs(2),
        "verify took {:?}; it should take well under a second",
        out.elapsed
    );

    let encap = line(&lines, "encap tun0");
    assert_eq!(
        encap.summary,
        "proto GRE (47) 172.16.10.2 > 152.16.10.2, ttl 255, DF, GREv0, inner 192.168.50.1 > 192.168.50.2"
    );
    let packet = encap.details.join("\n");
    for want in [
        "ttl 255",
        "flags [DF]",
        "proto GRE (47)",
        "172.16.10.2 > 152.16.10.2: GREv0",
        // Request or reply: which packet the check shows is the next test's.
        "192.168.50.1 > 192.168.50.2: ICMP echo",
    ] {
        assert!(
            packet.contains(want),
            "-v encap details lack `{want}`:\n{packet}"
        );
    }
    let mtu = line(&lines, "mtu tun0");
    assert!(
        mtu.summary
            .contains("1476 bytes pass with DF, 1477 are refused"),
        "{mtu:?}"
    );
}

#[test]
fn the_encap_check_shows_its_own_probe_as_the_seed_saw_it() {
    // The encap check pings and shows the packet it captured; the seed
    // capture of such a ping is a 108-byte echo request. Other checks cross
    // the same tunnel at the same time (the mtu check's 1500-byte probe,
    // host1's echo replies to host2's tunnel ping), and the encap check must
    // not report one of theirs. Several runs, since which goes first is a race.
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    for run in 1..=12 {
        let out = lab.verify(&["-v"]);
        out.ok();
        let lines = report(&out.stdout);
        let packet = line(&lines, "encap tun0").details.join("\n");
        assert!(
            packet.contains("proto GRE (47), length 108)")
                && packet.contains("192.168.50.1 > 192.168.50.2: ICMP echo request")
                && packet.contains("length 64"),
            "run {run}: the encap check shows another check's packet:\n{packet}"
        );
    }
}

#[test]
fn json_and_junit_reports_parse() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let junit = s.dir.join("report.xml");
    let (code, doc) = lab.verify_json(&["--junit", &junit.to_string_lossy()]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["lab"], lab.name.as_str());
    assert_eq!(doc["passed"], 6);
    assert_eq!(doc["failed"], 0);
    let checks = doc["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, BASIC);
    for c in checks {
        assert!(
            ["ping", "mtu", "encap"].contains(&c["kind"].as_str().unwrap()),
            "{c}"
        );
        assert_eq!(c["status"], "pass", "{c}");
        let d = c["duration"].as_f64().expect("duration in seconds");
        assert!((0.0..5.0).contains(&d), "{c}");
        assert!(c["summary"].is_string(), "{c}");
        assert!(
            c["details"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string),
            "{c}"
        );
    }

    let xml = std::fs::read_to_string(&junit).unwrap();
    let x = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let root = x.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1, "{xml}");
    let suite = suites[0];
    assert_eq!(suite.attribute("name"), Some(lab.name.as_str()));
    assert_eq!(suite.attribute("tests"), Some("6"));
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let case_names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(case_names, BASIC);
    for c in &cases {
        assert!(
            c.attribute("classname")
                .unwrap()
                .starts_with(&format!("{}.", lab.name))
        );
        assert!(
            !c.children()
                .any(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
        );
    }
}

/// Breaks a healthy basic lab with `ip ARGS`, checks verify's report with
/// `judge`, repairs it with `ip UNDO` and checks that verify passes again.
fn break_and_repair(break_args: &[&str], undo: &[&str], judge: impl Fn(&[Line], &str)) {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let p = &lab.prefix;
    let fill = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.replace("P-", p)).collect() };
    let args = fill(break_args);
    ip(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let junit = s.dir.join("broken.xml");
    let out = lab.verify(&["--junit", &junit.to_string_lossy()]);
    out.expect_code(1);
    assert!(out.stderr.contains("checks failed"), "{out}");
    let lines = report(&out.stdout);
    judge(&lines, &out.to_string());
    // JUnit counts the same failures.
    let failed = lines.iter().filter(|l| l.status != "PASS").count();
    let xml = std::fs::read_to_string(&junit).unwrap();
    let x = roxmltree::Document::parse(&xml).unwrap();
    let marked = x
        .descendants()
        .filter(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
        .count();
    assert_eq!(marked, failed, "{xml}");

    let args = fill(undo);
    ip(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let ns = lab.ns("internet");
    eventually(Duration::from_secs(3), || {
        ip_json(&ns, &["link", "show", "dev", "veth1"])[0]["operstate"] == "UP"
    });
    let again = lab.verify(&[]);
    again.ok();
}

fn assert_fails(lines: &[Line], name: &str, says: &[&str], out: &str) {
    let l = line(lines, name);
    assert_eq!(l.status, "FAIL", "{name}: {out}");
    for s in says {
        assert!(
            l.summary.contains(s) || l.details.iter().any(|d| d.contains(s)),
            "`{name}` should say `{s}`: {l:?}\n{out}"
        );
    }
}

#[test]
fn without_a_default_route_the_underlay_and_tunnel_checks_fail() {
    break_and_repair(
        &["-n", "P-host1", "route", "del", "default"],
        &[
            "-n",
            "P-host1",
            "route",
            "add",
            "default",
            "via",
            "172.16.10.1",
        ],
        |lines, out| {
            assert_fails(
                lines,
                "underlay tun0: host1 -> 152.16.10.2",
                &["0/2 replies", "152.16.10.2", "Network is unreachable"],
                out,
            );
            assert_fails(
                lines,
                "tunnel tun0: host1 -> 192.168.50.2",
                &["0/3 replies"],
                out,
            );
            assert_fails(
                lines,
                "tunnel tun0: host2 -> 192.168.50.1",
                &["0/3 replies"],
                out,
            );
            assert_fails(lines, "encap tun0", &["no GRE packet"], out);
        },
    );
}

#[test]
fn a_tunnel_mtu_above_the_path_fails_the_mtu_check() {
    break_and_repair(
        &["-n", "P-host1", "link", "set", "tun0", "mtu", "1500"],
        &["-n", "P-host1", "link", "set", "tun0", "mtu", "1476"],
        |lines, out| {
            assert_fails(lines, "mtu tun0", &["1477", "1476"], out);
            // Only the MTU is wrong: ordinary traffic still crosses.
            assert_eq!(
                line(lines, "tunnel tun0: host1 -> 192.168.50.2").status,
                "PASS",
                "{out}"
            );
            assert_eq!(
                line(lines, "underlay tun0: host1 -> 152.16.10.2").status,
                "PASS",
                "{out}"
            );
        },
    );
}

#[test]
fn a_router_link_down_fails_the_underlay_and_tunnel_checks() {
    break_and_repair(
        &["-n", "P-internet", "link", "set", "veth1", "down"],
        &["-n", "P-internet", "link", "set", "veth1", "up"],
        |lines, out| {
            assert_fails(
                lines,
                "underlay tun0: host1 -> 152.16.10.2",
                &["0/2 replies", "152.16.10.2"],
                out,
            );
            assert_fails(
                lines,
                "tunnel tun0: host1 -> 192.168.50.2",
                &["0/3 replies"],
                out,
            );
            assert_fails(
                lines,
                "tunnel tun0: host2 -> 192.168.50.1",
                &["0/3 replies"],
                out,
            );
            assert_fails(lines, "mtu tun0", &["no answer"], out);
        },
    );
}

#[test]
fn a_wrong_key_at_one_end_fails_the_encap_check() {
    // Validation refuses mismatched keys, so break a keyed lab by hand:
    // restart its dataplane with host1 sending key 99 on tun0.
    let s = Scope::new();
    let lab = s.example("keyed.yaml");
    lab.start();
    let old = lab.dataplane_pid();
    let spec_path = lab.dir().join("dataplane.json");
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    let h1 = lab.ns("host1");
    for t in spec["tunnels"].as_array_mut().unwrap() {
        if t["name"] == "tun0" && t["netns"] == h1.as_str() {
            t["okey"] = 99.into();
        }
    }
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(old)));
    // Its devices went with it; the new one makes them again.
    let stats = lab.dir().join("dataplane-stats.json");
    // `setsid -f`: a session of its own, as `up` would start it.
    let started = std::process::Command::new("setsid")
        .arg("-f")
        .arg(GRELAB)
        .args(["dataplane", "--spec"])
        .arg(&spec_path)
        .arg("--stats")
        .arg(&stats)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(started.success());
    for node in ["host1", "host2"] {
        let ns = lab.ns(node);
        let ready = eventually(Duration::from_secs(10), || {
            ip(&["-n", &ns, "link", "show", "dev", "tun1"]).code == 0
        });
        assert!(ready, "the restarted dataplane made no devices in {ns}");
        let i = if node == "host1" { 1 } else { 2 };
        for (dev, net) in [("tun0", 50), ("tun1", 51)] {
            // The devices are persistent: their addresses may have survived.
            ip(&[
                "-n",
                &ns,
                "addr",
                "replace",
                &format!("192.168.{net}.{i}/30"),
                "dev",
                dev,
            ])
            .ok();
        }
    }
    let out = lab.verify(&[]);
    out.expect_code(1);
    let lines = report(&out.stdout);
    let out = out.to_string();
    assert_fails(&lines, "encap tun0", &["wrong GRE key", "99"], &out);
    assert_fails(
        &lines,
        "tunnel tun0: host1 -> 192.168.50.2",
        &["0/3 replies"],
        &out,
    );
    for ok in [
        "encap tun1",
        "tunnel tun1: host1 -> 192.168.51.2",
        "mtu tun1",
    ] {
        assert_eq!(line(&lines, ok).status, "PASS", "{ok}: {out}");
    }
}

#[test]
fn checks_naming_unknown_nodes_or_outside_addresses_are_refused() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    let (head, _) = basic.split_once("checks:").unwrap();
    let text = format!(
        "{head}checks:
  - ping: {{from: nosuch, to: 192.168.50.2}}
  - ping: {{from: host1, to: 10.99.0.1}}
  - route: {{from: host1, to: 10.99.0.2, dev: veth0}}
  - exec: {{node: ghost, cmd: [\"true\"]}}
  - mtu: {{tunnel: tun9}}
"
    );
    let lab = s.yaml("bad-checks.yaml", &text);
    let file = lab.file.to_string_lossy();
    let out = grelab(&["validate", &file]);
    out.expect_code(2);
    for says in [
        "unknown node `nosuch`",
        "10.99.0.1 is no address in this lab",
        "10.99.0.2 is no address in this lab",
        "unknown node `ghost`",
        "unknown tunnel `tun9`",
    ] {
        assert!(
            out.stderr.contains(says),
            "validate should say `{says}`: {out}"
        );
    }
    let up = lab.up(&[]);
    up.expect_code(2);
    assert!(up.stderr.contains("unknown node `nosuch`"), "{up}");
    assert!(namespaces_with(&lab.prefix).is_empty(), "up built a lab");
    assert!(!lab.dir().exists());
    let out = lab.verify(&[]);
    out.expect_code(3);
    assert!(out.stderr.contains("is not up"), "{out}");
}

#[test]
fn the_files_own_checks_are_judged_as_written() {
    let s = Scope::new();
    let basic = std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap();
    let (head, _) = basic.split_once("checks:").unwrap();
    // `lonely` hangs off the router with no route back: pings to it go
    // unanswered (all traffic stays inside the lab).
    let head = head
        .replace(
            "  host2:\n",
            "  lonely: {}\n  host2:\n",
        )
        .replace(
            "tunnels:",
            "  - endpoints: [\"internet:veth4\", \"lonely:veth5\"]\n    addresses: [\"10.9.0.1/24\", \"10.9.0.2/24\"]\ntunnels:",
        );
    let text = format!(
        "{head}checks:
  - ping: {{from: host1, to: 10.9.0.2, count: 2, expect: failure, timeout: 1}}
  - ping: {{from: host1, to: 192.168.50.2, count: 2, expect: failure, timeout: 1}}
  - route: {{from: host1, to: 152.16.10.2, dev: veth0}}
  - route: {{from: host1, to: 192.168.50.2, dev: veth0}}
  - exec: {{node: host1, cmd: [\"true\"], exit: 0}}
  - exec: {{node: host1, cmd: [\"false\"], exit: 1}}
  - exec: {{node: host1, cmd: [\"false\"], exit: 0}}
  - exec: {{node: host2, cmd: [ip, -o, addr, show, dev, veth3]}}
"
    );
    let lab = s.yaml("kinds.yaml", &text);
    grelab(&["validate", &lab.file.to_string_lossy()]).ok();
    lab.start();
    let (code, doc) = lab.verify_json(&["--no-derived"]);
    assert_eq!(code, 1, "{doc:#}");
    let checks = doc["checks"].as_array().unwrap();
    let got: Vec<(&str, &str)> = checks
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("ping", "pass"),
            ("ping", "fail"),
            ("route", "pass"),
            ("route", "fail"),
            ("exec", "pass"),
            ("exec", "pass"),
            ("exec", "fail"),
            ("exec", "pass"),
        ],
        "{doc:#}"
    );
    let summary = |i: usize| checks[i]["summary"].as_str().unwrap();
    assert!(
        summary(0).contains("0/2 replies") && summary(0).contains("isolated as expected"),
        "{doc:#}"
    );
    assert!(summary(1).contains("should not be reachable"), "{doc:#}");
    assert!(summary(2).contains("leaves through veth0"), "{doc:#}");
    assert!(
        summary(3).contains("leaves through tun0") && summary(3).contains("expected veth0"),
        "{doc:#}"
    );
    assert!(summary(6).contains("exited 1, expected 0"), "{doc:#}");
    // The exec ran in host2's namespace: it saw host2's address.
    let details = checks[7]["details"].to_string();
    assert!(details.contains("152.16.10.2/24"), "{doc:#}");
    assert_eq!(doc["passed"], 5);
    assert_eq!(doc["failed"], 3);

    // With the derived checks, the tunnel's are added and pass.
    let (code, doc) = lab.verify_json(&[]);
    assert_eq!(code, 1);
    let checks = doc["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 8 + 5, "{doc:#}");
    assert!(checks[8..].iter().all(|c| c["status"] == "pass"), "{doc:#}");
}
