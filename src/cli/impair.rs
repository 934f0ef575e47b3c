//! `grelab impair`: change the impairments of a running lab's interface,
//! one parameter at a time (the others keep their values), clear them, or
//! list every impairment in force, as the kernel holds it.

use anyhow::Result;

use super::Format;
use super::labs::{record, the_lab};
use crate::error;
use crate::lab::impair::{self, Shown};

/// `grelab impair`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The node whose interface to change.
    node: Option<String>,
    /// Its interface: a veth end or a tunnel device.
    iface: Option<String>,
    /// The lab (default: the only lab that is up).
    #[arg(long)]
    lab: Option<String>,
    /// Added to each packet's departure, like `20ms`.
    #[arg(long)]
    delay: Option<String>,
    /// Spread around the delay, at most the delay.
    #[arg(long)]
    jitter: Option<String>,
    /// Share of packets dropped, like `5%`.
    #[arg(long)]
    loss: Option<String>,
    /// Share of packets sent twice.
    #[arg(long)]
    duplicate: Option<String>,
    /// Share of packets with one bit flipped.
    #[arg(long)]
    corrupt: Option<String>,
    /// Share of packets sent at once, ahead of delayed ones.
    #[arg(long)]
    reorder: Option<String>,
    /// The most the interface sends, like `10mbit`.
    #[arg(long)]
    rate: Option<String>,
    /// Remove every impairment of the interface (then apply those given).
    #[arg(long)]
    clear: bool,
    /// List every impairment in force, read from the kernel.
    #[arg(long, conflicts_with = "clear")]
    show: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

pub(super) fn run(a: Args) -> Result<()> {
    let lab = the_lab(a.lab)?;
    let state = record(&lab)?;
    state.trust();
    let set: Vec<(&str, String)> = [
        ("delay", a.delay),
        ("jitter", a.jitter),
        ("loss", a.loss),
        ("duplicate", a.duplicate),
        ("corrupt", a.corrupt),
        ("reorder", a.reorder),
        ("rate", a.rate),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let shown = match (&a.node, &a.iface) {
        (Some(node), Some(iface)) if !a.show => {
            if set.is_empty() && !a.clear {
                return Err(error::bad_input(
                    "say what to change (--delay 20ms, --loss 5%, ...), or --clear",
                ));
            }
            vec![impair::change(&state, node, iface, &set, a.clear)?]
        }
        (None, None) if a.show => impair::show(&state)?,
        _ => {
            return Err(error::bad_input(
                "usage: `grelab impair NODE IFACE --PARAMETER VALUE ... | --clear`, \
                 or `grelab impair --show`",
            ));
        }
    };
    print(&shown, a.format)
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
