//! The root tests' one namespace fixture (the crate's own, and the
//! integration tests' through the `root-tests` feature): namespaces of the
//! test's own, named so that no two tests or runs meet, deleted on drop even
//! when the test fails; `ip` (iproute2) to build in them, and as a witness.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys::netns;

/// Fails the test (never skips it) unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds network namespaces and needs root: run it as root (tests/run.sh and CI do)"
    );
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A network namespace of one test, by its name; deleted on drop.
#[derive(Debug)]
pub struct TestNs(pub String);

impl TestNs {
    /// A namespace `gl-<pid>-<serial>-<tag>`.
    pub fn new(tag: &str) -> TestNs {
        let [ns] = TestNs::group(tag, [""]);
        ns
    }

    /// Namespaces `gl-<pid>-<serial>-<tag>-<node>`, one per node: a lab.
    pub fn group<const N: usize>(tag: &str, nodes: [&str; N]) -> [TestNs; N] {
        require_root();
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let base = format!("gl-{}-{serial}-{tag}", std::process::id());
        nodes.map(|node| {
            let name = if node.is_empty() {
                base.clone()
            } else {
                format!("{base}-{node}")
            };
            netns::create(&name).unwrap_or_else(|e| panic!("creating namespace {name}: {e:#}"));
            TestNs(name)
        })
    }

    /// `ip -n <self> ARGS` (split at spaces), which must succeed: its output.
    pub fn ip(&self, args: &str) -> String {
        ip(&self.0, args)
    }

    /// A veth `dev` here whose peer `peer_dev` is in `peer`, both down
    /// (for the caller to set up before they come up).
    pub fn veth(&self, dev: &str, peer: &TestNs, peer_dev: &str) {
        self.ip(&format!(
            "link add {dev} type veth peer name {peer_dev} netns {}",
            peer.0
        ));
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::delete(&self.0) {
            eprintln!("cleanup: deleting namespace {}: {e:#}", self.0);
        }
    }
}

/// Runs a command, which must succeed: its output.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e} (is it installed?)"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `ip -n NS ARGS`, which must succeed: its output.
pub fn ip_args(ns: &str, args: &[&str]) -> String {
    sh(&[&["ip", "-n", ns][..], args].concat())
}

/// `ip -n NS ARGS` with ARGS split at spaces, which must succeed.
pub fn ip(ns: &str, args: &str) -> String {
    ip_args(ns, &args.split_whitespace().collect::<Vec<_>>())
}
