//! Helpers for the root tests that build real labs: run the grelab binary
//! (and `ip`, `ping`, `tcpdump`) with a deadline, give every lab its own
//! namespace prefix, and remove whatever a test made even when it fails.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const GRELAB: &str = env!("CARGO_BIN_EXE_grelab");

/// No grelab or tool run in these tests should come near this.
const DEADLINE: Duration = Duration::from_secs(120);

/// The crate root, where topologies/ lives.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The crate's one check that a root test runs as root.
pub use grelab::sys::testns::require_root;

/// Fails the test when a tool it drives is missing.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(tool).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file())
    });
    assert!(
        found,
        "`{tool}` is not installed; tests/run.sh installs what the tests need"
    );
}

/// What a finished command said.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub what: String,
}

impl Out {
    /// Panics with everything the command said unless it exited `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "`{}` exited {}, expected {code}:\n{self}",
            self.what, self.code
        );
        self
    }

    /// Panics unless the command exited 0.
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- stdout of `{}`\n{}--- stderr\n{}---",
            self.what, self.stdout, self.stderr
        )
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to the end (killing it past the deadline) and collects its output.
pub fn run(cmd: &mut Command) -> Out {
    let what = format!("{cmd:?}").replace('"', "");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let status = wait(&mut child, DEADLINE, &what);
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
        what,
    }
}

/// Waits for `child`, killing it and failing the test past `limit`.
fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("waiting for a child") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs grelab with `args`.
pub fn grelab(args: &[&str]) -> Out {
    run(Command::new(GRELAB).args(args))
}

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Out {
    run(Command::new("ip").args(args))
}

/// Runs `cmd` inside namespace `ns` (iproute2's `ip netns exec`).
pub fn in_ns(ns: &str, cmd: &[&str]) -> Out {
    run(Command::new("ip").args(["netns", "exec", ns]).args(cmd))
}

/// `ip -j -n NS ARGS`, parsed.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = run(Command::new("ip").args(["-j", "-n", ns]).args(args));
    out.ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Pings `to` from namespace `ns` `count` times (0.2 s apart), returns what ping said.
pub fn ping(ns: &str, to: &str, count: u32) -> Out {
    let count = count.to_string();
    let mut args = vec!["ping", "-n", "-c", &count, "-i", "0.2", "-W", "1"];
    if to.contains(':') {
        args.push("-6");
    }
    args.push(to);
    in_ns(ns, &args)
}

/// Asserts that `ns` gets `count` of `count` replies from `to`.
pub fn assert_pings(ns: &str, to: &str, count: u32) {
    let out = ping(ns, to, count);
    let want = format!("{count} packets transmitted, {count} received");
    assert!(
        out.code == 0 && out.stdout.contains(&want),
        "{ns} -> {to}: wanted {count}/{count} replies\n{out}"
    );
}

/// Processes serving lab `lab`'s dataplane, alive (zombies excluded).
pub fn dataplanes_of(lab: &str) -> Vec<u32> {
    let spec = format!("/run/grelab/{lab}/dataplane.json");
    processes_with(&spec)
}

/// Live processes whose command line holds `needle` as one argument or part of one.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// What /proc/PID/stat says of a process.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
}

