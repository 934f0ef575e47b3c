//! Property tests: no input makes parse, validate or plan panic, and every
//! valid topology gives a sound plan and a shell-valid script.

mod common;

use grelab::model::TunnelKind;
use grelab::model::overhead;
use grelab::plan;
use grelab::topology;
use grelab::validate::{self, validate};
use proptest::prelude::*;
use proptest::sample::select;

/// Runs the whole pure pipeline on `text`; panics only on a grelab bug.
fn pipeline(text: &str) {
    let Ok(topo) = topology::parse(text, "p.yaml") else {
        return;
    };
    match validate(&topo) {
        Err(diags) => {
            assert!(!diags.is_empty());
            let shown = validate::render("p.yaml", &diags);
            assert!(shown.ends_with(" in p.yaml"), "{shown}");
        }
        Ok(()) => {
            for prefix in [None, Some("p-")] {
                let plan = plan::build(&topo, prefix);
                common::assert_plan_sound(text, &plan);
                let _ = plan.script();
                serde_json::to_string(&plan).expect("plan serializes");
            }
        }
    }
}

const EXAMPLES: [&str; 5] = [
    include_str!("../topologies/basic.yaml"),
    include_str!("../topologies/gretap.yaml"),
    include_str!("../topologies/ipv6-over-ipv4.yaml"),
    include_str!("../topologies/keyed.yaml"),
    include_str!("../topologies/l2-islands.yaml"),
];

/// Pieces that YAML or grelab treat specially, for splicing into examples.
const TOKENS: &[&str] = &[
    ":",
    " ",
    "\n",
    "  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "~",
    "null",
    "0",
    "-1",
    "4294967296",
    "65536",
    "/",
    "/0",
    "/33",
    "/129",
    "::",
    "fd00::1/64",
    "10.0.0.1",
    "lo",
    "host1",
    "nodes:",
    "links: ",
    "tunnels:",
    "key: 1",
    "ttl: 0",
    "mtu: 1",
    "type: ip6gre",
    "gretap",
    "\t",
    "\u{0}",
    "é",
    "\u{feff}",
    "---\n",
    "...\n",
    "<<: *a",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
}

fn splice(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_owned();
    for e in edits {
        let at = |i: usize| {
            let mut i = i % (s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match *e {
            Edit::Delete(i, n) => {
                let a = at(i);
                let b = at(a + n).max(a);
                s.replace_range(a..b, "");
            }
            Edit::Insert(i, t) => {
                let a = at(i);
                s.insert_str(a, t);
            }
        }
    }
    s
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
    ]
}

// ---- Random topologies from pieces: often wrong, in every way at once. ----

/// Mostly one of `good`, sometimes one of `bad`.
fn pick(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => select(good), 1 => select(bad)]
}

fn node_name() -> impl Strategy<Value = &'static str> {
    pick(&["a", "b", "c"], &["host1", "a/b", ".x", ""])
}
fn iface() -> impl Strategy<Value = &'static str> {
    pick(
        &["e0", "e1", "e2", "t0"],
        &["lo", "abcdefghijklmnop", "e/0", "x;y"],
    )
}
fn cidr() -> impl Strategy<Value = &'static str> {
    pick(
        &[
            "10.0.0.1/24",
            "10.0.0.2/24",
            "10.0.1.1/24",
            "10.0.1.2/24",
            "fd00::1/64",
            "fd00::2/64",
            "192.168.0.1/30",
            "192.168.0.2/30",
        ],
        &[
            "10.0.0.1/32",
            "0.0.0.0/0",
            "10.0.0.3/8",
            "fd00::1/128",
            "::/0",
            "10.0.0.0/31",
            "fd00::/127",
        ],
    )
}
fn ip() -> impl Strategy<Value = &'static str> {
    pick(
        &[
            "10.0.0.1",
            "10.0.0.2",
            "10.0.1.1",
            "10.0.1.2",
            "\"fd00::1\"",
            "\"fd00::2\"",
            "192.168.0.2",
        ],
        &["8.8.8.8", "\"::1\""],
    )
}
fn mtu() -> impl Strategy<Value = &'static str> {
    pick(
        &["1280", "1500", "9000"],
        &["0", "67", "68", "1279", "65535", "65536", "4294967295"],
    )
}
const KINDS: &[&str] = &["gre", "gretap", "ip6gre", "ip6gretap"];

fn opt<T: Clone + std::fmt::Debug>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.4, s)
}

