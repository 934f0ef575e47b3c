//! `grelab verify`: run the lab's checks and report; exit 1 if any fails.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use super::labs::{settled_record, the_lab};
use super::{Format, output};
use crate::check::report::{self, Status};
use crate::error;

pub(super) fn run(
    lab: Option<String>,
    format: Format,
    junit: Option<PathBuf>,
    verbose: bool,
    no_derived: bool,
) -> Result<()> {
    let lab = the_lab(lab)?;
    let s = settled_record(&lab)?;
    s.trust();
    if let Some(pid) = s
        .dataplane
        .filter(|id| !crate::dataplane::is_running(id))
        .map(|id| id.pid)
    {
        eprintln!(
            "warning: the lab's userspace dataplane (pid {pid}) is not running; `grelab up` restarts it"
        );
    }
    let opts = crate::check::Options {
        derived: !no_derived,
        only_ping: false,
    };
    // Opened first, so that a path that is refused is refused at once.
    let junit = junit
        .map(|p| output::create(&p, output::Existing::Replace).map(|o| (p, o)))
        .transpose()?;
    let results = crate::check::run(&s.plan, opts);
    if let Some((path, mut out)) = junit {
        out.write_all(report::junit(&lab, &results).as_bytes())
            .map_err(|e| anyhow::anyhow!("writing the JUnit report {}: {e}", path.display()))?;
        out.commit()?;
    }
    match format {
        Format::Human => print!("{}", with_newline(report::human(&results, verbose))),
        Format::Json => println!("{}", report::json(&lab, &results)),
    }
    let failed = results.iter().filter(|r| r.status != Status::Pass).count();
    if failed > 0 {
        return Err(error::check_failed(format!(
            "{failed} of {} checks failed",
            results.len()
        )));
    }
    Ok(())
}

pub(super) fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
