//! `grelab schema`: the topology file's JSON Schema, for editors.

use anyhow::Result;

/// Prints the schema, pretty and ending in a newline, as the repository carries it.
pub(super) fn run() -> Result<()> {
    let text = serde_json::to_string_pretty(&crate::topology::schema())?;
    println!("{text}");
    Ok(())
}