fn addresses() -> impl Strategy<Value = String> {
    prop::collection::vec(cidr(), 1..3).prop_map(|v| {
        if v.len() == 1 {
            format!("\"{}\"", v[0])
        } else {
            format!(
                "[{}]",
                v.iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    })
}

fn node() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                pick(
                    &["default", "default6", "10.5.0.0/16", "\"fd10::/64\""],
                    &["10.5.0.1/16", "0.0.0.0/0", "\"::/0\""],
                ),
                ip(),
            ),
            0..3,
        ),
        opt(pick(
            &["net.ipv4.ip_forward: 1", "net.core.x: \"a b\""],
            &["kernel.panic: 1", "net..x: 1"],
        )),
    )
        .prop_map(|(fwd, routes, sysctl)| {
            let routes: Vec<String> = routes
                .iter()
                .map(|(to, via)| format!("{{to: {to}, via: {via}}}"))
                .collect();
            let mut s = format!("{{forwarding: {fwd}, routes: [{}]", routes.join(", "));
            if let Some(k) = sysctl {
                s.push_str(&format!(", sysctls: {{{k}}}"));
            }
            s + "}"
        })
}

fn link() -> impl Strategy<Value = String> {
    (
        node_name(),
        iface(),
        node_name(),
        iface(),
        opt((addresses(), addresses())),
        opt(mtu()),
    )
        .prop_map(|(na, ia, nb, ib, addrs, mtu)| {
            let mut s = format!("  - endpoints: [\"{na}:{ia}\", \"{nb}:{ib}\"]\n");
            if let Some((a, b)) = addrs {
                s.push_str(&format!("    addresses: [{a}, {b}]\n"));
            }
            if let Some(m) = mtu {
                s.push_str(&format!("    mtu: {m}\n"));
            }
            s
        })
}

fn tunnel_end() -> impl Strategy<Value = String> {
    (
        node_name(),
        ip(),
        opt(addresses()),
        opt(0u32..3),
        opt(0u32..3),
        opt(any::<bool>()),
        opt(any::<bool>()),
    )
        .prop_map(|(n, local, addr, ikey, okey, csum, seq)| {
            let mut s = format!("      - {{node: \"{n}\", local: {local}");
            if let Some(a) = addr {
                s.push_str(&format!(", address: {a}"));
            }
            let opts = [
                ("ikey", ikey.map(|x| x.to_string())),
                ("okey", okey.map(|x| x.to_string())),
                ("checksum", csum.map(|x| x.to_string())),
                ("sequence", seq.map(|x| x.to_string())),
            ];
            for (k, v) in opts {
                if let Some(v) = v {
                    s.push_str(&format!(", {k}: {v}"));
                }
            }
            s + "}\n"
        })
}

fn tunnel() -> impl Strategy<Value = String> {
    (
        iface(),
        select(KINDS),
        tunnel_end(),
        tunnel_end(),
        opt(0u32..3),
        opt(select(&[0u8, 1, 64, 255][..])),
        opt(any::<bool>()),
        opt(mtu()),
        opt(any::<bool>()),
    )
        .prop_map(|(name, kind, a, b, key, ttl, pmtu, mtu, csum)| {
            let mut s = format!("  - name: \"{name}\"\n    type: {kind}\n");
            let opts = [
                ("key", key.map(|x| x.to_string())),
                ("ttl", ttl.map(|x| x.to_string())),
                ("pmtudisc", pmtu.map(|x| x.to_string())),
                ("mtu", mtu.map(|x| x.to_string())),
                ("checksum", csum.map(|x| x.to_string())),
            ];
            for (k, v) in opts {
                if let Some(v) = v {
                    s.push_str(&format!("    {k}: {v}\n"));
                }
            }
            s + "    endpoints:\n" + &a + &b
        })
}

fn random_lab() -> impl Strategy<Value = String> {
    (
        pick(&["lab", "x-1"], &["my lab", ""]),
        opt(pick(&["ci-", ""], &["bad prefix"])),
        prop::collection::btree_map(node_name(), node(), 0..5),
        prop::collection::vec(link(), 0..4),
        prop::collection::vec(tunnel(), 0..3),
        prop::collection::vec((node_name(), ip(), select(&[1u32, 3, 0][..])), 0..3),
    )
        .prop_map(|(name, prefix, nodes, links, tunnels, checks)| {
            let mut s = format!("name: \"{name}\"\n");
            if let Some(p) = prefix {
                s.push_str(&format!("prefix: \"{p}\"\n"));
            }
            s.push_str("nodes:\n");
            for (n, body) in &nodes {
                s.push_str(&format!("  \"{n}\": {body}\n"));
            }
            if !links.is_empty() {
                s.push_str("links:\n");
                s.extend(links);
            }
            if !tunnels.is_empty() {
                s.push_str("tunnels:\n");
                s.extend(tunnels);
            }
            if !checks.is_empty() {
                s.push_str("checks:\n");
            }
            for (from, to, count) in checks {
                s.push_str(&format!(
                    "  - ping: {{from: \"{from}\", to: {to}, count: {count}}}\n"
                ));
            }
            s
        })
}

