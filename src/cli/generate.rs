//! `grelab generate`: a scale topology on stdout.

use anyhow::Result;

use super::Shape;
use crate::error::bad_input;
use crate::model::Backend;
use crate::topology::generate;
use crate::validate::name_problem;

pub(super) fn run(shape: Shape) -> Result<()> {
    let (name, yaml) = match shape {
        Shape::HubSpoke {
            spokes,
            name,
            no_tunnels,
            backend,
        } => {
            let y = generate::hub_spoke(&name, spokes, !no_tunnels, Backend::from(backend));
            (name, y)
        }
        Shape::FullMesh {
            nodes,
            name,
            backend,
        } => {
            let y = generate::full_mesh(&name, nodes, Backend::from(backend));
            (name, y)
        }
    };
    if let Some(p) = name_problem("lab name", &name, 32) {
        return Err(bad_input(format!("--name: {p}")));
    }
    print!("{yaml}");
    Ok(())
}
