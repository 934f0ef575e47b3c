//! `grelab impair`: change the impairments of a running lab's interface,
//! one parameter at a time (the others keep their values), clear them, or
//! list every impairment in force, as the kernel holds it.

use anyhow::Result;

use super::Format;
use super::labs::{record, the_lab};
use crate::error;
use crate::lab::impair::{self, Shown};

/// The parameters given on the command line, by name.
pub(super) struct Changes {
    pub(super) node: Option<String>,
    pub(super) iface: Option<String>,
    pub(super) set: Vec<(&'static str, String)>,
    pub(super) clear: bool,
    pub(super) show: bool,
}

pub(super) fn run(lab: Option<String>, c: Changes, format: Format) -> Result<()> {
    let lab = the_lab(lab)?;
    let state = record(&lab)?;
    state.trust();
    let shown = match (&c.node, &c.iface) {
        (Some(node), Some(iface)) if !c.show => {
            if c.set.is_empty() && !c.clear {
                return Err(error::bad_input(
                    "say what to change (--delay 20ms, --loss 5%, ...), or --clear",
                ));
            }
            vec![impair::change(&state, node, iface, &c.set, c.clear)?]
        }
        (None, None) if c.show => impair::show(&state)?,
        _ => {
            return Err(error::bad_input(
                "usage: `grelab impair NODE IFACE --PARAMETER VALUE ... | --clear`, \
                 or `grelab impair --show`",
            ));
        }
    };
    print(&shown, format)
}

fn print(shown: &[Shown], format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(shown)?),
        Format::Human if shown.is_empty() => println!("no impairments"),
        Format::Human => {
            for s in shown {
                let what = if s.impairment.is_empty() {
                    "none".to_owned()
                } else {
                    s.impairment.to_string()
                };
                let by = if s.by.is_empty() {
                    String::new()
                } else {
                    format!(" (by {})", s.by)
                };
                println!("{}:{}: {what}{by}", s.node, s.iface);
            }
        }
    }
    Ok(())
}