// ---- Valid labs: a chain of routers with a tunnel across it. ----

#[derive(Debug, Clone)]
struct Chain {
    routers: usize,
    link_mtus: Vec<u32>,
    kind: &'static str,
    key: Option<u32>,
    checksum: bool,
    sequence: bool,
    ttl: Option<u8>,
    pmtudisc: Option<bool>,
    mtu: Option<u32>,
    v6_overlay: bool,
}

fn chain() -> impl Strategy<Value = Chain> {
    (
        0usize..4,
        prop::collection::vec(select(&[1280u32, 1400, 1500, 9000][..]), 5),
        select(KINDS),
        opt(any::<u32>()),
        any::<bool>(),
        any::<bool>(),
        opt(1u8..=255),
        opt(any::<bool>()),
        opt(1280u32..=9000),
        any::<bool>(),
    )
        .prop_map(
            |(routers, link_mtus, kind, key, checksum, sequence, ttl, pmtudisc, mtu, v6)| {
                // The kernel refuses a fixed ttl without pmtudisc: not a valid lab.
                let pmtudisc = if ttl.is_some() {
                    pmtudisc.filter(|p| *p)
                } else {
                    pmtudisc
                };
                Chain {
                    routers,
                    link_mtus,
                    kind,
                    key,
                    checksum,
                    sequence,
                    ttl,
                    pmtudisc,
                    mtu,
                    v6_overlay: v6,
                }
            },
        )
}

impl Chain {
    /// h0 - r1 - ... - h1, the tunnel h0 <-> h1; and each end's underlay MTU.
    fn yaml(&self) -> (String, [u32; 2]) {
        let names: Vec<String> = std::iter::once("h0".to_owned())
            .chain((1..=self.routers).map(|i| format!("r{i}")))
            .chain(std::iter::once("h1".to_owned()))
            .collect();
        let last = names.len() - 2; // index of the last link
        let mtus = [self.link_mtus[0], self.link_mtus[last]];
        // IPv6 on the tunnel needs a tunnel MTU of 1280: 1400 leaves room for any overhead.
        let v6 = self.v6_overlay && (self.mtu.is_some() || mtus.iter().all(|m| *m >= 1400));
        let mut s = String::from("name: chain\nnodes:\n");
        s.push_str("  h0:\n    routes: [{to: default, via: 10.0.0.2}, {to: default6, via: \"fd00:0::2\"}]\n");
        for r in &names[1..names.len() - 1] {
            s.push_str(&format!("  {r}: {{forwarding: true}}\n"));
        }
        s.push_str(&format!(
            "  h1:\n    routes: [{{to: default, via: 10.0.{last}.1}}, {{to: default6, via: \"fd00:{last}::1\"}}]\n"
        ));
        s.push_str("links:\n");
        for i in 0..names.len() - 1 {
            s.push_str(&format!(
                "  - endpoints: [\"{}:e{i}\", \"{}:w{i}\"]\n    addresses: [[\"10.0.{i}.1/24\", \"fd00:{i}::1/64\"], [\"10.0.{i}.2/24\", \"fd00:{i}::2/64\"]]\n    mtu: {}\n",
                names[i], names[i + 1], self.link_mtus[i]
            ));
        }
        let (la, lb) = if self.kind.starts_with("ip6") {
            ("\"fd00:0::1\"".to_owned(), format!("\"fd00:{last}::2\""))
        } else {
            ("10.0.0.1".to_owned(), format!("10.0.{last}.2"))
        };
        s.push_str(&format!(
            "tunnels:\n  - name: t0\n    type: {}\n",
            self.kind
        ));
        if let Some(k) = self.key {
            s.push_str(&format!("    key: {k}\n"));
        }
        s.push_str(&format!(
            "    checksum: {}\n    sequence: {}\n",
            self.checksum, self.sequence
        ));
        if let Some(t) = self.ttl {
            s.push_str(&format!("    ttl: {t}\n"));
        }
        if let Some(p) = self.pmtudisc {
            s.push_str(&format!("    pmtudisc: {p}\n"));
        }
        if let Some(m) = self.mtu {
            s.push_str(&format!("    mtu: {m}\n"));
        }
        let overlay = |i: u8| {
            if v6 {
                format!("[192.168.0.{i}/30, \"fd50::{i}/64\"]")
            } else {
                format!("192.168.0.{i}/30")
            }
        };
        s.push_str(&format!(
            "    endpoints:\n      - {{node: h0, local: {la}, address: {}}}\n      - {{node: h1, local: {lb}, address: {}}}\n",
            overlay(1),
            overlay(2)
        ));
        s.push_str("checks:\n  - ping: {from: h0, to: 192.168.0.2}\n");
        (s, mtus)
    }
}

