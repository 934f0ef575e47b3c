//! The house's rules, read from the code: which folder of src/ may import
//! which (every `crate::FOLDER` path in a file counts, `use` or inline), what
//! may use libc, nix, tokio or netlink, and no import cycle between
//! folders. Pure: reads files only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One file's facts: its folder, the folders it names, the crates it uses.
#[derive(Debug, Default)]
struct File {
    folder: String,
    imports: BTreeSet<String>,
    crates: BTreeSet<String>,
}

/// The folder of `path` (relative to src/): `wire` for `wire/gre.rs`, the
/// module name for a file at the top (`error` for `error.rs`).
fn folder_of(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.trim_end_matches(".rs").to_owned()
}

/// Reads the facts of one file's text, comments left out.
fn facts(path: &str, text: &str) -> File {
    let mut f = File {
        folder: folder_of(path),
        ..File::default()
    };
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            // `grelab::` in doc tests is not an import; `crate::` is.
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != f.folder {
                f.imports.insert(name);
            }
        }
        for krate in ["libc", "nix", "tokio", "rtnetlink", "netlink_packet_route"] {
            let used = code.match_indices(krate).any(|(i, _)| {
                let before = code[..i].chars().last();
                let after = &code[i + krate.len()..];
                before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    && after.starts_with("::")
            });
            if used {
                f.crates.insert(krate.to_owned());
            }
        }
    }
    f
}

/// Every rule a set of files breaks, as sentences.
fn broken(files: &BTreeMap<String, File>) -> Vec<String> {
    let mut out = Vec::new();
    let pure = ["model", "wire", "topology", "validate", "plan"];
    for (path, f) in files {
        let folder = f.folder.as_str();
        for i in &f.imports {
            let forbidden = match folder {
                "model" | "wire" => true,
                "topology" | "validate" | "plan" => !pure.contains(&i.as_str()) && i != "error",
                "dataplane" => ["plan", "lab", "cli", "check", "capture"].contains(&i.as_str()),
                "sys" => ["lab", "check", "capture", "dataplane", "cli"].contains(&i.as_str()),
                _ => false,
            } || (i == "cli" && folder != "main" && folder != "lib");
            if forbidden {
                out.push(format!("{path} ({folder}) imports {i}"));
            }
        }
        if pure.contains(&folder) && !f.crates.is_empty() {
            out.push(format!("{path} is pure ({folder}) but uses {:?}", f.crates));
        }
        let netlink = f.crates.contains("rtnetlink") || f.crates.contains("netlink_packet_route");
        if netlink && !path.starts_with("sys/rtnl/") {
            out.push(format!("{path} speaks netlink outside sys/rtnl"));
        }
    }
    // No cycle between folders.
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in files.values() {
        let edges = graph.entry(f.folder.as_str()).or_default();
        edges.extend(f.imports.iter().map(String::as_str));
    }
    for start in graph.keys() {
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        while let Some(path) = stack.pop() {
            let last = path[path.len() - 1];
            for &next in graph.get(last).into_iter().flatten() {
                if next == *start {
                    let mut cycle = path.clone();
                    cycle.push(next);
                    // Reported once, from its smallest folder.
                    if cycle.iter().all(|c| c >= start) {
                        out.push(format!("import cycle: {}", cycle.join(" -> ")));
                    }
                } else if !path.contains(&next) && path.len() < 12 {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every .rs file under `dir`, by path relative to `base`.
fn read_tree(base: &Path, dir: &Path, out: &mut BTreeMap<String, File>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(rel.clone(), facts(&rel, &text));
        }
    }
}

#[test]
fn the_source_tree_keeps_the_layer_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files);
    assert!(files.len() > 20, "read {} files", files.len());
    let broken = broken(&files);
    assert!(
        broken.is_empty(),
        "the layer rules are broken:\n{}",
        broken.join("\n")
    );
}

/// The checker itself: each kind of forbidden import is caught.
#[test]
fn a_forbidden_import_or_a_cycle_is_caught() {
    let tree = |files: &[(&str, &str)]| -> BTreeMap<String, File> {
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), facts(p, t)))
            .collect()
    };
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[("wire/gre.rs", "use crate::lab::state;")],
            "wire/gre.rs (wire) imports lab",
        ),
        (
            &[("model/mod.rs", "x = crate::error::bad_input(1);")],
            "imports error",
        ),
        (
            &[("plan/mod.rs", "use nix::unistd;")],
            "is pure (plan) but uses",
        ),
        (
            &[("dataplane/mod.rs", "use crate::plan::Plan;")],
            "(dataplane) imports plan",
        ),
        (
            &[("lab/up.rs", "use rtnetlink::Handle;")],
            "speaks netlink outside sys/rtnl",
        ),
        (&[("check/mod.rs", "crate::cli::main();")], "imports cli"),
        (
            &[
                ("lab/up.rs", "use crate::check::x;"),
                ("check/mod.rs", "use crate::lab::y;"),
            ],
            "import cycle: check -> lab -> check",
        ),
    ];
    for (files, want) in cases {
        let got = broken(&tree(files));
        assert!(got.iter().any(|b| b.contains(want)), "{files:?}: {got:?}");
    }
    // And what is allowed passes: comments, the file's own folder, error.
    let ok = tree(&[
        (
            "lab/up.rs",
            "use crate::lab::state; // crate::cli::main\nuse crate::error;",
        ),
        ("sys/rtnl/mod.rs", "use rtnetlink::Handle;"),
    ]);
    assert_eq!(broken(&ok), Vec::<String>::new());
}
