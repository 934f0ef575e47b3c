//! `grelab graph`: the lab as a picture (dot or Mermaid), from a file or a
//! running lab (whose backends and fast-path state it adds).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use super::GraphFormat;
use super::labs::{record, the_lab};
use super::validate::load_plan;
use crate::plan::graph::{self, EndState};

pub(super) fn run(
    file: Option<&Path>,
    lab: Option<String>,
    prefix: Option<&str>,
    format: GraphFormat,
) -> Result<()> {
    let from_lab =
        lab.is_some() || (file.is_none() && !Path::new(super::validate::DEFAULT_FILE).exists());
    let (plan, running) = if from_lab {
        let s = record(&the_lab(lab)?)?;
        let stats = s
            .dataplane
            .filter(crate::dataplane::is_running)
            .and_then(|_| {
                let dir = crate::lab::state::lab_dir(&s.plan.lab);
                crate::dataplane::read_stats(&crate::dataplane::stats_path(&dir)).ok()
            });
        let running: HashMap<(String, String), EndState> = s
            .backends
            .iter()
            .map(|e| {
                let fast_path = stats.as_ref().is_some_and(|st| {
                    st.tunnels
                        .iter()
                        .any(|t| t.netns == e.namespace && t.name == e.device && t.fast_path)
                });
                let state = EndState {
                    backend: e.backend.to_string(),
                    fast_path,
                };
                ((e.namespace.clone(), e.device.clone()), state)
            })
            .collect();
        (s.plan, running)
    } else {
        (load_plan(file, prefix)?, HashMap::new())
    };
    match format {
        GraphFormat::Dot => print!("{}", graph::dot(&plan, &running)),
        GraphFormat::Mermaid => print!("{}", graph::mermaid(&plan, &running)),
    }
    Ok(())
}
