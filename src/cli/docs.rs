//! Shell completions and man pages, generated from the same clap
//! definitions the command line parses with, so they cannot drift.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "grelab", &mut std::io::stdout());
    Ok(())
}

/// Writes `grelab.1` and `grelab-COMMAND.1` for each visible command into `dir`.
pub(super) fn man(dir: &Path) -> Result<()> {
    let cmd = Cli::command();
    let mut pages = vec![("grelab".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("grelab-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut bytes)
            .with_context(|| format!("rendering the man page {name}.1"))?;
        let path = dir.join(format!("{name}.1"));
        super::output::write(&path, super::output::Existing::Replace, &bytes)?;
        println!("{}", path.display());
    }
    Ok(())
}
