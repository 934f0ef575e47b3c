//! The JSON Schema of the topology file, derived from the types serde reads
//! it into (`JsonSchema` beside each `Deserialize`), so the two cannot drift.
//! Editors read it to complete and check a topology; grelab's validation
//! remains the judge: the schema never refuses a file grelab accepts.

use schemars::Schema;

use super::Topology;

/// The schema of a topology file (JSON Schema 2020-12).
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Topology);
    schema.insert("title".into(), "grelab topology".into());
    schema.to_value()
}

/// A transform naming property `name` also `alias` (serde's `alias`, which
/// schemars does not see).
pub(super) fn alias(name: &'static str, alias: &'static str) -> impl Fn(&mut Schema) {
    move |schema| {
        let props = schema.get_mut("properties").and_then(|p| p.as_object_mut());
        if let Some(props) = props
            && let Some(p) = props.get(name).cloned()
        {
            props.insert(alias.into(), p);
        }
    }
}
