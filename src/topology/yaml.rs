//! Reading a topology from YAML: the size cap, the parser's errors as
//! `file:line:col`, and the shapes YAML needs (one or many, scalars, ordered
//! mappings, places in the file).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::Topology;

/// Topology files larger than this are refused (a lab of 1000 spokes is ~0.5 MiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// A value and where the file has it: serde-saphyr's `Spanned`, as a type of
/// ours so that it can describe itself in the JSON Schema (the orphan rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    pub value: T,
    /// Where the value is used (an alias's place, not its anchor's).
    pub referenced: serde_saphyr::Location,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Spanned {
            value: s.value,
            referenced: s.referenced,
        })
    }
}

// The file holds the bare value; its place is the parser's knowledge.
impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// One value or a list of them.
#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

// By hand rather than `untagged`, so an element's own error (a bad prefix
// length, say) reaches the user instead of "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address like `10.0.0.1/24`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({"anyOf": [one, {"type": "array", "items": one}]})
    }
}

impl<T> OneOrMany<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A sysctl value: YAML scalars of any type, kept as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, string or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(u8::from(v).to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// Floats are refused: a sysctl takes integers or words.
impl JsonSchema for Scalar {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer", "boolean"],
            "description": "An integer, a word or a boolean (written as 1 or 0)."
        })
    }
}

/// `key:` with nothing after it reads as the empty default, like an absent key.
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A YAML mapping that keeps the file's order and each key's location.
#[derive(Debug)]
pub struct Ordered<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de> + Default> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de> + Default> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered<V>, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    // `host1:` with nothing under it is an empty node.
                    out.push((k, map.next_value::<Option<V>>()?.unwrap_or_default()));
                }
                Ok(Ordered(out))
            }
        }
        // `any`, not `map`: an empty `sysctls:` (null) is an empty mapping.
        d.deserialize_any(OrderedVisitor(std::marker::PhantomData))
    }
}

// Any keys; `key:` with nothing under it is the default value, and so is
// the whole mapping written as nothing.
impl<V: JsonSchema> JsonSchema for Ordered<V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Ordered_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<Option<V>>();
        json_schema!({"type": ["object", "null"], "additionalProperties": value})
    }
}

/// A place in the topology file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub line: u64,
    pub col: u64,
}

impl Loc {
    pub(crate) fn of<T>(s: &Spanned<T>) -> Loc {
        Loc {
            line: s.referenced.line(),
            col: s.referenced.column(),
        }
    }
}

/// Reads a topology file with a size cap, so `/dev/zero` cannot hang grelab.
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        crate::error::bad_input(format!(
            "cannot read topology file `{}`: {e}{}",
            path.display(),
            if e.kind() == std::io::ErrorKind::NotFound {
                " (give a FILE, or run `grelab init` to write ./grelab.yaml)"
            } else {
                ""
            }
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::error::bad_input(format!("reading `{}`: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(crate::error::bad_input(format!(
            "`{}` is larger than {} MiB: that is no topology file",
            path.display(),
            MAX_FILE_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        crate::error::bad_input(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses YAML text into a topology; the error carries `file:line:col`.
pub fn parse(text: &str, file: &str) -> anyhow::Result<Topology> {
    // Only comments and blank lines: say so, rather than "unexpected end of input".
    let is_content = |l: &str| !(l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if !text.lines().map(str::trim).any(is_content) {
        return Err(crate::error::rendered(format!(
            "{file}:1:1: error: the file is empty; a topology needs at least `name:` and `nodes:` (see `grelab init`)"
        )));
    }
    // serde-saphyr's default budget (250k nodes, 1M events) refuses a lab of
    // ~6700 spokes, far below MAX_FILE_BYTES; this lets the file cap decide.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_nodes: 1_000_000, max_events: 2_000_000 },
    };
    serde_saphyr::from_str_with_options::<Topology>(text, options).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{file}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| file.to_owned());
        // render() starts "error: line L column C: MSG" and then a snippet.
        // The duplicate-key advice is for programmers using serde-saphyr, not users.
        let rendered = e
            .render()
            .replace("<input>", file)
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        let (first, snippet) = rendered.split_once('\n').unwrap_or((&rendered, ""));
        let message = first.split_once(": ").map(|x| x.1).unwrap_or(first);
        let message = message
            .split_once(": ")
            .filter(|(head, _)| head.starts_with("line "))
            .map_or(message, |(_, m)| m);
        crate::error::rendered(format!("{at}: error: {message}\n{}", snippet.trim_end()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Backend;

    #[test]
    fn a_large_lab_under_the_file_cap_parses() {
        // ~290k YAML nodes: over serde-saphyr's default budget of 250k.
        let text = crate::topology::generate::hub_spoke("big", 7_000, true, Backend::Auto);
        assert!((text.len() as u64) < MAX_FILE_BYTES);
        let topo = parse(&text, "big.yaml").unwrap();
        assert_eq!(topo.nodes.0.len(), 7_001);
        assert_eq!(topo.tunnels.len(), 7_000);
        assert_eq!(topo.checks.len(), 7_000);
    }
}
