//! `grelab init`: an example topology written to a file.

use std::path::Path;

use anyhow::Result;

use super::Example;
use super::output;

impl Example {
    fn text(self) -> &'static str {
        match self {
            Example::Basic => include_str!("../../topologies/basic.yaml"),
            Example::Gretap => include_str!("../../topologies/gretap.yaml"),
            Example::Ipv6OverIpv4 => include_str!("../../topologies/ipv6-over-ipv4.yaml"),
            Example::Keyed => include_str!("../../topologies/keyed.yaml"),
            Example::L2Islands => include_str!("../../topologies/l2-islands.yaml"),
        }
    }
}

pub(super) fn run(example: Example, path: &Path, force: bool) -> Result<()> {
    output::write(path, output::existing(force), example.text().as_bytes())?;
    println!(
        "wrote {} ({:?} example); next: `grelab up {}`",
        path.display(),
        example,
        path.display()
    );
    Ok(())
}
