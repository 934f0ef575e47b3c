//! Root tests of grelab's safety as root: hostile lab names, forged marks,
//! untrusted state directories, the umask, namespaces replaced behind its
//! back, and a SIGKILL, SIGINT or SIGTERM at each window of `up` and `down`.
//! Tests that need a host of their own (`down --all`, a fresh /run) run in
//! a private mount namespace with its own /run, so they see no other lab.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use support::*;

/// A two-node lab without tunnels named `name`, nodes `a` and `b`.
fn pair(name: &str, a: &str, b: &str) -> String {
    format!(
        "name: {name}\nnodes:\n  {a}: {{}}\n  {b}: {{}}\nlinks:\n  - endpoints: [\"{a}:e0\", \"{b}:e0\"]\n    addresses: [\"10.9.0.1/24\", \"10.9.0.2/24\"]\n"
    )
}

/// Runs `script` with `sh -eu` in a private mount namespace with a fresh,
/// empty /run: its namespaces and labs are the only ones it sees. `$G` is
/// the grelab binary.
fn isolated(script: &str) -> Out {
    let script = format!("mount -t tmpfs -o mode=0755 tmpfs /run\n{script}");
    run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-eu",
            "-c",
        ])
        .arg(script)
        .env("G", GRELAB))
}

#[test]
fn hostile_lab_names_are_refused_with_exit_2_and_touch_nothing() {
    let s = Scope::new();
    let victim_dir = format!("/run/{}victim", s.prefix);
    std::fs::create_dir_all(&victim_dir).unwrap();
    // Removed even when an assertion fails.
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(victim_dir.clone());
    std::fs::write(format!("{victim_dir}/keep"), "keep").unwrap();
    let victim_file = s.dir.join("victim");
    std::fs::write(&victim_file, "keep").unwrap();
    let up_dir = format!("../{}victim", s.prefix);
    let victim_file_str = victim_file.to_string_lossy().into_owned();
    let names = [
        up_dir.as_str(),
        victim_file_str.as_str(),
        ".locks",
        "..",
        "/",
        "a/b",
        "",
        "-x",
    ];
    let mut wrong = Vec::new();
    for name in names {
        let lab = format!("--lab={name}");
        for args in [
            vec!["down", &lab],
            vec!["verify", &lab],
            vec!["exec", &lab, "host1", "--", "true"],
            vec!["capture", &lab, "host1", "veth0", "-c", "1"],
        ] {
            let out = grelab(&args);
            if out.code != 2 || !out.stderr.contains("lab name") {
                wrong.push(format!("{args:?}: exit {}\n{out}", out.code));
            }
        }
    }
    let up = grelab(&[
        "up",
        &root().join("topologies/basic.yaml").to_string_lossy(),
        "--prefix",
        "../",
    ]);
    if up.code != 2 {
        wrong.push(format!("up --prefix ../: {up}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        std::fs::read_to_string(format!("{victim_dir}/keep")).unwrap(),
        "keep"
    );
    assert_eq!(std::fs::read_to_string(&victim_file).unwrap(), "keep");
    assert!(Path::new("/run/grelab/.locks").is_dir());
}

#[test]
fn down_all_removes_the_real_lab_and_leaves_forged_marks_and_their_paths() {
    let s = Scope::new();
    let file = root().join("topologies/basic.yaml");
    let out = isolated(&format!(
        r#"mkdir /run/victim && echo keep > /run/victim/file
"$G" up {file} --prefix {p} --no-check
ip netns add {p}forged1 && ip -n {p}forged1 link set lo alias 'grelab:../victim'
ip netns add {p}forged2 && ip -n {p}forged2 link set lo alias 'grelab:..'
code=0; "$G" down --all || code=$?
echo "down exit $code"
echo "left: $(ls /run/netns | tr '\n' ' ')"
cat /run/victim/file
"#,
        file = file.display(),
        p = s.prefix
    ));
    out.ok();
    let p = &s.prefix;
    assert!(out.stdout.contains("down exit 0"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("lab `{p}basic` is down: 3 namespaces removed")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("left: {p}forged1 {p}forged2 \n")),
        "the forged namespaces must stay, the lab's go: {out}"
    );
    assert!(
        out.stdout.contains("keep"),
        "the path in a mark was touched: {out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "namespace `{p}forged1` carries a grelab mark naming `../victim`"
        )),
        "{out}"
    );
}

