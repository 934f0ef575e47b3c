//! The topology file's JSON Schema against grelab itself: the committed file
//! is what `grelab schema` prints; every file grelab accepts, the schema
//! accepts; a file the schema refuses, grelab refuses; at every place in
//! those files the schema knows the keys serde knows. Pure: no root.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use common::{bad_files, good_files, root};
use grelab::topology;
use grelab::validate::{self, validate};

const MODELINE: &str = "# yaml-language-server: $schema=../schema/grelab.schema.json";

/// The schema, compiled by an independent validator (boon).
struct Checker {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Checker {
    fn new() -> Checker {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let url = "urn:grelab:topology";
        compiler
            .add_resource(url, topology::schema())
            .expect("adding the schema");
        let index = compiler
            .compile(url, &mut schemas)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e:#}"));
        Checker { schemas, index }
    }

    /// `Err` with the validator's reasons if the schema refuses `doc`.
    fn check(&self, doc: &Value) -> Result<(), String> {
        self.schemas
            .validate(doc, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

/// The YAML as the JSON data an editor's schema check sees (YAML 1.2 types:
/// `yes` is text); `None` if it is no YAML.
fn as_json(text: &str) -> Option<Value> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Value>(text, options).ok()
}

/// grelab's verdict: `Ok` if the file parses and validates, else its errors.
fn grelab_accepts(text: &str, name: &str) -> Result<(), String> {
    let topo = topology::parse(text, name).map_err(|e| format!("{e:#}"))?;
    validate(&topo).map_err(|d| validate::render(name, &d))
}

/// A file that uses every key of the format, and every form a value may take.
const EVERY_KEY: &str = r#"
name: schema-every-key
prefix: sk-
nodes:
  a:
    forwarding: false
    routes:
      - {to: "10.1.0.0/24", via: 10.0.0.2}
      - {to: default6, via: "fd00:1::2"}
    sysctls: {net.ipv4.conf.all.rp_filter: 0, net.ipv4.conf.all.accept_local: true, net.ipv4.tcp_congestion_control: reno}
  b:
    forwarding: true
  c:
    routes: [{to: default, via: 10.1.0.1}]
  d:
  e: {routes: , sysctls: }
links:
  - endpoints: ["a:e0", "b:e0"]
    addresses: [["10.0.0.1/24", "fd00:1::1/64"], ["10.0.0.2/24", "fd00:1::2/64"]]
    mtu: 1500
  - endpoints: ["b:e1", "c:e0"]
    addresses: ["10.1.0.1/24", "10.1.0.2/24"]
  - endpoints: ["d:e0", "e:e0"]
tunnels:
  - name: t0
    type: gre
    ttl: 64
    tos: 0
    key: 5
    checksum: true
    sequence: false
    pmtudisc: true
    mtu: 1400
    backend: kernel
    endpoints:
      - {node: a, local: 10.0.0.1, address: "192.168.9.1/30", ikey: 5, okey: 5, checksum: true, sequence: false, backend: userspace}
      - {node: c, local: 10.1.0.2, addresses: ["192.168.9.2/30"]}
  - name: t6
    type: ip6gretap
    endpoints:
      - {node: a, local: "fd00:1::1"}
      - {node: b, local: "fd00:1::2", backend: null}
checks:
  - ping: {from: a, to: 192.168.9.2, count: 2, expect: success, timeout: 2}
  - ping: {from: a, to: 10.1.0.2, expect: failure}
  - mtu: {tunnel: t0, from: a, timeout: 1.5}
  - encap: {tunnel: t0}
  - route: {from: a, to: 10.1.0.2, dev: e0, timeout: 3}
  - exec: {node: b, cmd: ["true"], exit: 0, timeout: 1}
"#;

/// Every list and mapping written as nothing.
const ALL_NULL: &str = "name: schema-null\nnodes:\n  a:\nlinks:\ntunnels:\nchecks:\n";

/// Files grelab accepts: the examples, the generated shapes and the two above.
fn accepted_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = good_files()
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    for args in [
        &["generate", "hub-spoke", "--spokes", "3"][..],
        &["generate", "hub-spoke", "--spokes", "2", "--no-tunnels"],
        &[
            "generate",
            "full-mesh",
            "--nodes",
            "3",
            "--backend",
            "userspace",
        ],
    ] {
        files.push((format!("grelab {}", args.join(" ")), grelab(args)));
    }
    files.push(("EVERY_KEY".into(), EVERY_KEY.into()));
    files.push(("ALL_NULL".into(), ALL_NULL.into()));
    for (name, text) in &files {
        if let Err(e) = grelab_accepts(text, name) {
            panic!("{name} should be a valid topology:\n{e}");
        }
    }
    files
}

/// The real binary's stdout for `args`, which must succeed.
fn grelab(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_grelab"))
        .args(args)
        .output()
        .expect("running grelab");
    assert!(
        out.status.success(),
        "grelab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_committed_schema_is_what_grelab_schema_prints() {
    let path = root().join("schema/grelab.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    });
    assert!(
        grelab(&["schema"]) == committed,
        "schema/grelab.schema.json is not what `grelab schema` prints: the topology \
         types changed. Regenerate it:\n  cargo run -q -- schema > schema/grelab.schema.json"
    );
    let parsed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(parsed, topology::schema());
}

#[test]
fn every_example_carries_the_modeline_and_the_schema_accepts_it() {
    let checker = Checker::new();
    for path in good_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some(MODELINE),
            "{}: the first line must be the modeline, so editors find the schema",
            path.display()
        );
    }
    for (name, text) in accepted_files() {
        let doc = as_json(&text).unwrap_or_else(|| panic!("{name}: no YAML"));
        if let Err(e) = checker.check(&doc) {
            panic!(
                "the schema refuses {name}, which grelab accepts (a key or a form of a \
                 value the schema lacks; regenerate it with `cargo run -q -- schema > \
                 schema/grelab.schema.json`, or fix the type's JsonSchema):\n{e}"
            );
        }
    }
}

#[test]
fn a_bad_file_the_schema_refuses_grelab_refuses_too() {
    let checker = Checker::new();
    let (mut refused, mut accepted, mut not_yaml) = (Vec::new(), Vec::new(), Vec::new());
    for bad in bad_files() {
        let name = bad.name();
        let text = std::fs::read_to_string(&bad.path).unwrap();
        let grelab = grelab_accepts(&text, &name);
        match as_json(&text) {
            None => not_yaml.push(name.clone()),
            Some(doc) if checker.check(&doc).is_err() => refused.push(name.clone()),
            Some(_) => accepted.push(name.clone()),
        }
        // The schema may be more lenient than grelab, never stricter.
        assert!(
            grelab.is_err(),
            "{name}: grelab accepts a file of tests/bad"
        );
    }
    eprintln!(
        "tests/bad: the schema refuses {} ({}), accepts {} that validation refuses, {} are no YAML",
        refused.len(),
        refused.join(" "),
        accepted.len(),
        not_yaml.len()
    );
    // What the schema can see (shapes, keys, names of kinds) it must catch.
    for name in [
        "endpoint-without-colon.yaml",
        "iface-name-too-long.yaml",
        "invalid-ip.yaml",
        "invalid-prefix-length.yaml",
        "ipv6-prefix-length.yaml",
        "link-one-endpoint.yaml",
        "link-three-endpoints.yaml",
        "missing-name.yaml",
        "type-mtu-string.yaml",
        "type-name-list.yaml",
        "unknown-check-kind.yaml",
        "unknown-node-key.yaml",
        "unknown-top-level-key.yaml",
        "unknown-tunnel-key.yaml",
        "unknown-tunnel-type.yaml",
    ] {
        assert!(
            refused.iter().any(|r| r == name),
            "the schema should refuse tests/bad/{name}"
        );
    }
}

/// Asserts the schema's verdict on `text` (a valid file but for one value),
/// and that grelab refuses whatever the schema refuses.
fn assert_edge(checker: &Checker, text: &str, what: &str, schema_accepts: bool) {
    let doc = as_json(text).unwrap_or_else(|| panic!("{what}: no YAML"));
    let verdict = checker.check(&doc);
    assert_eq!(
        verdict.is_ok(),
        schema_accepts,
        "{what}: the schema should {} it",
        if schema_accepts { "accept" } else { "refuse" }
    );
    if let Err(e) = verdict {
        assert!(
            grelab_accepts(text, "edge.yaml").is_err(),
            "the schema refuses {what}, which grelab accepts:\n{e}"
        );
    }
}

#[test]
fn the_schema_refuses_only_what_grelab_refuses() {
    // Values at the edges of each pattern, each put into an otherwise valid file.
    let base = "name: edge\nnodes: {a: {}, b: {}}\nlinks:\n  - endpoints: [\"a:e0\", \"b:e0\"]\n    addresses: [\"10.0.0.1/24\", ADDR]\n";
    let checker = Checker::new();
    for (addr, ok) in [
        ("\"10.0.0.2/24\"", true),
        ("\"10.0.0.2/+24\"", true),
        ("\"10.0.0.2/024\"", true),
        ("[\"10.0.0.2/24\", \"::ffff:10.9.0.1/120\"]", true),
        ("[\"10.0.0.2/24\", \"fd00::1/128\", \"::2/0\"]", true),
        ("[]", true),
        ("\"255.250.199.9/32\"", true),
        ("\"10.0.0.2\"", false),
        ("\"10.0.0.2/33\"", false),
        ("\"fd00::1/129\"", false),
        ("\"10.0.0.256/24\"", false),
        ("\"010.0.0.2/24\"", false),
        ("\"10.0.0.2.1/24\"", false),
        ("\"10.0.0.2/x\"", false),
        ("\"fe80::1%e0/64\"", false),
        ("\"10.0.0.2/24 \"", false),
        ("10", false),
        ("[[\"10.0.0.2/24\"]]", false),
    ] {
        let text = base.replace("ADDR", addr);
        assert_edge(&checker, &text, &format!("address {addr}"), ok);
    }
    for (ep, ok) in [
        ("a:e0", true),
        ("a:e-0.1_2", true),
        ("a:0123456789abcde", true),
        ("a:0123456789abcdef", false),
        ("a:e0:x", false),
        (":e0", false),
        ("a:", false),
        ("a:e0/1", false),
        ("a b:e0", false),
    ] {
        let text = base
            .replace("\"a:e0\"", &format!("\"{ep}\""))
            .replace("ADDR", "\"10.0.0.2/24\"");
        assert_edge(&checker, &text, &format!("endpoint {ep}"), ok);
    }
    // The parser takes a number or boolean where it wants text, as written.
    let one = "name: edge\nnodes: {a: {}}\n";
    for (text, ok) in [
        ("name: 2024\nnodes: {a: {}}\n", true),
        ("name: true\nnodes: {a: {}}\n", true),
        ("name: [x]\nnodes: {a: {}}\n", false),
        ("name: {x: 1}\nnodes: {a: {}}\n", false),
        (
            &format!("{one}checks: [{{exec: {{node: a, cmd: [sleep, 0.1, true]}}}}]\n"),
            true,
        ),
        (
            &format!("{one}checks: [{{exec: {{node: a, cmd: [[sleep]]}}}}]\n"),
            false,
        ),
        (
            &format!("{one}checks: [{{exec: {{node: a, cmd: [true], exit: 1.5}}}}]\n"),
            false,
        ),
    ] {
        assert_edge(&checker, text, text, ok);
    }
}

#[test]
fn the_schema_types_values_as_yaml_1_2_where_the_parser_is_more_lenient() {
    // Known and accepted: editors see YAML 1.2 types, so the schema does too.
    // If the parser becomes strict (serde-saphyr's `strict_booleans`), the
    // gap closes and this list shrinks.
    let checker = Checker::new();
    for text in [
        "name: x\nnodes: {a: {forwarding: yes}}\n",
        "name: x\nnodes: {a: {forwarding: on}}\n",
        "name: x\nnodes: {a: {forwarding: \"true\"}}\n",
        "name: x\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], mtu: \"1500\"}]\n",
    ] {
        assert!(grelab_accepts(text, "t.yaml").is_ok(), "{text}");
        assert!(checker.check(&as_json(text).unwrap()).is_err(), "{text}");
    }
}

/// A step into a JSON document.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The schemas that may apply at one place: `$ref`s followed, `anyOf` and
/// `oneOf` opened.
fn branches<'a>(root: &'a Value, s: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("a local $ref");
        branches(root, &root["$defs"][name], out);
    }
    for k in ["anyOf", "oneOf"] {
        for b in s.get(k).and_then(Value::as_array).into_iter().flatten() {
            branches(root, b, out);
        }
    }
    out.push(s);
}

