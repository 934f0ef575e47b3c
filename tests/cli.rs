//! The real `grelab` binary: exit codes, messages, files it reads and writes.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{TempDir, bad_files, good_files, root, write_huge};

/// Runs grelab with `args` in `dir` and returns its output.
fn grelab_in(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_grelab"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running grelab");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains("panicked"),
        "grelab {args:?} panicked:\n{all}"
    );
    out
}

fn grelab(args: &[&str]) -> Output {
    grelab_in(root(), args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the exit code, showing the output when it is wrong.
#[track_caller]
fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: want exit {code}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn validate_accepts_every_example() {
    for path in good_files() {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let out = grelab(&["validate", &rel]);
        assert_exit(&out, 0, &rel);
        assert!(
            text(&out.stdout).starts_with(&format!("{rel}: ok (lab `")),
            "{}",
            text(&out.stdout)
        );
        assert!(out.stderr.is_empty(), "{rel}: {}", text(&out.stderr));
    }
}

#[test]
fn validate_refuses_every_bad_file_at_its_location() {
    let mut failures = Vec::new();
    for e in bad_files() {
        let rel = format!("tests/bad/{}", e.name());
        let out = grelab(&["validate", &rel]);
        let err = text(&out.stderr);
        let at = format!("{rel}:{}:{}: error: ", e.line, e.col);
        if out.status.code() != Some(2) || !err.contains(&at) || !err.contains(&e.fragment) {
            failures.push(format!(
                "{rel}: want exit 2, `{at}` and `{}`; got exit {:?}:\n{err}",
                e.fragment,
                out.status.code()
            ));
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{rel}: stdout should be empty: {}",
                text(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn validate_reports_all_errors_with_a_count() {
    let out = grelab(&["validate", "tests/many-errors.yaml"]);
    assert_exit(&out, 2, "many-errors");
    let err = text(&out.stderr);
    let located = err
        .lines()
        .filter(|l| l.starts_with("tests/many-errors.yaml:") && l.contains(": error: "))
        .count();
    assert_eq!(located, 12, "{err}");
    assert!(
        err.trim_end()
            .ends_with("12 errors in tests/many-errors.yaml"),
        "{err}"
    );
    assert_eq!(
        err.matches("  hint: ").count(),
        12,
        "every error here has a hint:\n{err}"
    );
}

#[test]
fn unreadable_inputs_are_refused_quickly() {
    let dir = TempDir::new("cli-inputs");
    let huge = write_huge(dir.path());
    let bin = dir.path().join("garbage.yaml");
    std::fs::write(&bin, [0x7f, b'E', b'L', b'F', 0xff, 0x00, 0xc3, 0x28, 0x80]).unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let cases = [
        ("/dev/zero".to_owned(), "larger than 8 MiB"),
        (huge.display().to_string(), "larger than 8 MiB"),
        (bin.display().to_string(), "is not UTF-8 text"),
        (
            format!("{}", empty.display()),
            ":1:1: error: the file is empty",
        ),
    ];
    for (file, want) in cases {
        let start = Instant::now();
        let out = grelab(&["validate", &file]);
        let took = start.elapsed();
        assert_exit(&out, 2, &file);
        assert!(
            text(&out.stderr).contains(want),
            "{file}: {}",
            text(&out.stderr)
        );
        assert!(took < Duration::from_secs(5), "{file} took {took:?}");
    }
}

#[test]
fn missing_file_points_at_init() {
    let dir = TempDir::new("cli-missing");
    for args in [
        &["validate", "nope.yaml"][..],
        &["validate"],
        &["plan"],
        &["plan", "x.yaml"],
    ] {
        let out = grelab_in(dir.path(), args);
        assert_exit(&out, 2, &format!("{args:?}"));
        let err = text(&out.stderr);
        assert!(err.contains("cannot read topology file"), "{args:?}: {err}");
        assert!(err.contains("grelab init"), "{args:?}: {err}");
    }
    // With no FILE the message names the default file.
    let out = grelab_in(dir.path(), &["validate"]);
    assert!(
        text(&out.stderr).contains("`grelab.yaml`"),
        "{}",
        text(&out.stderr)
    );
}

/// topologies/NAME.yaml as `init` writes it: without the first line, the
/// modeline, whose path is relative to topologies/.
fn example_text(name: &str) -> String {
    let text = std::fs::read_to_string(root().join(format!("topologies/{name}.yaml"))).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(
        first.starts_with("# yaml-language-server: $schema="),
        "{name}: {first}"
    );
    rest.to_owned()
}

#[test]
fn init_writes_the_example_and_keeps_an_existing_file() {
    let dir = TempDir::new("cli-init");
    let file = dir.path().join("grelab.yaml");
    let basic = example_text("basic");

    let out = grelab_in(dir.path(), &["init"]);
    assert_exit(&out, 0, "init");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), basic);
    assert!(
        text(&out.stdout).contains("grelab up grelab.yaml"),
        "{}",
        text(&out.stdout)
    );

    // Commands without FILE use ./grelab.yaml.
    let out = grelab_in(dir.path(), &["validate"]);
    assert_exit(&out, 0, "validate ./grelab.yaml");
    assert!(
        text(&out.stdout).starts_with("grelab.yaml: ok (lab `basic`"),
        "{}",
        text(&out.stdout)
    );
    let out = grelab_in(dir.path(), &["plan"]);
    assert_exit(&out, 0, "plan ./grelab.yaml");
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(root().join("tests/snapshots/basic.sh")).unwrap()
    );

    // A second init refuses and leaves the file alone.
    std::fs::write(&file, "# mine\n").unwrap();
    let out = grelab_in(dir.path(), &["init", "--example", "keyed"]);
    assert_exit(&out, 2, "init over an existing file");
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");

    let out = grelab_in(dir.path(), &["init", "--example", "keyed", "--force"]);
    assert_exit(&out, 0, "init --force");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        example_text("keyed")
    );

    // Every example is written as the repository has it (less the modeline), and validates.
    for (example, file) in [
        ("basic", "basic"),
        ("gretap", "gretap"),
        ("ipv6-over-ipv4", "ipv6-over-ipv4"),
        ("keyed", "keyed"),
        ("l2-islands", "l2-islands"),
    ] {
        let out = grelab_in(
            dir.path(),
            &["init", "--example", example, "-o", "ex.yaml", "--force"],
        );
        assert_exit(&out, 0, example);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ex.yaml")).unwrap(),
            example_text(file),
            "{example}"
        );
        assert_exit(&grelab_in(dir.path(), &["validate", "ex.yaml"]), 0, example);
    }
}

#[test]
fn plan_json_has_the_steps() {
    let out = grelab(&["plan", "topologies/basic.yaml", "--format", "json"]);
    assert_exit(&out, 0, "plan --format json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON parses");
    assert_eq!(v["lab"], "basic");
    let steps = v["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(
        [
            count("namespace"),
            count("veth"),
            count("sysctl"),
            count("tunnel"),
            count("address"),
            count("up"),
            count("route"),
            count("multicast")
        ],
        [3, 2, 1, 2, 6, 9, 2, 2],
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), 27);
    // Namespaces first, routes last.
    assert_eq!(&kinds[..3], ["namespace"; 3]);
    assert_eq!(&kinds[25..], ["route"; 2]);
    let tunnel = steps.iter().find(|s| s["step"] == "tunnel").unwrap();
    assert_eq!(tunnel["backend"], "auto");
    let end = &tunnel["end"];
    assert_eq!(
        (
            &end["name"],
            &end["netns"],
            &end["kind"],
            &end["local"],
            &end["remote"],
            &end["mtu"],
            &end["ttl"]
        ),
        (
            &"tun0".into(),
            &"host1".into(),
            &"gre".into(),
            &"172.16.10.2".into(),
            &"152.16.10.2".into(),
            &1476.into(),
            &255.into()
        )
    );
    assert_eq!(
        steps.iter().find(|s| s["step"] == "route").unwrap(),
        &serde_json::json!({"step": "route", "ns": "host1", "to": "default", "via": "172.16.10.1"})
    );
    assert_eq!(v["checks"][0]["ping"]["to"], "192.168.50.2");
}

