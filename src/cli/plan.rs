//! `grelab plan`: what `up` would do, as an iproute2 script or JSON.

use std::path::Path;

use anyhow::Result;

use super::PlanFormat;
use super::validate::load_plan;

pub(super) fn run(file: Option<&Path>, prefix: Option<&str>, format: PlanFormat) -> Result<()> {
    let plan = load_plan(file, prefix)?;
    match format {
        PlanFormat::Script => print!("{}", plan.script()),
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(())
}
