//! `grelab restart NODE`: build one node of a running lab again.

use anyhow::Result;

use super::labs::the_lab;

pub(super) fn run(lab: Option<String>, node: &str) -> Result<()> {
    let lab = the_lab(lab)?;
    let start = std::time::Instant::now();
    let done = crate::lab::reconcile::restart(&lab, node)?;
    for note in &done.notes {
        println!("{note}");
    }
    println!(
        "node `{node}` of lab `{lab}` built again ({} changes) in {:.0?}",
        done.changes,
        start.elapsed()
    );
    Ok(())
}
