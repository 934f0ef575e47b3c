//! `grelab validate`, and loading a topology file for every command that reads one.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{bad_input, rendered};
use crate::plan::{self, Plan};
use crate::topology::{self, Topology};
use crate::validate;

pub(super) const DEFAULT_FILE: &str = "grelab.yaml";

/// Checks FILE (default ./grelab.yaml) and says what it holds.
pub(super) fn run(file: Option<PathBuf>) -> Result<()> {
    let file = file.unwrap_or_else(|| DEFAULT_FILE.into());
    let topo = load(&file)?;
    println!(
        "{}: ok (lab `{}`: {} nodes, {} links, {} tunnels, {} checks)",
        file.display(),
        topo.name.value,
        topo.nodes.0.len(),
        topo.links.len(),
        topo.tunnels.len(),
        topo.checks.len()
    );
    Ok(())
}

/// Reads, parses and validates a topology file; every problem is exit 2.
pub(super) fn load(file: &Path) -> Result<Topology> {
    let name = file.display().to_string();
    let text = topology::read_file(file)?;
    let topo = topology::parse(&text, &name)?;
    validate::validate(&topo).map_err(|d| rendered(validate::render(&name, &d)))?;
    Ok(topo)
}

/// Loads `file` (default ./grelab.yaml) and derives its plan.
pub(super) fn load_plan(file: Option<&Path>, prefix: Option<&str>) -> Result<Plan> {
    let file = file.unwrap_or(Path::new(DEFAULT_FILE));
    let topo = load(file)?;
    if let Some(problem) = prefix.and_then(|p| validate::name_problem("prefix", p, 32)) {
        return Err(bad_input(format!("--prefix: {problem}")));
    }
    Ok(plan::build(&topo, prefix))
}
