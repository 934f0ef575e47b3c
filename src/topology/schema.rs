//! The JSON Schema of the topology file, derived from the types serde reads
//! it into (`JsonSchema` beside each `Deserialize`), so the two cannot drift.
//! Editors read it to complete and check a topology; grelab's validation
//! remains the judge. The schema types values as YAML 1.2 does, as editors
//! do; the parser is more lenient in two ways the schema does not follow:
//! YAML 1.1 booleans (`yes`, `on`) and numbers or booleans in quotes.

use schemars::Schema;
use schemars::transform::{RecursiveTransform, Transform};
use serde_json::{Value, json};

use super::Topology;

/// The schema of a topology file (JSON Schema 2020-12).
pub fn schema() -> Value {
    let mut schema = schemars::schema_for!(Topology);
    RecursiveTransform(scalars_as_text).transform(&mut schema);
    schema.insert("title".into(), "grelab topology".into());
    schema.to_value()
}

/// Where the parser wants text it also takes a number or boolean, as
/// written (`cmd: [sleep, 1]`, `name: 2024`): so does a schema of free text.
fn scalars_as_text(schema: &mut Schema) {
    let free = ["pattern", "format", "enum", "const", "anyOf", "oneOf"]
        .into_iter()
        .all(|k| schema.get(k).is_none());
    let types: Vec<Value> = match schema.get("type") {
        Some(Value::Array(ts)) => ts.clone(),
        Some(t) => vec![t.clone()],
        None => return,
    };
    // Text, or text or nothing: not a mix that already names other scalars.
    let text = [json!("string")];
    let text_or_null = [json!("string"), json!("null")];
    if free && (types == text || types == text_or_null) {
        let mut wide = vec![json!("string"), json!("number"), json!("boolean")];
        wide.extend(types.into_iter().skip(1));
        schema.insert("type".into(), Value::Array(wide));
    }
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
