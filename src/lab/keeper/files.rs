//! The nodes' files: where each goes in its node's view, checked on the
//! host before anything is built, and laid out in the lab's directory for
//! the keeper to mount. A file over an existing one is bound onto it; one
//! whose directory is missing comes from an overlay of the nearest
//! existing directory, so it exists in the node's view alone; one under
//! /run is written into the node's private /run. Nothing is created on the
//! host outside the lab's directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::NodeSpec;
use crate::error;
use crate::plan::Plan;
use crate::sys::view::{Overlay, View};

/// Where one file goes.
enum Place {
    /// Into the private /run.
    Run,
    /// Bound over the host's file.
    Bind,
    /// Through an overlay of this existing directory.
    Under(PathBuf),
}

/// Where `path` goes, or why it cannot be given (looked at on the host).
fn place(path: &Path) -> std::result::Result<Place, String> {
    if path.starts_with("/run") {
        return Ok(Place::Run);
    }
    match fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(Place::Bind),
        Ok(_) => return Err("exists on the host and is not a regular file".into()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot be looked at on the host: {e}")),
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        match fs::metadata(d) {
            Ok(m) if m.is_dir() && d == Path::new("/") => {
                return Err(
                    "would need an overlay of `/`: create its top directory on the host".into(),
                );
            }
            Ok(m) if m.is_dir() => return Ok(Place::Under(d.to_path_buf())),
            Ok(_) => return Err(format!("{} is not a directory on the host", d.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => dir = d.parent(),
            Err(e) => return Err(format!("{} cannot be looked at: {e}", d.display())),
        }
    }
    Err("has no existing directory above it".into())
}

/// Whether `prog` (a program's first word) is found: a path, or on PATH.
fn findable(prog: &str, files: &[(String, String)]) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists() || files.iter().any(|(p, _)| p == prog);
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

/// Refuses, before anything is built, the files that cannot be placed and
/// the programs that cannot be found (exit 3, naming them).
pub fn preflight(plan: &Plan) -> Result<()> {
    for sw in &plan.software {
        for (path, _) in &sw.files {
            if let Err(why) = place(Path::new(path)) {
                return Err(error::environment(format!(
                    "file `{path}` of node `{}` {why}; choose another path",
                    sw.node
                )));
            }
        }
        for p in &sw.run {
            if !findable(&p.cmd[0], &sw.files) {
                return Err(error::environment(format!(
                    "program `{}` of node `{}` runs `{}`, which is not installed (not on PATH); \
                     install it (for example `apt install bird2` for bird)",
                    p.name, sw.node, p.cmd[0]
                )));
            }
        }
    }
    Ok(())
}

/// Writes node `node`'s files under `root` (its folder in the lab's
/// directory) and returns the view that shows them.
pub(super) fn lay_out(node: &NodeSpec, root: &Path, proc: bool) -> Result<View> {
    let mut view = View {
        proc,
        run: Some(Vec::new()),
        ..View::default()
    };
    let mut overlays: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for (i, (path, content)) in node.files.iter().enumerate() {
        let target = PathBuf::from(path);
        let shown = || format!("placing file `{path}` of node `{}`", node.node);
        match place(&target)
            .map_err(anyhow::Error::msg)
            .with_context(shown)?
        {
            Place::Run => {
                if let Some(run) = view.run.as_mut() {
                    run.push((target, content.clone().into_bytes()));
                }
            }
            Place::Bind => {
                let src = root.join(format!("file{i}"));
                write_new(&src, content)?;
                view.binds.push((src, target));
            }
            Place::Under(dir) => {
                let n = overlays.len();
                let base = overlays
                    .entry(dir.clone())
                    .or_insert_with(|| root.join(format!("overlay{n}")))
                    .clone();
                let rel = target.strip_prefix(&dir).with_context(shown)?;
                let src = base.join("upper").join(rel);
                if let Some(parent) = src.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                write_new(&src, content)?;
            }
        }
    }
    // Shallowest first: a deeper overlay then sits on the shallower one.
    let mut dirs: Vec<(PathBuf, PathBuf)> = overlays.into_iter().collect();
    dirs.sort_by_key(|(d, _)| d.components().count());
    for (dir, base) in dirs {
        let work = base.join("work");
        fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        view.overlays.push(Overlay {
            dir,
            upper: base.join("upper"),
            work,
        });
    }
    Ok(view)
}

/// Writes a new file (0644) in the lab's directory, replacing nothing.
fn write_new(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
