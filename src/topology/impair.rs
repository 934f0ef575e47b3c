//! `impair:` on a link or a tunnel: the parameters for both ends' egress,
//!
//! ```yaml
//! impair: {delay: 20ms, loss: 1%}
//! ```
//!
//! or, for one direction only, a mapping from an end (`node:iface` on a
//! link, the node on a tunnel) to the parameters of that end's egress:
//!
//! ```yaml
//! impair: {"host1:veth0": {delay: 20ms}, "internet:veth1": {rate: 1mbit}}
//! ```

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::yaml::Spanned;
use crate::model::{Impairment, Micros, PARAMETERS, Rate, Share};

/// The parameters as written, each with its place in the file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpairParams {
    /// Added to every packet's departure.
    pub delay: Option<Spanned<Micros>>,
    /// Spread around `delay`, at most `delay`.
    pub jitter: Option<Spanned<Micros>>,
    pub loss: Option<Spanned<Share>>,
    pub duplicate: Option<Spanned<Share>>,
    /// One bit flipped in this share of packets.
    pub corrupt: Option<Spanned<Share>>,
    /// This share of packets goes at once, overtaking the delayed ones (needs `delay`).
    pub reorder: Option<Spanned<Share>>,
    /// The most the interface sends.
    pub rate: Option<Spanned<Rate>>,
}

impl ImpairParams {
    /// The values, without their places.
    pub(crate) fn impairment(&self) -> Impairment {
        let v = |s: &Option<Spanned<Share>>| s.as_ref().map(|s| s.value);
        Impairment {
            delay: self.delay.as_ref().map(|s| s.value),
            jitter: self.jitter.as_ref().map(|s| s.value),
            loss: v(&self.loss),
            duplicate: v(&self.duplicate),
            corrupt: v(&self.corrupt),
            reorder: v(&self.reorder),
            rate: self.rate.as_ref().map(|s| s.value),
        }
    }
}

/// Both directions, or per end.
#[derive(Debug, Clone)]
pub enum Impair {
    Both(Box<ImpairParams>),
    /// (the end as written, its egress's parameters), in file order.
    PerEnd(Vec<(Spanned<String>, ImpairParams)>),
}

// By hand: the form is told by the first key (a parameter's name or an end).
impl<'de> Deserialize<'de> for Impair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Impair;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "impairments like `{delay: 20ms, loss: 1%}`, or a mapping from ends to them",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Impair, A::Error> {
                let mut both: Option<ImpairParams> = None;
                let mut ends = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let param = PARAMETERS.contains(&key.value.as_str());
                    if (param && !ends.is_empty()) || (!param && both.is_some()) {
                        return Err(de::Error::custom(format!(
                            "`{}`: give either parameters (both directions) or ends \
                             (`node:iface` for one direction), not both",
                            key.value
                        )));
                    }
                    if !param {
                        ends.push((key, map.next_value::<ImpairParams>()?));
                        continue;
                    }
                    let p = both.get_or_insert_with(ImpairParams::default);
                    match key.value.as_str() {
                        "delay" => p.delay = Some(map.next_value()?),
                        "jitter" => p.jitter = Some(map.next_value()?),
                        "loss" => p.loss = Some(map.next_value()?),
                        "duplicate" => p.duplicate = Some(map.next_value()?),
                        "corrupt" => p.corrupt = Some(map.next_value()?),
                        "reorder" => p.reorder = Some(map.next_value()?),
                        _ => p.rate = Some(map.next_value()?),
                    }
                }
                Ok(match both {
                    Some(p) => Impair::Both(Box::new(p)),
                    None => Impair::PerEnd(ends),
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for Impair {
    fn schema_name() -> Cow<'static, str> {
        "Impair".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let params = generator.subschema_for::<ImpairParams>();
        json_schema!({
            "description": "Impairments of both ends' egress, or a mapping from an end \
                (`node:iface` on a link, the node on a tunnel) to those of its egress only.",
            "anyOf": [params, {"type": "object", "additionalProperties": params}]
        })
    }
}

impl Impair {
    /// The parameters for each of the two ends named `keys` (how a per-end
    /// form names them), and the per-end keys that name neither.
    pub(crate) fn per_end<'a>(
        &'a self,
        keys: [&str; 2],
    ) -> ([Vec<&'a ImpairParams>; 2], Vec<&'a Spanned<String>>) {
        let mut out = [Vec::new(), Vec::new()];
        let mut unknown = Vec::new();
        match self {
            Impair::Both(p) => out.iter_mut().for_each(|v| v.push(&**p)),
            Impair::PerEnd(ends) => {
                for (k, p) in ends {
                    match keys.iter().position(|n| *n == k.value) {
                        Some(i) => out[i].push(p),
                        None => unknown.push(k),
                    }
                }
            }
        }
        (out, unknown)
    }
}

impl super::Link {
    /// How the per-end form names end `i`: `node:iface`.
    pub(crate) fn end_keys(&self) -> [String; 2] {
        self.endpoints.value.each_ref().map(|e| e.value.to_string())
    }
}

impl super::Tunnel {
    /// How the per-end form names end `i`: its node.
    pub(crate) fn end_keys(&self) -> [String; 2] {
        self.endpoints
            .value
            .each_ref()
            .map(|e| e.node.value.clone())
    }
}

impl super::Topology {
    /// Every impaired interface, as (node, iface, what its egress suffers),
    /// links first, in file order. Where the file names an end twice, the
    /// last wins (validation refuses it).
    pub(crate) fn impairments(&self) -> Vec<(&str, &str, Impairment)> {
        let mut out = Vec::new();
        for l in &self.links {
            let [a, b] = &l.endpoints.value;
            let ends = [
                (a.value.node.as_str(), a.value.iface.as_str()),
                (b.value.node.as_str(), b.value.iface.as_str()),
            ];
            add_ends(&mut out, l.impair.as_ref(), &l.end_keys(), ends);
        }
        for t in &self.tunnels {
            let [a, b] = &t.endpoints.value;
            let ends = [
                (a.node.value.as_str(), t.name.value.as_str()),
                (b.node.value.as_str(), t.name.value.as_str()),
            ];
            add_ends(&mut out, t.impair.as_ref(), &t.end_keys(), ends);
        }
        out
    }
}

/// Adds to `out` the impaired ones of `ends` (named `keys`).
fn add_ends<'a>(
    out: &mut Vec<(&'a str, &'a str, Impairment)>,
    impair: Option<&Impair>,
    keys: &[String; 2],
    ends: [(&'a str, &'a str); 2],
) {
    let Some(imp) = impair else { return };
    let (params, _) = imp.per_end([&keys[0], &keys[1]]);
    for (i, ps) in params.iter().enumerate() {
        if let Some(p) = ps.last().map(|p| p.impairment())
            && !p.is_empty()
        {
            out.push((ends[i].0, ends[i].1, p));
        }
    }
}