/// /proc/PID/stat of `pid`, if it exists.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let num = |i: usize| rest.get(i)?.parse().ok();
    Some(Stat {
        state: rest.first()?.chars().next()?,
        ppid: num(1)?,
        pgrp: num(2)?,
        session: num(3)?,
    })
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Polls `cond` every 20 ms for up to `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Named namespaces whose name starts with `prefix`.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A namespace prefix of this test's own, and everything made under it.
/// Dropping it takes down every lab of the prefix, then removes by hand
/// whatever is left (namespaces, dataplanes, records), so a failing test
/// leaves nothing behind.
pub struct Scope {
    pub prefix: String,
    /// A directory for the test's topology files (world-readable, for `nobody`).
    pub dir: PathBuf,
}

impl Scope {
    pub fn new() -> Scope {
        require_root();
        let prefix = format!(
            "gl{}-{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("grelab-test-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scope { prefix, dir }
    }

    /// Lab `file` of topologies/ under this prefix.
    pub fn example(&self, file: &str) -> Lab {
        self.lab_at(root().join("topologies").join(file), &self.prefix)
    }

    /// Lab `file` of topologies/ under this prefix plus `extra` (a second lab of one file).
    pub fn example_as(&self, file: &str, extra: &str) -> Lab {
        self.lab_at(
            root().join("topologies").join(file),
            &format!("{}{extra}", self.prefix),
        )
    }

    /// A lab from YAML text, written to this scope's directory as `file`.
    pub fn yaml(&self, file: &str, text: &str) -> Lab {
        let path = self.dir.join(file);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        self.lab_at(path, &self.prefix)
    }

    fn lab_at(&self, file: PathBuf, prefix: &str) -> Lab {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name:"))
            .map(|n| n.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{} has no `name:` line", file.display()));
        Lab {
            file,
            prefix: prefix.to_owned(),
            name: format!("{prefix}{name}"),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let labs: Vec<String> = std::fs::read_dir("/run/grelab")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        for lab in &labs {
            let _ = grelab(&["down", "--lab", lab]);
        }
        // The fallback: the test's own dataplanes, namespaces and records.
        for pid in processes_with(&format!("/run/grelab/{}", self.prefix)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for ns in namespaces_with(&self.prefix) {
            let _ = ip(&["netns", "del", &ns]);
        }
        for lab in labs {
            let _ = std::fs::remove_dir_all(Path::new("/run/grelab").join(&lab));
        }
        // grelab keeps its lock files; the test's go with it.
        for e in std::fs::read_dir("/run/grelab/.locks")
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One lab: its file, prefix and name (prefix included).
#[derive(Debug, Clone)]
pub struct Lab {
    pub file: PathBuf,
    pub prefix: String,
    pub name: String,
}

impl Lab {
    /// The namespace of `node`.
    pub fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    /// `grelab up FILE --prefix P EXTRA...`.
    pub fn up(&self, extra: &[&str]) -> Out {
        let file = self.file.to_string_lossy();
        let mut args = vec!["up", &file, "--prefix", &self.prefix];
        args.extend_from_slice(extra);
        grelab(&args)
    }

    /// `up`, which must succeed; skips the ping checks (tests ping themselves).
    pub fn start(&self) -> &Self {
        self.up(&["--no-check"]).ok();
        self
    }

    /// `grelab down --lab NAME`.
    pub fn down(&self) -> Out {
        grelab(&["down", "--lab", &self.name])
    }

    /// `grelab verify --lab NAME EXTRA...`.
    pub fn verify(&self, extra: &[&str]) -> Out {
        let mut args = vec!["verify", "--lab", &self.name];
        args.extend_from_slice(extra);
        grelab(&args)
    }

    /// `verify --format json`, parsed, and its exit code.
    pub fn verify_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let out = self.verify(&args);
        let doc = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("verify's JSON does not parse: {e}\n{out}"));
        (out.code, doc)
    }

    /// The lab's record directory.
    pub fn dir(&self) -> PathBuf {
        Path::new("/run/grelab").join(&self.name)
    }

    /// The lab's record, parsed.
    pub fn record(&self) -> Value {
        let path = self.dir().join("state.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The dataplane pid the record names (within its identity; records
    /// before identities had only `dataplane_pid`).
    pub fn dataplane_pid(&self) -> u32 {
        let record = self.record();
        record["dataplane"]["pid"]
            .as_u64()
            .or(record["dataplane_pid"].as_u64())
            .unwrap_or_else(|| panic!("lab {} records no dataplane", self.name)) as u32
    }

    /// This lab's entry in `grelab status --format json`, if listed.
    pub fn status(&self) -> Option<Value> {
        let out = grelab(&["status", "--format", "json"]);
        out.ok();
        let all: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        all.as_array()?
            .iter()
            .find(|l| l["lab"] == self.name.as_str())
            .cloned()
    }

    /// The lab's namespaces, as `grelab plan` names them.
    pub fn namespaces(&self) -> Vec<String> {
        let file = self.file.to_string_lossy();
        let out = grelab(&["plan", &file, "--prefix", &self.prefix, "--format", "json"]);
        out.ok();
        let plan: Value = serde_json::from_str(&out.stdout).unwrap();
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["ns"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Asserts that nothing of the lab is left: namespaces, record, dataplane.
    pub fn assert_gone(&self) {
        let left: Vec<String> = self
            .namespaces()
            .into_iter()
            .filter(|n| Path::new("/run/netns").join(n).exists())
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        assert!(!self.dir().exists(), "{} left behind", self.dir().display());
        let dps = dataplanes_of(&self.name);
        assert!(dps.is_empty(), "dataplane processes left running: {dps:?}");
    }
}

/// A tcpdump running inside a namespace, started and listening.
pub struct Tcpdump {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Tcpdump {
    /// Starts `tcpdump -n -v -l --immediate-mode -i IFACE -c COUNT FILTER` in
    /// `ns` and returns once it listens.
    pub fn start(ns: &str, iface: &str, count: u32, filter: &str) -> Tcpdump {
        require_tool("tcpdump");
        let count = count.to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-n", "-v", "-l"])
            .args(["--immediate-mode", "-i", iface, "-c", &count, filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
        let out = reader(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tcpdump in {ns} did not start listening: {}",
                err.join().unwrap_or_default()
            );
        }
        Tcpdump {
            child,
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits up to `limit` for the packets (then stops it) and returns what it printed.
    pub fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = self.out.take().map(|h| h.join().unwrap_or_default());
        let err = self.err.take().map(|h| h.join().unwrap_or_default());
        format!("{}{}", out.unwrap_or_default(), err.unwrap_or_default())
    }
}

impl Drop for Tcpdump {
    /// A test that fails mid-capture leaves no tcpdump behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
