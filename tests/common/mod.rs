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