/// Values of the same type as `word`, to put in its place in a valid lab.
fn alternatives(word: &str) -> &'static [&'static str] {
    if word.parse::<std::net::IpAddr>().is_ok() {
        &[
            "10.0.0.1",
            "10.0.0.2",
            "10.0.1.1",
            "10.0.0.9",
            "fd00:0::2",
            "fd00:1::1",
            "fd00::9",
            "192.168.0.1",
        ]
    } else if word.contains('/') && !word.contains(':') || word.contains("::") {
        &[
            "10.0.0.0/24",
            "10.0.0.9/24",
            "10.0.1.2/24",
            "10.0.0.1/32",
            "fd00::9/64",
            "fd00:1::2/64",
            "192.168.0.1/30",
            "0.0.0.0/0",
        ]
    } else if word.parse::<u64>().is_ok() {
        &[
            "0", "1", "68", "1279", "1280", "1476", "9000", "65535", "65536",
        ]
    } else if word == "true" || word == "false" {
        &["true", "false"]
    } else if word.starts_with("gre") || word.starts_with("ip6gre") {
        &["gre", "gretap", "ip6gre", "ip6gretap"]
    } else if word.starts_with("default") {
        &["default", "default6"]
    } else if word.contains(':') {
        &["h0:e0", "h1:w0", "r1:e1", "r1:w0", "h0:e9", "h1:lo", "x:e0"]
    } else {
        &["h0", "h1", "r1", "r2", "x", "t0", "e0"]
    }
}

/// Replaces the `n`th value word (a run of letters, digits and `.:/_-`
/// after `: ` or a quote: not a key) of `text` with the `pick`th alternative.
fn replace_word(text: &str, n: usize, pick: usize) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || ".:/_-".contains(c);
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| is_word(c) && (text[..i].ends_with(": ") || text[..i].ends_with('"')))
        .map(|(i, _)| i)
        .collect();
    let start = starts[n % starts.len()];
    let end = text[start..]
        .find(|c: char| !is_word(c))
        .map_or(text.len(), |e| start + e);
    let alt = alternatives(&text[start..end]);
    format!(
        "{}{}{}",
        &text[..start],
        alt[pick % alt.len()],
        &text[end..]
    )
}

proptest! {
    #[test]
    fn any_text_is_an_error_or_a_topology(text in any::<String>()) {
        pipeline(&text);
    }

    #[test]
    fn any_bytes_are_an_error_or_a_topology(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        pipeline(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn edited_examples_never_panic(
        example in select(&EXAMPLES[..]),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        pipeline(&splice(example, &edits));
    }

    #[test]
    fn topologies_from_random_pieces_never_panic(text in random_lab()) {
        pipeline(&text);
    }

    #[test]
    fn chain_labs_with_a_changed_word_never_panic(
        c in chain(),
        changes in prop::collection::vec((any::<usize>(), any::<usize>()), 1..3),
    ) {
        let mut text = c.yaml().0;
        for (n, with) in changes {
            text = replace_word(&text, n, with);
        }
        pipeline(&text);
    }

    #[test]
    fn every_chain_lab_is_valid_and_its_plan_sound(c in chain()) {
        let (text, under) = c.yaml();
        let topo = topology::parse(&text, "chain.yaml").unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        if let Err(d) = validate(&topo) {
            panic!("{}\n{text}", validate::render("chain.yaml", &d));
        }
        let plan = plan::build(&topo, None);
        common::assert_plan_sound(&text, &plan);
        let ends: Vec<_> = plan.tunnels().map(|(e, _)| e.clone()).collect();
        prop_assert_eq!(ends.len(), 2);
        for (i, end) in ends.iter().enumerate() {
            prop_assert_eq!(end.kind.as_str(), c.kind);
            prop_assert_eq!((end.ikey, end.okey), (c.key, c.key));
            prop_assert_eq!((end.checksum, end.sequence), (c.checksum, c.sequence));
            prop_assert_eq!(end.ttl, c.ttl.unwrap_or(0));
            prop_assert_eq!(end.pmtudisc, c.pmtudisc.unwrap_or(true));
            let want = c.mtu.unwrap_or(under[i] - overhead(end.kind, &end.options()));
            prop_assert_eq!(end.mtu, want);
            prop_assert_eq!(end.kind.is_ipv6(), matches!(end.kind, TunnelKind::Ip6gre | TunnelKind::Ip6gretap));
        }
        prop_assert_eq!((ends[0].local, ends[0].remote), (ends[1].remote, ends[1].local));
        common::assert_valid_shell("generated", &plan.script());
    }
}
