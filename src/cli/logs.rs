//! `grelab logs`: what a node's programs wrote.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;

use super::labs::{record, the_lab};
use crate::error::{self, bad_input};
use crate::lab::keeper::{self, LOGS};
use crate::lab::state::LabDir;

pub(super) fn run(lab: Option<String>, node: &str, name: Option<&str>, follow: bool) -> Result<()> {
    let lab = the_lab(lab)?;
    let s = record(&lab)?;
    let programs: Vec<&str> = s
        .plan
        .software
        .iter()
        .filter(|sw| sw.node == node)
        .flat_map(|sw| sw.run.iter().map(|p| p.name.as_str()))
        .collect();
    if s.plan.ns_of(node).is_none() {
        return Err(bad_input(format!("lab `{lab}` has no node `{node}`")));
    }
    let chosen: Vec<&str> = match name {
        Some(n) if programs.contains(&n) => vec![n],
        Some(n) => {
            return Err(bad_input(format!(
                "node `{node}` runs no program `{n}`; it runs: {}",
                if programs.is_empty() {
                    "none".to_owned()
                } else {
                    programs.join(", ")
                }
            )));
        }
        None if programs.is_empty() => {
            return Err(bad_input(format!(
                "node `{node}` runs no programs (`run` in the topology)"
            )));
        }
        None => programs,
    };
    let dir = LabDir::open(&lab)?
        .ok_or_else(|| error::environment(format!("lab `{lab}` has no state")))?;
    let mut shown = vec![0usize; chosen.len()];
    let mut out = std::io::stdout().lock();
    loop {
        for (i, p) in chosen.iter().enumerate() {
            let bytes = dir
                .read_in(LOGS, &keeper::log_name(node, p))?
                .unwrap_or_default();
            if bytes.len() > shown[i] {
                for line in String::from_utf8_lossy(&bytes[shown[i]..]).lines() {
                    if chosen.len() > 1 {
                        writeln!(out, "{p}| {line}")?;
                    } else {
                        writeln!(out, "{line}")?;
                    }
                }
                shown[i] = bytes.len();
            }
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