#[test]
fn under_umask_000_state_is_never_group_or_world_writable() {
    let s = Scope::new();
    let file = root().join("topologies/basic.yaml");
    let lab = format!("{}basic", s.prefix);
    let out = isolated(&format!(
        r#"umask 000
"$G" up {file} --prefix {p} --no-check
stat -c '%a %F %n' /run/grelab /run/grelab/.locks /run/grelab/.locks/{lab} /run/grelab/{lab} /run/grelab/{lab}/*
"$G" down --lab {lab}
"#,
        file = file.display(),
        p = s.prefix
    ));
    out.ok();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("/run/grelab"))
        .collect();
    assert!(lines.len() >= 8, "state, journal, dataplane files: {out}");
    for line in lines {
        let mode = u32::from_str_radix(line.split(' ').next().unwrap(), 8).unwrap();
        assert_eq!(mode & 0o022, 0, "writable by others: {line}");
        if line.contains("directory") {
            assert_eq!(mode, 0o755, "{line}");
        } else {
            assert!(mode == 0o644 || mode == 0o600, "{line}");
        }
    }
}

/// grelab with its state in `dir` (GRELAB_STATE_DIR).
fn grelab_in(dir: &Path, args: &[&str]) -> Out {
    run(Command::new(GRELAB).args(args).env("GRELAB_STATE_DIR", dir))
}

#[test]
fn a_state_directory_that_is_a_link_foreign_or_writable_is_refused_with_exit_3() {
    let s = Scope::new();
    let file = root().join("topologies/basic.yaml");
    let file = file.to_string_lossy();
    let up = ["up", &file, "--prefix", &s.prefix, "--no-check"];
    let real = s.dir.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = s.dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let open = s.dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let foreign = s.dir.join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();

    for (dir, why) in [
        (&link, "symbolic link"),
        (&open, "writable by group or others"),
        (&foreign, "not owned by root"),
    ] {
        for args in [&up[..], &["down", "--lab", "x"], &["status"]] {
            let out = grelab_in(dir, args);
            assert_eq!(
                out.code,
                3,
                "{args:?} with state in {}: {out}",
                dir.display()
            );
            assert!(out.stderr.contains(why), "{out}");
        }
        assert!(
            namespaces_with(&s.prefix).is_empty(),
            "up built with untrusted state"
        );
    }
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);

    // A lab up, then its record handed to another user, or its directory
    // swapped for a link: verify runs none of its exec checks, down follows no link.
    let good = s.dir.join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
    grelab_in(&good, &up).ok();
    let lab = format!("{}basic", s.prefix);
    let record = good.join(&lab).join("state.json");
    std::os::unix::fs::chown(&record, Some(65534), None).unwrap();
    let out = grelab_in(&good, &["verify", "--lab", &lab]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("not owned by root"), "{out}");
    std::os::unix::fs::chown(&record, Some(0), None).unwrap();
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(grelab_in(&good, &["verify", "--lab", &lab]).code, 3);
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o644)).unwrap();

    let moved = s.dir.join("moved");
    std::fs::rename(good.join(&lab), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, good.join(&lab)).unwrap();
    let out = grelab_in(&good, &["down", "--lab", &lab]);
    assert_eq!(out.code, 3, "{out}");
    assert!(moved.join("state.json").exists(), "down followed the link");
    std::fs::remove_file(good.join(&lab)).unwrap();
    std::fs::rename(&moved, good.join(&lab)).unwrap();
    grelab_in(&good, &["down", "--lab", &lab]).ok();
    assert!(namespaces_with(&s.prefix).is_empty());
}

#[test]
fn a_namespace_replaced_behind_grelab_is_neither_entered_nor_removed() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let h1 = lab.ns("host1");
    ip(&["netns", "del", &h1]).ok();
    ip(&["netns", "add", &h1]).ok();
    let marker = s.dir.join("ran");
    let marker_s = marker.to_string_lossy();

    let out = grelab(&[
        "exec", "--lab", &lab.name, "host1", "--", "touch", &marker_s,
    ]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("not the one grelab created"), "{out}");
    assert!(!marker.exists(), "exec ran in the foreign namespace");
    let out = grelab(&[
        "capture",
        "--lab",
        &lab.name,
        "host1",
        "veth0",
        "-c",
        "1",
        "--timeout",
        "1",
    ]);
    assert_eq!(out.code, 3, "{out}");
    let st = lab.status().unwrap();
    let health = st["status"].as_str().unwrap();
    assert!(health.contains("replaced") && health.contains(&h1), "{st}");
    let out = lab.verify(&[]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.all().contains("not the one grelab created"), "{out}");
    let out = lab.down();
    out.ok();
    assert!(
        out.stdout.contains(&format!("left namespace `{h1}` alone")),
        "{out}"
    );
    assert_eq!(namespaces_with(&lab.prefix), vec![h1.clone()]);
    // Nor does `up` take it over.
    let out = lab.up(&["--no-check"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("grelab did not create it"), "{out}");
    assert_eq!(namespaces_with(&lab.prefix), vec![h1.clone()]);
    ip(&["netns", "del", &h1]).ok();
}

/// `up` with a crash point: it must die there.
fn up_crashing(lab: &Lab, point: &str, signal: &str) -> Out {
    let file = lab.file.to_string_lossy();
    run(Command::new(GRELAB)
        .args(["up", &file, "--prefix", &lab.prefix, "--no-check"])
        .env("GRELAB_CRASH_AT", point)
        .env("GRELAB_CRASH_SIGNAL", signal))
}

const UP_WINDOWS: [&str; 3] = ["namespace-placeholder", "namespace-mounted", "links-made"];

#[test]
fn a_sigkill_at_each_window_of_up_then_up_finishes_the_lab() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    for point in UP_WINDOWS {
        let out = up_crashing(&lab, point, "KILL");
        assert_eq!(out.code, -1, "{point}: up was not killed: {out}");
        lab.up(&["--no-check"]).ok();
        lab.verify(&[]).ok();
        lab.down().ok();
        lab.assert_gone();
    }
}

#[test]
fn a_sigkill_at_each_window_of_up_then_down_leaves_nothing() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    for point in UP_WINDOWS {
        let out = up_crashing(&lab, point, "KILL");
        assert_eq!(out.code, -1, "{point}: up was not killed: {out}");
        assert!(
            !namespaces_with(&lab.prefix).is_empty(),
            "{point}: nothing left to test"
        );
        let out = lab.down();
        out.ok();
        lab.assert_gone();
        assert!(namespaces_with(&lab.prefix).is_empty(), "{point}: {out}");
    }
}

#[test]
fn a_sigkill_during_down_then_down_again_removes_the_rest() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    lab.start();
    let out = run(Command::new(GRELAB)
        .args(["down", "--lab", &lab.name])
        .env("GRELAB_CRASH_AT", "namespace-unmounted"));
    assert_eq!(out.code, -1, "down was not killed: {out}");
    let left = namespaces_with(&lab.prefix);
    assert!(!left.is_empty());
    let out = lab.down();
    out.ok();
    assert!(out.stdout.contains("empty namespace files"), "{out}");
    lab.assert_gone();
    assert!(namespaces_with(&lab.prefix).is_empty());
}

#[test]
fn sigint_or_sigterm_during_up_rolls_back() {
    let s = Scope::new();
    let lab = s.example("basic.yaml");
    for signal in ["INT", "TERM"] {
        for point in ["namespace-mounted", "links-made"] {
            let out = up_crashing(&lab, point, signal);
            assert_eq!(out.code, 1, "{signal} at {point}: {out}");
            assert!(
                out.stderr.contains(&format!("interrupted by SIG{signal}"))
                    && out.stderr.contains("everything created was removed"),
                "{out}"
            );
            lab.assert_gone();
            assert!(namespaces_with(&lab.prefix).is_empty());
        }
    }
}

#[test]
fn up_removes_what_an_earlier_crashed_up_of_the_lab_left_under_other_names() {
    let s = Scope::new();
    let first = s.yaml("first.yaml", &pair("twin", "a1", "a2"));
    let out = up_crashing(&first, "namespace-mounted", "KILL");
    assert_eq!(out.code, -1, "{out}");
    assert!(!namespaces_with(&first.prefix).is_empty());
    let second = s.yaml("second.yaml", &pair("twin", "b1", "b2"));
    let out = second.up(&["--no-check"]);
    out.ok();
    assert!(out.stderr.contains("an earlier `up`"), "{out}");
    assert_eq!(
        namespaces_with(&s.prefix),
        vec![second.ns("b1"), second.ns("b2")]
    );
    second.down().ok();
    assert!(namespaces_with(&s.prefix).is_empty());
    let dir = Path::new("/run/grelab").join(&second.name);
    assert!(!dir.exists());
    // Nothing above left a file that others may write.
    let md = std::fs::metadata("/run/grelab").unwrap();
    assert_eq!(md.uid(), 0);
    assert_eq!(md.mode() & 0o022, 0);
}

#[test]
fn down_without_a_name_never_silently_misses_the_lab_that_is_up() {
    // ./grelab.yaml is the basic lab; the lab up is another one.
    let s = Scope::new();
    let basic = root().join("topologies/basic.yaml");
    let keyed = root().join("topologies/keyed.yaml");
    let out = isolated(&format!(
        r#"cd {dir} && cp {basic} grelab.yaml
"$G" up {keyed} --prefix {p}a- --no-check
"$G" down
echo "left: $(ls /run/netns | wc -l)"
"$G" up {keyed} --prefix {p}a- --no-check
"$G" up {keyed} --prefix {p}b- --no-check
code=0; "$G" down || code=$?
echo "several: $code"
"$G" down --all
"#,
        dir = s.dir.display(),
        basic = basic.display(),
        keyed = keyed.display(),
        p = s.prefix
    ));
    out.ok();
    let p = &s.prefix;
    assert!(
        out.stderr.contains(&format!(
            "grelab.yaml describes lab `basic`, which is not up; taking down `{p}a-keyed`"
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("lab `{p}a-keyed` is down")),
        "{out}"
    );
    assert!(out.stdout.contains("left: 0"), "{out}");
    assert!(out.stdout.contains("several: 2"), "{out}");
    assert!(
        out.stderr
            .contains("and grelab.yaml's lab `basic` is not one of them"),
        "{out}"
    );
}