/// The schemas that apply one step down.
fn step<'a>(root: &'a Value, here: &[&'a Value], seg: &Seg) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for s in here {
        let next = match seg {
            Seg::Key(k) => s
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
            Seg::Index(_) => s.get("items"),
        };
        if let Some(n) = next {
            branches(root, n, &mut out);
        }
    }
    out
}

/// What the schema says of the mapping at one place: its keys, and whether
/// it takes other keys too.
fn schema_keys(here: &[&Value]) -> (BTreeSet<String>, bool) {
    let keys = here
        .iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    let open = here
        .iter()
        .any(|s| s.get("additionalProperties").is_some_and(Value::is_object));
    (keys, open)
}

fn at_mut<'a>(doc: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(doc, |v, seg| match seg {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Index(i) => &mut v[*i],
    })
}

/// What grelab's parser says of the mapping at `path`: the keys (or, for a
/// kind of check, the kinds) it knows, or `None` if it takes any key.
fn serde_keys(doc: &Value, path: &[Seg], what: &str) -> Option<BTreeSet<String>> {
    const ODD: &str = "zz-no-such-key";
    let parse = |doc: &Value| topology::parse(&doc.to_string(), "w.yaml").err();
    let mut with_key = doc.clone();
    at_mut(&mut with_key, path)
        .as_object_mut()
        .unwrap()
        .insert(ODD.into(), Value::Null);
    let mut alone = doc.clone();
    *at_mut(&mut alone, path) = serde_json::json!({ ODD: null });
    let err = format!("{:#}", parse(&with_key)?);
    let err = if err.contains("unknown field") {
        err
    } else {
        parse(&alone).map_or(err, |e| format!("{e:#}"))
    };
    let list = err
        .lines()
        .next()
        .and_then(|l| l.split_once(&format!("`{ODD}`, expected ")))
        .map(|(_, l)| l.strip_prefix("one of ").unwrap_or(l))
        .unwrap_or_else(|| panic!("{what}: no list of keys in grelab's error:\n{err}"));
    Some(
        list.split(", ")
            .map(|k| k.trim_matches('`').to_owned())
            .collect(),
    )
}

