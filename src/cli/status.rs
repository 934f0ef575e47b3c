//! `grelab status`: the labs that are up, their namespaces and dataplane.
//! One typed report per lab, which the JSON and the text are both made from.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Format;
use crate::lab::state::{self, State};
use crate::plan::NodeNs;

/// What `status` says of one lab.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum LabStatus {
    Read(Box<Report>),
    /// The record could not be read: the error, as text.
    Unreadable {
        lab: String,
        status: String,
    },
}

/// A lab whose record was read. Fields in name order: the JSON's keys have
/// always come out sorted.
#[derive(Debug, Serialize)]
struct Report {
    dataplane_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keeper_pid: Option<u32>,
    lab: String,
    namespaces: Vec<NodeNs>,
    /// The nodes' programs, as the keeper last recorded them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    programs: Vec<crate::lab::keeper::ProgramStatus>,
    source: Option<PathBuf>,
    status: Health,
    tunnels: Vec<TunnelStatus>,
}

/// One tunnel end and what builds it. Fields in name order, as above.
#[derive(Debug, Serialize)]
struct TunnelStatus {
    backend: crate::model::Backend,
    device: String,
    /// Whether the eBPF fast path carries it (known only from a running
    /// userspace dataplane's counters).
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_path: Option<bool>,
    /// Why it does not, when the dataplane says.
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_path_off: Option<String>,
    namespace: String,
}

/// Whether a lab is as it was built.
#[derive(Debug)]
enum Health {
    Up,
    /// Namespaces gone or replaced.
    Missing(Vec<String>),
    /// The userspace dataplane (this pid) is not running.
    DataplaneDown(u32),
    /// The keeper of the nodes' programs (this pid) is not running.
    KeeperDown(u32),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Up => f.write_str("up"),
            Health::Missing(missing) => write!(
                f,
                "broken: namespaces gone or replaced: {}",
                missing.join(", ")
            ),
            Health::DataplaneDown(pid) => write!(
                f,
                "broken: dataplane (pid {pid}) is not running; `grelab up` restarts it"
            ),
            Health::KeeperDown(pid) => write!(
                f,
                "broken: the keeper of the nodes' programs (pid {pid}) is not running; \
                 `grelab up` rebuilds the lab"
            ),
        }
    }
}

impl Serialize for Health {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub(super) fn run(format: Format) -> Result<()> {
    let mut labs = Vec::new();
    for lab in state::labs()? {
        match state::load(&lab) {
            Ok(Some(s)) => labs.push(LabStatus::Read(Box::new(report(lab, &s)))),
            Ok(None) => {}
            Err(e) => labs.push(LabStatus::Unreadable {
                lab,
                status: format!("{e:#}"),
            }),
        }
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&labs)?);
        return Ok(());
    }
    if labs.is_empty() {
        println!("no lab is up");
    }
    for l in &labs {
        print_human(l);
    }
    Ok(())
}

/// What the record `s` of lab `lab` and the running system say.
fn report(lab: String, s: &State) -> Report {
    let missing = s.missing();
    let dataplane = s
        .dataplane
        .map(|id| (id.pid, crate::dataplane::is_running(&id)));
    // Which userspace ends the fast path carries (or why not).
    let stats = running_stats(s);
    let fast = |ns: &str, dev: &str| {
        stats.as_ref().and_then(|st| {
            st.tunnels
                .iter()
                .find(|t| t.netns == ns && t.name == dev)
                .map(|t| (t.fast_path, t.fast_path_off.clone()))
        })
    };
    let status = if !missing.is_empty() {
        Health::Missing(missing.into_iter().map(str::to_owned).collect())
    } else if let Some((pid, false)) = dataplane {
        Health::DataplaneDown(pid)
    } else if let Some(k) = s.keeper.filter(|k| !k.is_running()) {
        Health::KeeperDown(k.pid)
    } else {
        Health::Up
    };
    Report {
        dataplane_pid: s.dataplane.map(|id| id.pid),
        keeper_pid: s.keeper.map(|id| id.pid),
        programs: s
            .keeper
            .and_then(|_| state::LabDir::open(&lab).ok().flatten())
            .and_then(|d| crate::lab::keeper::read_status(&d).ok().flatten())
            .map(|st| st.programs)
            .unwrap_or_default(),
        lab,
        namespaces: s.plan.nodes.clone(),
        source: s.source.clone(),
        status,
        tunnels: s
            .backends
            .iter()
            .map(|e| {
                let fast = fast(&e.namespace, &e.device);
                TunnelStatus {
                    backend: e.backend,
                    device: e.device.clone(),
                    fast_path: fast.as_ref().map(|f| f.0),
                    fast_path_off: fast.and_then(|f| f.1),
                    namespace: e.namespace.clone(),
                }
            })
            .collect(),
    }
}

/// The counters of the lab's dataplane, if it runs and says: which
/// userspace ends the fast path carries (or why not).
pub(super) fn running_stats(s: &State) -> Option<crate::dataplane::Stats> {
    s.dataplane.filter(crate::dataplane::is_running)?;
    let dir = state::lab_dir(&s.plan.lab);
    crate::dataplane::read_stats(&crate::dataplane::stats_path(&dir)).ok()
}

fn print_human(l: &LabStatus) {
    let r = match l {
        LabStatus::Unreadable { lab, status } => {
            println!("{lab}: {status}");
            return;
        }
        LabStatus::Read(r) => r,
    };
    println!("{}: {}", r.lab, r.status);
    if let Some(src) = &r.source {
        println!("  from {}", src.display());
    }
    for n in &r.namespaces {
        println!("  node {} in namespace {}", n.node, n.ns);
    }
    for p in &r.programs {
        let pid = if p.pid == 0 {
            String::new()
        } else {
            format!(" (pid {})", p.pid)
        };
        println!("  program {} on {}: {}{pid}", p.name, p.node, p.outcome());
    }
    for t in &r.tunnels {
        let fast = match (t.fast_path, &t.fast_path_off) {
            (Some(true), _) => " (eBPF fast path)".to_owned(),
            (_, Some(why)) => format!(" (not on the eBPF fast path: {why})"),
            _ => String::new(),
        };
        println!(
            "  tunnel {} on {}: {}{fast}",
            t.device, t.namespace, t.backend
        );
    }
}
