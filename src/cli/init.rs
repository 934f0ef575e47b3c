//! `grelab init`: an example topology written to a file.

use std::path::Path;

use anyhow::Result;

use super::Example;
use super::output;

impl Example {
    /// The example as `init` writes it: without its first line, the
    /// repository's modeline, whose relative path would name nothing beside
    /// the user's file (README: editor support).
    fn text(self) -> &'static str {
        let text = match self {
            Example::Basic => include_str!("../../topologies/basic.yaml"),
            Example::Gretap => include_str!("../../topologies/gretap.yaml"),
            Example::Ipv6OverIpv4 => include_str!("../../topologies/ipv6-over-ipv4.yaml"),
            Example::Keyed => include_str!("../../topologies/keyed.yaml"),
            Example::L2Islands => include_str!("../../topologies/l2-islands.yaml"),
        };
        match text.split_once('\n') {
            Some((first, rest)) if first.starts_with("# yaml-language-server:") => rest,
            _ => text,
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
