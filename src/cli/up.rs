//! `grelab up`: build a lab, then run its ping checks.

use std::path::PathBuf;

use anyhow::Result;

use super::PlanFormat;
use super::validate::{DEFAULT_FILE, load_plan};
use super::verify::with_newline;
use crate::check::report::{self, Status};
use crate::model::Backend;
use crate::plan::{Plan, Step};

pub(super) fn run(
    file: Option<PathBuf>,
    prefix: Option<&str>,
    backend: Option<Backend>,
    no_check: bool,
) -> Result<()> {
    let plan = load_plan(file.as_deref(), prefix)?;
    let source = file.unwrap_or_else(|| DEFAULT_FILE.into());
    let source = std::fs::canonicalize(&source).unwrap_or(source);
    let out = crate::lab::up::up(&plan, Some(&source), backend)?;
    if out.unchanged {
        println!("lab `{}` is up already, unchanged", plan.lab);
    } else {
        for note in &out.notes {
            println!("{note}");
        }
        let tunnels = plan.tunnels().count();
        println!(
            "lab `{}` is up: {} namespaces, {} links, {} tunnel ends in {:.0?}",
            plan.lab,
            plan.nodes.len(),
            plan.steps
                .iter()
                .filter(|s| matches!(s, Step::Veth { .. }))
                .count(),
            tunnels,
            out.elapsed
        );
    }
    if !no_check {
        up_checks(&plan);
    }
    Ok(())
}

/// `up --dry-run`: what `up` would change, and nothing changed.
pub(super) fn dry_run(
    file: Option<PathBuf>,
    prefix: Option<&str>,
    format: PlanFormat,
) -> Result<()> {
    let plan = load_plan(file.as_deref(), prefix)?;
    let Some(old) = crate::lab::state::load(&plan.lab)? else {
        match format {
            PlanFormat::Script => {
                println!(
                    "# Lab `{}` is not up: `grelab up` builds all of it.",
                    plan.lab
                );
                print!("{}", plan.script());
            }
            PlanFormat::Json => {
                let all = crate::plan::diff::diff(&crate::plan::diff::nothing(&plan), &plan);
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
        }
        return Ok(());
    };
    // A change a crash stopped is finished first: the lab is on its way there.
    let from = old.pending.as_ref().unwrap_or(&old.plan);
    let d = crate::plan::diff::diff(from, &plan);
    match format {
        PlanFormat::Script => print!("{}", d.script(&plan.lab)),
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&d)?),
    }
    Ok(())
}

/// The ping checks that end `up`: reported loudly, but `verify` is the
/// command whose exit code asserts.
fn up_checks(plan: &Plan) {
    let opts = crate::check::Options {
        derived: false,
        only_ping: true,
    };
    let results = crate::check::run(plan, opts);
    if results.is_empty() {
        return;
    }
    print!("{}", with_newline(report::human(&results, false)));
    if results.iter().any(|r| r.status != Status::Pass) {
        eprintln!(
            "WARNING: the lab is up, but a check failed (see above); `grelab verify` for all checks"
        );
    }
}
