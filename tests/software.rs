//! Root tests of nodes that run software: each node's own view (files,
//! /run, /sys, /etc/hosts), programs supervised by the lab's keeper and
//! ended with the lab whatever happens (double forks, a killed `up`, a
//! killed keeper), a failing program failing `up`, and the OSPF example.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// A two-node lab: `a` has files (one over an existing host file, one in
/// a directory the host lacks, one under /run) and both run the same
/// "daemon", which refuses to start if its lock in /run exists.
fn two_daemons(s: &Scope, marker: &str) -> Lab {
    s.yaml(
        "views.yaml",
        &format!(
            r#"name: views
nodes:
  a:
    files:
      /etc/hostname: "node-a\n"
      /etc/{marker}/app.conf: "conf of a\n"
      /run/app/seed: "seed\n"
    run:
      - name: daemon
        cmd: [sh, -c, "mkdir -p /run/d; set -C; echo $$ > /run/d/lock || exit 9; sleep 1000; : {marker}"]
  b:
    run:
      - name: daemon
        cmd: [sh, -c, "mkdir -p /run/d; set -C; echo $$ > /run/d/lock || exit 9; sleep 1000; : {marker}"]
      - name: hello
        cmd: [sh, -c, "echo hello from b; echo to stderr >&2"]
links:
  - endpoints: ["a:eth0", "b:eth0"]
    addresses: [10.77.0.1/24, 10.77.0.2/24]
checks:
  - exec: {{node: a, cmd: [grep, -q, "conf of a", /etc/{marker}/app.conf]}}
  - exec: {{node: b, cmd: [test, -s, /run/d/lock]}}
"#
        ),
    )
}

fn exec(lab: &Lab, node: &str, script: &str) -> Out {
    grelab(&["exec", "--lab", &lab.name, node, "--", "sh", "-c", script])
}

