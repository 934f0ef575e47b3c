//! Root tests of the files grelab writes where the user says (`init -o`,
//! `verify --junit`, `capture -w`): never through a symbolic link, an
//! existing file replaced only with `--force` (a JUnit report: always),
//! mode 0644 under `umask 000`, owned by the sudo user.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use support::*;

/// One node and nothing else: `verify` has no check to run, `capture` has `lo`.
const ONE_NODE: &str = "name: out\nnodes:\n  a: {}\n";

/// As if `sudo` was run by `nobody`.
const SUDO_NOBODY: &[(&str, &str)] = &[("SUDO_UID", "65534"), ("SUDO_GID", "65534")];

/// Runs grelab with `args` under `umask 000`, with `env` added.
fn grelab_umask0(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" \"$@\"", GRELAB])
        .args(args)
        .envs(env.iter().copied());
    run(&mut cmd)
}

/// A command that writes a file at a path given by `flag`.
struct Writer<'a> {
    /// The command and its arguments, before `flag PATH`.
    args: Vec<&'a str>,
    flag: &'a str,
    /// Its documented default replaces an existing file (no --force needed).
    replaces: bool,
    /// It has --force.
    has_force: bool,
    /// Whether the bytes are what the command writes.
    looks_right: fn(&[u8]) -> bool,
}

impl Writer<'_> {
    fn write(&self, path: &Path, extra: &[&str], env: &[(&str, &str)]) -> Out {
        let mut args = self.args.clone();
        let path = path.to_str().unwrap();
        args.extend([self.flag, path]);
        args.extend_from_slice(extra);
        let out = grelab_umask0(&args, env);
        assert!(!out.stderr.contains("panicked"), "{out}");
        out
    }

    /// Whether `path` holds what the command writes.
    fn written(&self, path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|b| (self.looks_right)(&b))
    }
}

/// Mode bits and owner of `path` (not followed), as `0644 UID:GID`.
fn mode_owner(path: &Path) -> String {
    std::fs::symlink_metadata(path).map_or_else(
        |e| e.to_string(),
        |m| {
            format!(
                "{:04o} {}:{}",
                m.permissions().mode() & 0o7777,
                m.uid(),
                m.gid()
            )
        },
    )
}

