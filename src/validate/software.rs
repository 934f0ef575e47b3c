//! Nodes' software: the files a node sees (absolute, plain paths outside the
//! kernel's file systems) and the programs it runs (named once, a command
//! that is not empty, environment names a shell would accept).

use std::collections::HashSet;

use super::Checker;
use crate::topology::{Loc, Node};

/// Where a node's file may not go: what the kernel shows there is the node's own.
const KERNEL_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Why `path` cannot be a node's file, if it cannot.
fn file_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!(
            "file path `{path}` is relative; give the absolute path the node sees"
        ));
    }
    if path.len() > 1024 {
        return Some(format!("file path `{path}` is longer than 1024 bytes"));
    }
    if path.ends_with('/')
        || path
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some(format!(
            "file path `{path}` is not plain: no empty, `.` or `..` parts, no trailing `/`"
        ));
    }
    if path.contains('\0') {
        return Some(format!("file path `{path}` holds a NUL byte"));
    }
    if let Some(dir) = KERNEL_DIRS
        .iter()
        .find(|d| path == **d || path.starts_with(&format!("{d}/")))
    {
        return Some(format!(
            "file path `{path}` is under {dir}, which the kernel fills in the node's view"
        ));
    }
    None
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Checker<'_> {
    /// Each node's files and programs.
    pub(super) fn software(&mut self) {
        let topo = self.topo;
        for (name, node) in &topo.nodes.0 {
            self.files(node);
            self.programs(&name.value, node);
        }
    }

    fn files(&mut self, node: &Node) {
        for (path, _) in &node.files.0 {
            if let Some(problem) = file_path_problem(&path.value) {
                self.err(
                    Loc::of(path),
                    problem,
                    "like `/etc/bird/bird.conf`; the node's /run is its own, the rest of the host's file system is shared",
                );
            }
        }
    }

    fn programs(&mut self, node_name: &str, node: &Node) {
        let mut names = HashSet::new();
        for w in &node.run {
            let loc = Loc::of(&w.name);
            if let Some(p) = super::name_problem("program name", &w.name.value, 32) {
                self.err(
                    loc,
                    p,
                    "it names the program's log: /run/grelab/<lab>/logs/<node>.<name>.log",
                );
            } else if !names.insert(w.name.value.as_str()) {
                self.err(
                    loc,
                    format!(
                        "node `{node_name}` runs two programs named `{}`",
                        w.name.value
                    ),
                    "give each program of a node its own name",
                );
            }
            match w.cmd.value.first() {
                None => self.err(
                    Loc::of(&w.cmd),
                    format!("program `{}` has an empty `cmd`", w.name.value),
                    "give the program and its arguments, like `cmd: [bird, -f]`",
                ),
                Some(p) if p.is_empty() || w.cmd.value.iter().any(|a| a.contains('\0')) => self
                    .err(
                        Loc::of(&w.cmd),
                        format!(
                            "program `{}` has an empty program name or a NUL byte in `cmd`",
                            w.name.value
                        ),
                        "give the program and its arguments, like `cmd: [bird, -f]`",
                    ),
                Some(_) => {}
            }
            for (k, v) in &w.env.0 {
                if !env_name_ok(&k.value) || v.0.contains('\0') {
                    self.err(
                        Loc::of(k),
                        format!("`{}` is not a usable environment variable", k.value),
                        "names are letters, digits and `_`, not starting with a digit; values hold no NUL",
                    );
                }
            }
        }
    }
}