#[test]
fn nodes_see_their_own_files_run_and_sys_and_daemons_do_not_collide() {
    let s = Scope::new();
    let marker = format!("grelab-{}", s.prefix.trim_end_matches('-'));
    let lab = two_daemons(&s, &marker);
    lab.up(&["--no-check"]).ok();
    // The same daemon with the same default paths runs in both nodes.
    let st = lab.status().expect("the lab is listed");
    let programs = st["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 3, "{st}");
    for p in programs.iter().filter(|p| p["name"] == "daemon") {
        assert_eq!(p["state"], "running", "{st}");
        assert!(alive(p["pid"].as_u64().unwrap() as u32), "{st}");
    }
    let hello = programs.iter().find(|p| p["name"] == "hello").unwrap();
    assert_eq!(
        (hello["state"].as_str(), hello["code"].as_i64()),
        (Some("exited"), Some(0))
    );
    assert_eq!(processes_with(&marker).len(), 2);

    // a sees its files; the host does not.
    let out = exec(
        &lab,
        "a",
        &format!("cat /etc/hostname /etc/{marker}/app.conf /run/app/seed"),
    );
    assert_eq!(out.ok().stdout, "node-a\nconf of a\nseed\n");
    assert!(!std::path::Path::new(&format!("/etc/{marker}")).exists());
    assert_ne!(
        std::fs::read_to_string("/etc/hostname").unwrap(),
        "node-a\n"
    );
    // b has its own /run (no seed) and its own lock; /etc/hostname is the host's.
    exec(&lab, "b", "test ! -e /run/app/seed && test -s /run/d/lock").ok();
    let out = exec(&lab, "b", "cat /etc/hostname");
    assert_eq!(
        out.ok().stdout,
        std::fs::read_to_string("/etc/hostname").unwrap()
    );
    // /sys shows the node's interfaces; /etc/hosts names the lab's nodes.
    let out = exec(&lab, "a", "ls /sys/class/net");
    assert_eq!(out.ok().stdout, "eth0\nlo\n");
    let out = exec(&lab, "b", "getent hosts a");
    assert!(out.ok().stdout.starts_with("10.77.0.1"), "{out}");
    // exec runs in the lab's PID namespace: its /proc shows the lab's processes.
    let out = exec(&lab, "a", "ls /proc | grep -c '^[0-9]'");
    let n: u32 = out.ok().stdout.trim().parse().unwrap();
    assert!((5..30).contains(&n), "{n} processes seen from a node");
    // exec passes on the exit code.
    exec(&lab, "a", "exit 7").expect_code(7);
    // exec checks run in the node's view too.
    lab.verify(&["--no-derived"]).ok();
    // `up` of the unchanged file keeps the programs as they are.
    let pids = |st: &serde_json::Value| -> Vec<u64> {
        st["programs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap())
            .collect()
    };
    let before = pids(&st);
    let out = lab.up(&["--no-check"]);
    assert!(out.ok().stdout.contains("unchanged"), "{out}");
    assert_eq!(pids(&lab.status().unwrap()), before);
    // logs show what the programs wrote, stderr included.
    let out = grelab(&["logs", "--lab", &lab.name, "b", "hello"]);
    assert_eq!(out.ok().stdout, "hello from b\nto stderr\n");
    grelab(&["logs", "--lab", &lab.name, "b", "nope"]).expect_code(2);

    lab.down().ok();
    assert!(
        eventually(Duration::from_secs(2), || processes_with(&marker)
            .is_empty()),
        "daemons outlived `down`"
    );
    lab.assert_gone();
}

#[test]
fn a_daemon_that_forks_away_is_gone_after_down() {
    let s = Scope::new();
    let marker = format!("grelab-fork-{}", s.prefix.trim_end_matches('-'));
    let lab = s.yaml(
        "fork.yaml",
        &format!(
            r#"name: fork
nodes:
  a:
    run:
      - name: daemon
        cmd: [sh, -c, "setsid sh -c 'sleep 1000; : {marker}' </dev/null >/dev/null 2>&1 & exit 0"]
"#
        ),
    );
    lab.up(&["--no-check"]).ok();
    assert!(eventually(Duration::from_secs(2), || processes_with(
        &marker
    )
    .len()
        == 1));
    let st = lab.status().unwrap();
    assert_eq!(st["programs"][0]["state"], "exited", "{st}");
    lab.down().ok();
    assert!(
        processes_with(&marker).is_empty(),
        "a daemon outlived `down`"
    );
    lab.assert_gone();
}

#[test]
fn a_failing_program_fails_up_with_its_log_and_leaves_nothing() {
    let s = Scope::new();
    let lab = s.yaml(
        "fails.yaml",
        r#"name: fails
nodes:
  a:
    run:
      - name: broken
        cmd: [sh, -c, "echo the config is wrong on line 3; exit 3"]
"#,
    );
    let out = lab.up(&["--no-check"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("program `broken` of node `a` exited 3"),
        "{out}"
    );
    assert!(
        out.stderr.contains("the config is wrong on line 3"),
        "{out}"
    );
    lab.assert_gone();

    // The same, optional: `up` goes on, and status says how it ended.
    let lab = s.yaml(
        "optional.yaml",
        r#"name: optional
nodes:
  a:
    run:
      - name: broken
        cmd: [sh, -c, "exit 3"]
        optional: true
"#,
    );
    lab.up(&["--no-check"]).ok();
    let st = lab.status().unwrap();
    assert_eq!(st["programs"][0]["code"], 3, "{st}");
    lab.down().ok();
    lab.assert_gone();
}

#[test]
fn what_cannot_be_placed_or_run_is_refused_before_anything_is_built() {
    let s = Scope::new();
    let lab = s.yaml(
        "missing.yaml",
        r#"name: missing
nodes:
  a:
    run:
      - name: x
        cmd: [grelab-no-such-program]
"#,
    );
    let out = lab.up(&["--no-check"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains("`grelab-no-such-program`, which is not installed"),
        "{out}"
    );
    lab.assert_gone();
    let lab = s.yaml(
        "under-file.yaml",
        r#"name: underfile
nodes:
  a:
    files:
      /etc/hostname/x: "a file under a file"
"#,
    );
    let out = lab.up(&["--no-check"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("file `/etc/hostname/x` of node `a`"),
        "{out}"
    );
    lab.assert_gone();
}

/// Starts `grelab up` of `lab` and kills it (SIGKILL) after `after`.
fn up_killed_after(lab: &Lab, after: Duration) {
    let mut child = Command::new(GRELAB)
        .args(["up", "--no-check", "--prefix", &lab.prefix])
        .arg(&lab.file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

/// A cheap pseudo-random sequence for the kill moments.
fn moments(seed: u64, n: usize, max_ms: u64) -> Vec<Duration> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(x % max_ms)
        })
        .collect()
}

#[test]
fn killing_up_or_the_keeper_leaves_no_program_after_down() {
    let s = Scope::new();
    let marker = format!("grelab-kill-{}", s.prefix.trim_end_matches('-'));
    let lab = s.yaml(
        "kill.yaml",
        &format!(
            r#"name: kill
nodes:
  a:
    run:
      - name: one
        cmd: [sh, -c, "sleep 1000; : {marker}"]
      - name: forks
        cmd: [sh, -c, "setsid sh -c 'sleep 1000; : {marker}' </dev/null >/dev/null 2>&1 & exit 0"]
  b:
    run:
      - name: two
        cmd: [sh, -c, "sleep 1000; : {marker}"]
links:
  - endpoints: ["a:eth0", "b:eth0"]
"#
        ),
    );
    for (i, at) in moments(0x9e37_79b9, 20, 700).into_iter().enumerate() {
        up_killed_after(&lab, at);
        lab.down().ok();
        assert!(
            processes_with(&marker).is_empty(),
            "trial {i}: `up` killed after {at:?}: a program outlived `down`"
        );
        lab.assert_gone();
    }
    for i in 0..20 {
        lab.up(&["--no-check"]).ok();
        assert_eq!(processes_with(&marker).len(), 3, "trial {i}");
        let keeper = lab.record()["keeper"]["pid"].as_u64().unwrap() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(keeper),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // The kernel ends the lab's PID namespace with its first process.
        assert!(
            eventually(Duration::from_secs(3), || processes_with(&marker)
                .is_empty()),
            "trial {i}: programs outlived their keeper"
        );
        let st = lab.status().unwrap();
        assert!(st["status"].as_str().unwrap().contains("keeper"), "{st}");
        lab.down().ok();
        lab.assert_gone();
    }
}

#[test]
fn ospf_over_gre_converges_and_the_sites_reach_each_other() {
    require_tool("bird");
    let s = Scope::new();
    let lab = s.example("ospf-over-gre.yaml");
    lab.up(&[]).ok();
    // The file's checks wait for the adjacency, the routes and the pings.
    lab.verify(&[]).ok();
    let out = grelab(&[
        "exec",
        "--lab",
        &lab.name,
        "r1",
        "--",
        "birdc",
        "show",
        "ospf",
        "neighbors",
    ]);
    assert!(out.ok().stdout.contains("Full/PtP"), "{out}");
    let routes = ip_json(&lab.ns("r1"), &["route", "show", "10.2.0.0/24"]);
    assert_eq!(routes[0]["dev"], "tun0", "{routes}");
    assert_eq!(routes[0]["protocol"], "bird", "{routes}");
    assert_pings(&lab.ns("h1"), "10.2.0.10", 3);
    lab.down().ok();
    lab.assert_gone();
}