#[test]
fn plan_prefix_renames_namespaces() {
    let out = grelab(&["plan", "topologies/basic.yaml", "--prefix", "ci1-"]);
    assert_exit(&out, 0, "plan --prefix");
    let script = text(&out.stdout);
    for ns in ["host1", "internet", "host2"] {
        assert!(
            script.contains(&format!("ip netns add ci1-{ns}\n")),
            "{script}"
        );
        assert!(
            !script.contains(&format!("ip netns add {ns}\n")),
            "{script}"
        );
    }
    assert!(script.contains("# Lab `ci1-basic`"), "{script}");
    let out = grelab(&[
        "plan",
        "topologies/basic.yaml",
        "--prefix",
        "ci1-",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lab"], "ci1-basic");
    assert_eq!(
        v["nodes"][1],
        serde_json::json!({"node": "internet", "ns": "ci1-internet"})
    );
}

#[test]
fn plan_refuses_a_bad_prefix() {
    for prefix in ["bad prefix", "a/b", "-x", ".x", &"p".repeat(33)] {
        let out = grelab(&[
            "plan",
            "topologies/basic.yaml",
            &format!("--prefix={prefix}"),
        ]);
        assert_exit(&out, 2, prefix);
        assert!(
            text(&out.stderr).contains("--prefix: prefix `"),
            "{prefix}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{prefix}: nothing is printed");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["validate", "--frob"],
        &["plan", "topologies/basic.yaml", "--format", "xml"],
        &["init", "--example", "nope"],
        &["validate", "a.yaml", "b.yaml"],
    ] {
        let out = grelab(args);
        assert_exit(&out, 2, &format!("{args:?}"));
        let err = text(&out.stderr);
        // clap shows the usage, or says where to find it.
        assert!(
            err.contains("Usage: grelab") || err.contains("try '--help'"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_of_each_command_says_what_it_does() {
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "Build GRE tunnel labs in network namespaces"),
        (&["help", "validate"], "report every error at once"),
        (&["validate", "--help"], "report every error at once"),
        (&["plan", "--help"], "iproute2 script"),
        (&["init", "--help"], "Write an example topology"),
        (&["up", "--help"], "Build the lab described by FILE"),
        (&["down", "--help"], "Remove a lab"),
        (&["verify", "--help"], "Run the lab's checks"),
        (&["status", "--help"], "List the labs that are up"),
        (
            &["exec", "--help"],
            "Run a command inside a node's namespace",
        ),
    ];
    for (args, purpose) in cases {
        let out = grelab(args);
        assert_exit(&out, 0, &format!("{args:?}"));
        let help = text(&out.stdout);
        assert!(
            help.contains(purpose),
            "{args:?} should say `{purpose}`:\n{help}"
        );
        assert!(help.contains("Usage: grelab"), "{args:?}:\n{help}");
    }
    let out = grelab(&["--version"]);
    assert_exit(&out, 0, "--version");
    assert_eq!(
        text(&out.stdout),
        format!("grelab {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn capture_refuses_a_timeout_that_is_no_finite_number_of_seconds() {
    // Refused while parsing the arguments: no lab needs to be up.
    for t in ["nan", "NaN", "inf", "-inf", "-1", "86401", "1e300", "ten"] {
        let joined = format!("--timeout={t}");
        for args in [
            &["capture", "x", "y", "--timeout", t][..],
            &["capture", "x", "y", &joined],
        ] {
            let out = grelab(args);
            assert_exit(&out, 2, &format!("{args:?}"));
            let err = text(&out.stderr);
            assert!(
                err.contains(&format!("invalid value '{t}' for '--timeout")),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn help_says_how_each_output_file_is_written() {
    for (cmd, says) in [
        (
            "capture",
            &["kept unless --force", "symbolic link", "--force"][..],
        ),
        ("init", &["kept unless --force", "symbolic link"]),
        ("verify", &["earlier run is replaced", "symbolic link"]),
    ] {
        let out = grelab(&[cmd, "--help"]);
        assert_exit(&out, 0, cmd);
        // clap wraps long help to the terminal; compare words, not lines.
        let help = text(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for s in says {
            assert!(help.contains(s), "`{cmd} --help` should say `{s}`:\n{help}");
        }
    }
}

#[test]
fn the_dataplane_takes_only_a_pipes_write_end_as_its_ready_fd() {
    let dir = TempDir::new("ready-fd");
    let spec = dir.path().join("no-such-spec.json");
    let stats = dir.path().join("stats.json");
    // `sh` sets up fd 3 (or not) as each case says, then runs the dataplane.
    let run = |fd: &str, redirect: &str| {
        let script = format!(
            "exec \"$0\" dataplane --spec \"$1\" --stats \"$2\" --ready-fd {fd} {redirect}"
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_grelab"))
            .arg(&spec)
            .arg(&stats)
            .stdin(std::process::Stdio::piped())
            .output()
            .expect("running sh")
    };
    let refused = [
        ("1", "", "0, 1 and 2 are the standard streams"),
        ("2", "", "0, 1 and 2 are the standard streams"),
        ("9", "", "not an open descriptor"),
        ("3", "3</dev/null", "not a pipe"),
        (
            "3",
            &format!("3>{}", dir.path().join("f").display()),
            "not a pipe",
        ),
        // stdin is a pipe here: its read end.
        ("3", "3<&0", "not a pipe's write end"),
    ];
    for (fd, redirect, why) in refused {
        let out = run(fd, redirect);
        let what = format!("--ready-fd {fd} {redirect}");
        assert_exit(&out, 2, &what);
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("--ready-fd {fd}: {why}")) && err.contains("write end of a pipe"),
            "{what}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{what} wrote to stdout");
    }
    // A pipe's write end (stdout's, as fd 3) is taken: the failure to read
    // the spec is reported on it.
    let out = run("3", "3>&1");
    assert_exit(&out, 1, "a pipe");
    let said = text(&out.stdout);
    assert!(
        said.starts_with("error: reading dataplane spec"),
        "the ready pipe: {said:?}"
    );
}

#[test]
fn graph_of_each_example_renders_with_graphviz_and_draws_each_tunnel_above_its_path() {
    for file in good_files() {
        let f = file.to_string_lossy();
        let out = grelab(&["graph", &f]);
        assert_exit(&out, 0, &f);
        let dot = text(&out.stdout);
        assert!(
            dot.contains("style=dashed") && dot.contains("constraint=false"),
            "{f}: {dot}"
        );
        let mut render = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("`dot` (graphviz) is not installed; tests/run.sh installs it");
        use std::io::Write;
        render
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let svg = render.wait_with_output().unwrap();
        assert!(
            svg.status.success(),
            "{f}: dot refused it: {}",
            text(&svg.stderr)
        );
        let svg = text(&svg.stdout);
        // Every node, link end and tunnel of the file, from its plan.
        let plan = grelab(&["plan", &f, "--format", "json"]);
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let mut needles: Vec<String> = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap().to_owned())
            .collect();
        for step in plan["steps"].as_array().unwrap() {
            match step["step"].as_str() {
                Some("veth") => needles.push(step["name"].as_str().unwrap().to_owned()),
                Some("tunnel") => needles.push(step["end"]["name"].as_str().unwrap().to_owned()),
                Some("bridge") => needles.push(step["name"].as_str().unwrap().to_owned()),
                _ => {}
            }
        }
        // Graphviz writes `-` as `&#45;` in SVG text.
        needles.extend([" gre".to_owned(), " mtu 1".to_owned(), "over ".to_owned()]);
        for needle in needles {
            assert!(svg.contains(&needle), "{f}: the picture lacks `{needle}`");
        }
    }
    let basic_svg = {
        let basic = root().join("topologies/basic.yaml");
        let dot = grelab(&["graph", &basic.to_string_lossy()]);
        let mut render = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        render.stdin.take().unwrap().write_all(&dot.stdout).unwrap();
        text(&render.wait_with_output().unwrap().stdout)
    };
    for needle in ["&#45;&#45; veth", "over host1 &#45; internet &#45; host2"] {
        assert!(
            basic_svg.contains(needle),
            "basic: the picture lacks `{needle}`"
        );
    }
    let basic = root().join("topologies/basic.yaml");
    let out = grelab(&["graph", &basic.to_string_lossy(), "--format", "mermaid"]);
    assert_exit(&out, 0, "mermaid");
    let m = text(&out.stdout);
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines[0], "flowchart LR", "{m}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" ---|")).count(),
        2,
        "{m}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains(" -.-|")).count(),
        1,
        "{m}"
    );
    assert!(
        m.contains("tun0 gre mtu 1476<br/>192.168.50.1/30 <-> 192.168.50.2/30"),
        "{m}"
    );
}

#[test]
fn explain_shows_each_tunnels_bytes_and_mtu_arithmetic() {
    let ex = |file: &str, extra: &[&str]| {
        let f = root().join("topologies").join(file);
        let f = f.to_string_lossy();
        let mut args = vec!["explain", &f];
        args.extend_from_slice(extra);
        let out = grelab(&args);
        assert_exit(&out, 0, file);
        text(&out.stdout)
    };
    let basic = ex("basic.yaml", &[]);
    for needle in [
        "MTU: 1500 (veth0) - 20 (outer IPv4) - 4 (GRE) = 1476",
        "20 bytes | 172.16.10.2 > 152.16.10.2, protocol GRE (47), ttl 255, DF set",
        "IP (tos 0x0, ttl 255, id ..., offset 0, flags [DF], proto GRE (47), length 108)",
        "172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88",
        "192.168.50.1 > 192.168.50.2: ICMP echo request, id ..., seq 1, length 64",
    ] {
        assert!(basic.contains(needle), "basic lacks `{needle}`:\n{basic}");
    }
    let keyed = ex("keyed.yaml", &["tun1"]);
    assert!(keyed.contains("- 8 (GRE with key) = 1472"), "{keyed}");
    assert!(
        keyed.contains("2 (0x00000002)") && !keyed.contains("tunnel tun0"),
        "{keyed}"
    );
    let gretap = ex("gretap.yaml", &[]);
    assert!(gretap.contains("- 14 (inner Ethernet) = 1462"), "{gretap}");
    assert!(gretap.contains("0x6558"), "{gretap}");
    let out = grelab(&[
        "explain",
        &root().join("topologies/basic.yaml").to_string_lossy(),
        "nope",
    ]);
    assert_exit(&out, 2, "an unknown tunnel");
    assert!(text(&out.stderr).contains("has no tunnel `nope`; tunnels: tun0"));
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_itself() {
    let out = grelab(&["completions", "bash"]);
    assert_exit(&out, 0, "completions bash");
    let script = text(&out.stdout);
    for cmd in ["up", "down", "verify", "graph", "explain"] {
        assert!(script.contains(cmd), "bash completion lacks `{cmd}`");
    }
    let dir = TempDir::new("man");
    let path = dir.path().join("grelab.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    for shell in ["zsh", "fish"] {
        assert_exit(&grelab(&["completions", shell]), 0, shell);
    }
    let out = grelab(&["man", &dir.path().to_string_lossy()]);
    assert_exit(&out, 0, "man");
    for page in [
        "grelab.1",
        "grelab-up.1",
        "grelab-graph.1",
        "grelab-explain.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text:.200}"
        );
    }
    assert!(
        !dir.path().join("grelab-dataplane.1").exists()
            && !dir.path().join("grelab-keeper.1").exists(),
        "the hidden commands have no page"
    );
    // Every page renders with man(1) itself, without a warning.
    let mut pages = 0;
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "1") {
            continue;
        }
        pages += 1;
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("`man` (man-db) is not installed; tests/run.sh installs it");
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(out.status.success(), "man -l {name}: {}", text(&out.stderr));
        assert!(
            out.stderr.is_empty(),
            "man -l {name} warns: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("NAME"),
            "man -l {name}: {}",
            text(&out.stdout)
        );
    }
    assert!(pages >= 15, "only {pages} man pages");
}

/// Mermaid's own parser (tests/mermaid, installed by tests/run.sh from npm)
/// accepts the graph of every example, and refuses a broken one.
#[cfg(feature = "root-tests")]
#[test]
fn mermaid_parses_the_graph_of_every_example() {
    let dir = std::env::temp_dir().join(format!("grelab-mermaid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for file in good_files() {
        let f = file.to_string_lossy();
        let out = grelab(&["graph", &f, "--format", "mermaid"]);
        assert_exit(&out, 0, &f);
        let path = dir.join(format!(
            "{}.mmd",
            file.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::write(&path, &out.stdout).unwrap();
        files.push(path);
    }
    let broken = dir.join("broken.mmd");
    std::fs::write(&broken, "flowchart LR\n  a -->\n").unwrap();
    let check = |files: &[std::path::PathBuf]| {
        Command::new("node")
            .arg(root().join("tests/mermaid/check.mjs"))
            .args(files)
            .output()
            .expect("`node` is not installed; tests/run.sh installs it")
    };
    let good = check(&files);
    let bad = check(std::slice::from_ref(&broken));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        good.status.success(),
        "{}{}",
        text(&good.stdout),
        text(&good.stderr)
    );
    assert_eq!(
        text(&good.stdout)
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        files.len()
    );
    assert!(
        !bad.status.success(),
        "the parser took a broken graph: {}",
        text(&bad.stdout)
    );
}
