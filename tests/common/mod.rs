//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The crate root, where topologies/ and tests/ live.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a bad topology file's first line promises: `# expect: LINE:COL: FRAGMENT`.
#[derive(Debug)]
pub struct Expect {
    pub path: PathBuf,
    pub line: u64,
    pub col: u64,
    pub fragment: String,
}

impl Expect {
    /// The file name, as the tests pass it to grelab.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// Reads the expectation of one file under tests/bad; panics with the file's
/// name if the first line is malformed (a broken test file, not a grelab bug).
pub fn expect_of(path: &Path) -> Expect {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let first = text.lines().next().unwrap_or("");
    let parsed = first.strip_prefix("# expect: ").and_then(|rest| {
        let (line, rest) = rest.split_once(':')?;
        let (col, fragment) = rest.split_once(": ")?;
        Some((line.parse().ok()?, col.parse().ok()?, fragment.to_owned()))
    });
    let (line, col, fragment) = parsed.unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# expect: LINE:COL: message`, is `{first}`",
            path.display()
        )
    });
    Expect {
        path: path.to_owned(),
        line,
        col,
        fragment,
    }
}

/// Every tests/bad/*.yaml, sorted, with its expectation.
pub fn bad_files() -> Vec<Expect> {
    let dir = root().join("tests/bad");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| expect_of(p)).collect()
}

/// Every topologies/*.yaml, sorted.
pub fn good_files() -> Vec<PathBuf> {
    let dir = root().join("topologies");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no topologies in {}", dir.display());
    paths
}

/// A fresh directory under the system temp dir, removed on drop (also when
/// the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "grelab-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file over the 8 MiB cap, made of YAML comments (so only its size is wrong).
pub fn write_huge(dir: &Path) -> PathBuf {
    let path = dir.join("huge.yaml");
    let line = format!("# {}\n", "x".repeat(1021));
    let mut text = String::from("name: huge\nnodes: {a: {}}\n");
    while text.len() <= 9 << 20 {
        text.push_str(&line);
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Asserts what `up` relies on in any plan of a valid topology: namespaces
/// first, every device made once and before it is addressed or brought up,
/// routes after all interfaces of their namespace are up, addresses unique,
/// and each tunnel's `local` an address of a veth in its namespace.
pub fn assert_plan_sound(name: &str, plan: &grelab::plan::Plan) {
    use grelab::plan::Step;
    let nss: Vec<&str> = plan.namespaces().collect();
    for (i, ns) in nss.iter().enumerate() {
        assert_eq!(
            plan.steps[i],
            Step::Namespace { ns: ns.to_string() },
            "{name}: namespaces come first, in node order"
        );
    }
    fn made_at(made: &[((&str, &str), usize)], ns: &str, dev: &str) -> Option<usize> {
        made.iter().find(|(k, _)| *k == (ns, dev)).map(|x| x.1)
    }
    // (ns, dev) -> index of the step that makes it.
    let mut made: Vec<((&str, &str), usize)> = Vec::new();
    let mut addrs = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        assert!(
            nss.contains(&step.ns()),
            "{name}: step {i} in an unknown namespace: {step:?}"
        );
        match step {
            Step::Veth {
                ns,
                name: dev,
                peer_ns,
                peer,
                ..
            } => {
                for key in [
                    (ns.as_str(), dev.as_str()),
                    (peer_ns.as_str(), peer.as_str()),
                ] {
                    assert!(
                        made_at(&made, key.0, key.1).is_none(),
                        "{name}: {key:?} made twice"
                    );
                    made.push((key, i));
                }
            }
            Step::Tunnel { end, .. } => {
                let key = (end.netns.as_str(), end.name.as_str());
                assert!(
                    made_at(&made, key.0, key.1).is_none(),
                    "{name}: {key:?} made twice"
                );
                made.push((key, i));
                assert!(end.mtu >= 68, "{name}: {end:?}");
                assert_ne!(end.local, end.remote, "{name}: {end:?}");
            }
            Step::Bridge { ns, name: dev, .. } => {
                let key = (ns.as_str(), dev.as_str());
                assert!(
                    made_at(&made, key.0, key.1).is_none(),
                    "{name}: {key:?} made twice"
                );
                made.push((key, i));
            }
            Step::Master { ns, dev, master } => {
                for d in [dev, master] {
                    assert!(
                        made_at(&made, ns, d).is_some(),
                        "{name}: step {i} bridges {ns}/{dev} into {master} before {d} exists"
                    );
                }
            }
            Step::Multicast { ns, dev, .. } => {
                assert!(
                    made_at(&made, ns, dev).is_some(),
                    "{name}: step {i} sets multicast on {ns}/{dev} before it exists"
                );
            }
            Step::Address { ns, dev, addr } => {
                assert!(
                    made_at(&made, ns, dev).is_some(),
                    "{name}: step {i} addresses {ns}/{dev} before it exists"
                );
                assert!(!addrs.contains(&addr.addr), "{name}: {addr} assigned twice");
                addrs.push(addr.addr);
            }
            Step::Up { ns, dev } if dev != "lo" => {
                assert!(
                    made_at(&made, ns, dev).is_some(),
                    "{name}: step {i} brings up {ns}/{dev} before it exists"
                );
            }
            Step::Route { ns, .. } => {
                let last_up = plan
                    .steps
                    .iter()
                    .rposition(|s| matches!(s, Step::Up { ns: n, .. } if n == ns));
                assert!(
                    last_up.is_some_and(|u| u < i),
                    "{name}: route before the interfaces of {ns} are up"
                );
            }
            _ => {}
        }
    }
    for (end, _) in plan.tunnels() {
        let on_veth = plan.steps.iter().any(|s| match s {
            Step::Address { ns, dev, addr } => {
                *ns == end.netns
                    && addr.addr == end.local
                    && plan.steps.iter().any(|v| {
                        matches!(v, Step::Veth { ns: a, name: d, .. } if a == ns && d == dev)
                            || matches!(v, Step::Veth { peer_ns: a, peer: d, .. } if a == ns && d == dev)
                    })
            }
            _ => false,
        });
        assert!(
            on_veth,
            "{name}: tunnel local {} is no veth address in {}",
            end.local, end.netns
        );
    }
}

/// `sh -n`: the text parses as a shell script.
pub fn assert_valid_shell(name: &str, script: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: sh -n rejects the script: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}
