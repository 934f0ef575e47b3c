//! `grelab down`: remove one lab, every lab, or the only one up.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::validate::{DEFAULT_FILE, load_plan};
use crate::error::{self, bad_input};
use crate::lab::{state, teardown};

pub(super) fn run(
    file: Option<PathBuf>,
    prefix: Option<&str>,
    lab: Option<String>,
    all: bool,
) -> Result<()> {
    let labs = which(file, prefix, lab, all)?;
    crate::sys::netns::check_privileges().map_err(|e| error::environment(format!("{e:#}")))?;
    if labs.is_empty() {
        println!("no lab is up");
    }
    for lab in labs {
        match teardown::down(&lab)? {
            None => println!("lab `{lab}` is not up"),
            Some(r) => {
                println!(
                    "lab `{lab}` is down: {} namespaces removed{}{}",
                    r.namespaces.len(),
                    if r.dataplane {
                        ", dataplane stopped"
                    } else {
                        ""
                    },
                    match r.processes {
                        0 => String::new(),
                        1 => ", 1 process stopped".to_owned(),
                        n => format!(", {n} processes stopped"),
                    }
                );
                if !r.placeholders.is_empty() {
                    println!(
                        "  removed {} empty namespace files an interrupted run left: {}",
                        r.placeholders.len(),
                        r.placeholders.join(", ")
                    );
                }
                for ns in r.skipped {
                    println!(
                        "  left namespace `{ns}` alone: it is not the namespace this lab created"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The labs to remove: every one, the one named, the file's, or the one up.
fn which(
    file: Option<PathBuf>,
    prefix: Option<&str>,
    lab: Option<String>,
    all: bool,
) -> Result<Vec<String>> {
    if all {
        let mut labs = state::labs()?;
        labs.extend(teardown::marked_labs()?);
        labs.sort();
        labs.dedup();
        Ok(labs)
    } else if let Some(lab) = lab {
        Ok(vec![state::check_lab(&lab)?.to_owned()])
    } else if file.is_some() || prefix.is_some() {
        Ok(vec![load_plan(file.as_deref(), prefix)?.lab])
    } else {
        // The one lab up: by its record, or (record lost) by its marks.
        let mut up = state::labs()?;
        if up.is_empty() {
            up = teardown::marked_labs()?;
        }
        // ./grelab.yaml names a lab: that one, if it is up or nothing is.
        let default = Path::new(DEFAULT_FILE);
        let named = if default.exists() {
            Some(load_plan(Some(default), None)?.lab)
        } else {
            None
        };
        match (named, up.as_slice()) {
            (Some(lab), up) if up.is_empty() || up.contains(&lab) => Ok(vec![lab]),
            (named, [one]) => {
                if let Some(lab) = named {
                    eprintln!(
                        "{DEFAULT_FILE} describes lab `{lab}`, which is not up; taking down `{one}`, \
                         the only lab that is up"
                    );
                }
                Ok(vec![one.clone()])
            }
            (named, []) => Ok(named.into_iter().collect()),
            (named, many) => Err(bad_input(format!(
                "several labs are up ({}){}; say which with --lab NAME, or --all",
                many.join(", "),
                named.map_or(String::new(), |l| format!(
                    ", and {DEFAULT_FILE}'s lab `{l}` is not one of them"
                ))
            ))),
        }
    }
}