/// Every rule, for one command, in a fresh directory `dir`. Each broken
/// rule is listed (not only the first), then the test fails.
fn assert_output_rules(w: &Writer, dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    let mut broken: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: &str, out: Option<&Out>| {
        if !ok {
            broken.push(format!(
                "{what}\n{}",
                out.map(ToString::to_string).unwrap_or_default()
            ));
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let forces: &[&[&str]] = if w.has_force {
        &[&[], &["--force"]]
    } else {
        &[&[]]
    };

    // A link to a victim: refused, with or without --force; victim and link stay.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.join("link");
    symlink(&victim, &link).unwrap();
    for extra in forces {
        let out = w.write(&link, extra, &[]);
        let says = format!("`{}` is a symbolic link", link.display());
        check(
            out.code == 2
                && out.stderr.contains(&says)
                && out.stderr.contains("remove it or name another file"),
            &format!("a link {extra:?}: want exit 2 and `{says}`"),
            Some(&out),
        );
        check(
            read(&victim) == "precious\n",
            "the victim was written",
            None,
        );
        check(
            std::fs::read_link(&link).ok() == Some(victim.clone()),
            "the link was touched",
            None,
        );
    }

    // A dangling link: nothing is created where it points.
    let absent = dir.join("absent");
    let dangling = dir.join("dangling");
    symlink(&absent, &dangling).unwrap();
    for extra in forces {
        let out = w.write(&dangling, extra, &[]);
        check(
            out.code == 2,
            &format!("a dangling link {extra:?}: want exit 2"),
            Some(&out),
        );
        check(
            std::fs::symlink_metadata(&absent).is_err(),
            "created through a dangling link",
            None,
        );
        let _ = std::fs::remove_file(&absent);
    }

    // An existing file: kept without --force unless replacing is the default.
    let existing = dir.join("existing");
    std::fs::write(&existing, "mine\n").unwrap();
    let out = w.write(&existing, &[], &[]);
    if w.replaces {
        check(
            out.code == 0,
            "replacing an existing file: want exit 0",
            Some(&out),
        );
        check(
            w.written(&existing),
            "the existing file was not replaced",
            None,
        );
    } else {
        check(
            out.code == 2
                && out.stderr.contains("exists already")
                && out.stderr.contains("--force"),
            "an existing file without --force: want exit 2, pointing at --force",
            Some(&out),
        );
        check(
            read(&existing) == "mine\n",
            "replaced without --force",
            None,
        );
        let out = w.write(&existing, &["--force"], &[]);
        check(out.code == 0, "--force: want exit 0", Some(&out));
        check(
            w.written(&existing),
            "--force did not replace the file",
            None,
        );
    }
    let got = mode_owner(&existing);
    check(
        got == "0644 0:0",
        &format!("the replacement: want mode 0644 and root's, got {got}"),
        None,
    );

    // Under sudo the file is the invoking user's, new or replaced, 0644.
    let fresh = dir.join("fresh");
    let out = w.write(&fresh, &[], SUDO_NOBODY);
    check(out.code == 0 && w.written(&fresh), "a new file", Some(&out));
    let got = mode_owner(&fresh);
    check(
        got == "0644 65534:65534",
        &format!("a new file under sudo: want 0644 and 65534:65534, got {got}"),
        None,
    );
    let force: &[&str] = if w.has_force { &["--force"] } else { &[] };
    let out = w.write(&existing, force, SUDO_NOBODY);
    let got = mode_owner(&existing);
    check(
        out.code == 0 && got == "0644 65534:65534",
        &format!("a replaced file under sudo: want 0644 and 65534:65534, got {got}"),
        Some(&out),
    );

    // No temporary file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    check(
        names == ["dangling", "existing", "fresh", "link", "victim"],
        &format!("files left in the directory: {names:?}"),
        None,
    );
    assert!(
        broken.is_empty(),
        "{} rules broken:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn init_never_writes_through_a_link_and_keeps_a_file_without_force() {
    let s = Scope::new();
    let w = Writer {
        args: vec!["init", "--example", "basic"],
        flag: "-o",
        replaces: false,
        has_force: true,
        // The example less its first line, the repository's modeline.
        looks_right: |b| {
            include_bytes!("../topologies/basic.yaml").ends_with(b)
                && b.starts_with(b"# The seed lab")
        },
    };
    assert_output_rules(&w, &s.dir.join("init"));
}

#[test]
fn verify_junit_never_writes_through_a_link_and_replaces_an_earlier_report() {
    let s = Scope::new();
    let lab = s.yaml("one.yaml", ONE_NODE);
    lab.start();
    let w = Writer {
        args: vec!["verify", "--lab", &lab.name],
        flag: "--junit",
        replaces: true,
        has_force: false,
        looks_right: |b| b.starts_with(b"<?xml") && b.ends_with(b"</testsuites>\n"),
    };
    assert_output_rules(&w, &s.dir.join("junit"));
}

#[test]
fn capture_never_writes_through_a_link_and_keeps_a_file_without_force() {
    let s = Scope::new();
    let lab = s.yaml("one.yaml", ONE_NODE);
    lab.start();
    let w = Writer {
        args: vec![
            "capture",
            "--lab",
            &lab.name,
            "a",
            "lo",
            "-c",
            "1",
            "--timeout",
            "0.2",
        ],
        flag: "-w",
        replaces: false,
        has_force: true,
        // The pcap file header: magic, version 2.4.
        looks_right: |b| b.len() >= 24 && b[..6] == [0xd4, 0xc3, 0xb2, 0xa1, 2, 0],
    };
    assert_output_rules(&w, &s.dir.join("capture"));

    // A timeout that is no number of seconds is refused before anything runs.
    for t in ["nan", "inf", "-1"] {
        let out = grelab(&[
            "capture",
            "--lab",
            &lab.name,
            "a",
            "lo",
            &format!("--timeout={t}"),
        ]);
        out.expect_code(2);
        assert!(out.stderr.contains("--timeout"), "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
}