/// Every mapping in `doc`, with its path.
fn mappings(doc: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match doc {
        Value::Object(m) => {
            out.push(path.clone());
            for (k, v) in m {
                path.push(Seg::Key(k.clone()));
                mappings(v, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                mappings(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Where `schema` and grelab's parser disagree on the keys of a mapping,
/// at every mapping of the accepted files; and how many places it looked at.
fn key_disagreements(schema: &Value) -> (usize, Vec<String>) {
    let (mut places, mut wrong) = (0, Vec::new());
    for (name, text) in accepted_files() {
        let doc = as_json(&text).unwrap();
        let mut paths = Vec::new();
        mappings(&doc, &mut Vec::new(), &mut paths);
        for path in paths {
            let mut here = Vec::new();
            branches(schema, schema, &mut here);
            for seg in &path {
                here = step(schema, &here, seg);
            }
            let what = format!("{name} at {path:?}");
            let (keys, open) = schema_keys(&here);
            places += 1;
            let Some(known) = serde_keys(&doc, &path, &what) else {
                if !open {
                    wrong.push(format!("{what}: grelab takes any key, the schema does not"));
                }
                continue;
            };
            if open {
                wrong.push(format!("{what}: the schema takes any key, grelab does not"));
            }
            let missing: Vec<_> = known.difference(&keys).collect();
            if !missing.is_empty() {
                wrong.push(format!(
                    "{what}: grelab knows {missing:?}, the schema does not"
                ));
            }
            // Aliases: serde lists a key's main name only; grelab must know the rest.
            for extra in keys.difference(&known) {
                let mut d = doc.clone();
                let m = at_mut(&mut d, &path).as_object_mut().unwrap();
                m.clear();
                m.insert(extra.clone(), Value::Null);
                let err = topology::parse(&d.to_string(), "w.yaml").err();
                let err = err.map(|e| format!("{e:#}")).unwrap_or_default();
                if err.contains("unknown field") || err.contains("unknown variant") {
                    wrong.push(format!(
                        "{what}: the schema knows `{extra}`, grelab does not"
                    ));
                }
            }
        }
    }
    (places, wrong)
}

#[test]
fn at_every_place_the_schema_knows_the_keys_grelab_knows() {
    let (places, wrong) = key_disagreements(&topology::schema());
    assert!(places > 100, "only {places} places looked at");
    assert!(
        wrong.is_empty(),
        "the schema and grelab disagree on keys (regenerate schema/grelab.schema.json, or \
         give the type a JsonSchema that matches its Deserialize):\n{}",
        wrong.join("\n")
    );

    // The comparison sees a key missing, a key too many and a mapping opened.
    let mut bent = topology::schema();
    let defs = &mut bent["$defs"];
    defs["Node"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("forwarding");
    defs["Route"]["properties"]["metric"] = serde_json::json!({"type": "integer"});
    defs["Link"]["additionalProperties"] = serde_json::json!({});
    defs["Check"]["oneOf"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "type": "object", "properties": {"traceroute": {}}, "additionalProperties": false
        }));
    let (_, wrong) = key_disagreements(&bent);
    let has = |s: &str| wrong.iter().any(|w| w.contains(s));
    assert!(has(r#"grelab knows ["forwarding"]"#), "{wrong:#?}");
    assert!(
        has("the schema knows `metric`, grelab does not"),
        "{wrong:#?}"
    );
    assert!(
        has("the schema takes any key, grelab does not"),
        "{wrong:#?}"
    );
    assert!(
        has("the schema knows `traceroute`, grelab does not"),
        "{wrong:#?}"
    );
}
