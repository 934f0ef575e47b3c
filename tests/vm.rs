//! Kernel GRE tests in a QEMU VM that boots a Debian kernel (CI kernels often
//! lack GRE): the release's own by default, or the newer one of its
//! backports, which has TCX for the dataplane's fast path. Each test boots
//! one guest script of tests/vm/guest/ as the VM's /guest/test.sh, with a
//! static grelab at /guest/grelab and the files of topologies/ beside it.
//! Needs root (tests/vm/prepare.sh installs QEMU and fetches the kernels);
//! see tests/vm/run.sh for the VM side.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The VM runs x86_64 whatever the host; the explicit target also keeps
/// RUSTFLAGS (crt-static) away from proc macros and build scripts.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The kernels tests/vm/prepare.sh can prepare; the first is the default.
const KERNELS: &[&str] = &["stock", "backports"];

/// The kernel a line of guest_tests! names, else the default.
macro_rules! kernel {
    () => {
        KERNELS[0]
    };
    ($kernel:literal) => {
        $kernel
    };
}

macro_rules! guest_tests {
    ($($test:ident => $script:literal $(on $kernel:literal)?,)*) => {
        $(
            #[test]
            fn $test() {
                run_guest($script, kernel!($($kernel)?));
            }
        )*
        /// Guest scripts that have a test above, with their kernels.
        const GUEST_SCRIPTS: &[(&str, &str)] = &[$(($script, kernel!($($kernel)?))),*];
    };
}

guest_tests! {
    iproute2_seed => "iproute2-seed.sh",
    grelab_kernel => "grelab-kernel.sh",
    grelab_mixed => "grelab-mixed.sh",
    grelab_mixed_backports => "grelab-mixed.sh" on "backports",
    grelab_options => "grelab-options.sh",
    grelab_bridges => "grelab-bridges.sh",
    grelab_bridges_backports => "grelab-bridges.sh" on "backports",
    grelab_impair => "grelab-impair.sh",
}

#[test]
fn every_guest_script_has_a_test() {
    let dir = Path::new(REPO).join("tests/vm/guest");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sh"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = GUEST_SCRIPTS.iter().map(|s| s.0.to_string()).collect();
    listed.sort();
    listed.dedup();
    assert_eq!(
        found, listed,
        "every tests/vm/guest/*.sh needs a line in guest_tests! in tests/vm.rs"
    );
    for (script, kernel) in GUEST_SCRIPTS {
        assert!(
            KERNELS.contains(kernel),
            "{script} wants the kernel `{kernel}`, not one of {KERNELS:?}"
        );
    }
}

/// Boots `kernel` with one guest script and fails the test unless it passed.
fn run_guest(script: &str, kernel: &str) {
    let grelab = match setup() {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    };
    let mut cmd = Command::new(Path::new(REPO).join("tests/vm/run.sh"));
    cmd.args(["--kernel", kernel]);
    cmd.arg(Path::new(REPO).join("tests/vm/guest").join(script));
    cmd.arg(grelab);
    cmd.args(topology_files());
    let out = with_vm_slot(|| cmd.output())
        .unwrap_or_else(|e| panic!("cannot start tests/vm/run.sh: {e}"));
    let text = both(&out);
    assert!(
        out.status.success(),
        "{script} failed in the VM with the {kernel} kernel ({}):\n{text}",
        out.status
    );
    println!("{text}");
}

/// Files of topologies/ and the guest scripts' own YAML files, sorted, to
/// copy into the VM's /guest/.
fn topology_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["topologies", "tests/vm/guest"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(Path::new(REPO).join(dir)).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Once per test run: checks root, prepares the VM cache for each kernel and
/// builds a static grelab, side by side (prepare.sh takes turns by itself).
/// Returns the binary or what went wrong.
fn setup() -> &'static Result<PathBuf, String> {
    static SETUP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SETUP.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err(
                "the VM tests need root: tests/vm/prepare.sh installs QEMU and a \
                        Debian kernel; run `cargo test --test vm` as root"
                    .into(),
            );
        }
        let prepares = KERNELS
            .iter()
            .map(|kernel| {
                Command::new(Path::new(REPO).join("tests/vm/prepare.sh"))
                    .args(["--kernel", kernel])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start tests/vm/prepare.sh: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let built = build_static_grelab();
        for (kernel, prepare) in KERNELS.iter().zip(prepares) {
            let prepared = prepare
                .wait_with_output()
                .map_err(|e| format!("waiting for tests/vm/prepare.sh --kernel {kernel}: {e}"))?;
            if !prepared.status.success() {
                return Err(format!(
                    "tests/vm/prepare.sh --kernel {kernel} failed ({}):\n{}",
                    prepared.status,
                    both(&prepared)
                ));
            }
        }
        built
    })
}

/// Builds grelab statically linked, in its own target directory, so that it
/// runs in the VM whose userland is busybox.
fn build_static_grelab() -> Result<PathBuf, String> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from(REPO).join("target"), Path::to_path_buf)
        .join("vm");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "grelab", "--target", TARGET])
        .arg("--manifest-path")
        .arg(Path::new(REPO).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo to build a static grelab: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building a static grelab for the VM failed ({}):\n{}",
            out.status,
            both(&out)
        ));
    }
    Ok(target_dir.join(TARGET).join("release/grelab"))
}

/// Runs `f` while holding one of GRELAB_VM_JOBS (default 2) VM slots: each
/// VM takes a core, and more at once only slows them all down.
fn with_vm_slot<T>(f: impl FnOnce() -> T) -> T {
    static BUSY: Mutex<usize> = Mutex::new(0);
    static FREED: Condvar = Condvar::new();
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            *BUSY.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
            FREED.notify_one();
        }
    }
    let jobs = std::env::var("GRELAB_VM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(2);
    let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
    while *busy >= jobs {
        busy = FREED.wait(busy).unwrap_or_else(PoisonError::into_inner);
    }
    *busy += 1;
    drop(busy);
    let _slot = Slot;
    f()
}

/// A command's stdout then stderr, as text.
fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
