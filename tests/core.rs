//! The pure core through the library API: parse, validate, plan, script.

mod common;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use common::{TempDir, assert_valid_shell, bad_files, expect_of, good_files, root, write_huge};
use grelab::model::TunnelKind;
use grelab::model::{EndOptions, IpNet};
use grelab::plan::{self, Plan, Step};
use grelab::topology::{self, Loc, Topology};
use grelab::validate::{self, validate};

/// Parses `text`, panicking with grelab's own message if it does not parse.
fn parse(text: &str) -> Topology {
    topology::parse(text, "t.yaml").unwrap_or_else(|e| panic!("does not parse: {e:#}\n{text}"))
}

/// Parses and validates `text`, then builds its plan.
fn plan_of(text: &str, prefix: Option<&str>) -> Plan {
    let topo = parse(text);
    if let Err(d) = validate(&topo) {
        panic!(
            "does not validate:\n{}\n{text}",
            validate::render("t.yaml", &d)
        );
    }
    plan::build(&topo, prefix)
}

/// Asserts that the bad file `file` fails with exactly its one expected error.
fn check_bad(file: &str) {
    let e = expect_of(&root().join("tests/bad").join(file));
    let text = std::fs::read_to_string(&e.path).unwrap();
    match topology::parse(&text, file) {
        Err(err) => {
            let msg = format!("{err:#}");
            let at = format!("{file}:{}:{}: error: ", e.line, e.col);
            assert!(
                msg.starts_with(&at),
                "{file}: parse error should start with `{at}`:\n{msg}"
            );
            let first = msg.lines().next().unwrap();
            assert!(
                first.contains(&e.fragment),
                "{file}: parse error should say `{}`:\n{msg}",
                e.fragment
            );
        }
        Ok(topo) => {
            let diags = validate(&topo).expect_err("the file validates, but should not");
            let shown = validate::render(file, &diags);
            assert_eq!(
                diags.len(),
                1,
                "{file}: want exactly one error, got:\n{shown}"
            );
            let d = &diags[0];
            assert_eq!(
                d.loc,
                Loc {
                    line: e.line,
                    col: e.col
                },
                "{file}: wrong location:\n{shown}"
            );
            assert!(
                d.message.contains(&e.fragment),
                "{file}: want `{}` in:\n{shown}",
                e.fragment
            );
            assert!(
                !d.message.contains('\n'),
                "{file}: one-line message:\n{shown}"
            );
        }
    }
}

macro_rules! bad {
    ($($test:ident: $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_bad($file);
            }
        )*
        /// The files that have a test above.
        const BAD_TESTED: &[&str] = &[$($file),*];
    };
}

mod bad {
    use super::check_bad;
    bad! {
    bridge_address_overlaps: "bridge-address-overlaps.yaml",
    bridge_mtu_below_68: "bridge-mtu-below-68.yaml",
    bridge_name_invalid: "bridge-name-invalid.yaml",
    bridge_name_taken: "bridge-name-taken.yaml",
    bridge_port_gre: "bridge-port-gre.yaml",
    bridge_port_in_two_bridges: "bridge-port-in-two-bridges.yaml",
    bridge_port_other_node: "bridge-port-other-node.yaml",
    bridge_port_unknown: "bridge-port-unknown.yaml",
    bridge_port_with_address: "bridge-port-with-address.yaml",
    check_timeout_nan: "check-timeout-nan.yaml",
    checksum_one_end: "checksum-one-end.yaml",
    duplicate_address_across_nodes: "duplicate-address-across-nodes.yaml",
    duplicate_iface_link_and_tunnel: "duplicate-iface-link-and-tunnel.yaml",
    duplicate_node: "duplicate-node.yaml",
    duplicate_tunnel_identity: "duplicate-tunnel-identity.yaml",
    endpoint_without_colon: "endpoint-without-colon.yaml",
    exec_exit_out_of_range: "exec-exit-out-of-range.yaml",
    gre_with_ipv6_local: "gre-with-ipv6-local.yaml",
    iface_name_lo: "iface-name-lo.yaml",
    iface_name_shell_metachar: "iface-name-shell-metachar.yaml",
    iface_name_slash: "iface-name-slash.yaml",
    iface_name_too_long: "iface-name-too-long.yaml",
    impair_jitter_above_delay: "impair-jitter-above-delay.yaml",
    impair_loss_above_100: "impair-loss-above-100.yaml",
    impair_mixed_forms: "impair-mixed-forms.yaml",
    impair_rate_unit: "impair-rate-unit.yaml",
    impair_reorder_without_delay: "impair-reorder-without-delay.yaml",
    impair_tunnel_unknown_end: "impair-tunnel-unknown-end.yaml",
    impair_unknown_end: "impair-unknown-end.yaml",
    impair_unknown_parameter: "impair-unknown-parameter.yaml",
    invalid_ip: "invalid-ip.yaml",
    invalid_prefix_length: "invalid-prefix-length.yaml",
    ip6gre_with_ipv4_local: "ip6gre-with-ipv4-local.yaml",
    ipv6_prefix_length: "ipv6-prefix-length.yaml",
    lab_name_invalid: "lab-name-invalid.yaml",
    link_ends_different_subnets: "link-ends-different-subnets.yaml",
    link_mtu_above_65535: "link-mtu-above-65535.yaml",
    link_mtu_below_1280_ipv6: "link-mtu-below-1280-ipv6.yaml",
    link_mtu_below_68: "link-mtu-below-68.yaml",
    link_one_endpoint: "link-one-endpoint.yaml",
    link_three_endpoints: "link-three-endpoints.yaml",
    mismatched_keys: "mismatched-keys.yaml",
    missing_name: "missing-name.yaml",
    multicast_group_not_multicast: "multicast-group-not-multicast.yaml",
    multicast_unknown_dev: "multicast-unknown-dev.yaml",
    multicast_unknown_node: "multicast-unknown-node.yaml",
    no_nodes: "no-nodes.yaml",
    node_name_with_slash: "node-name-with-slash.yaml",
    only_a_comment: "only-a-comment.yaml",
    overlapping_subnets_on_node: "overlapping-subnets-on-node.yaml",
    ping_count_too_large: "ping-count-too-large.yaml",
    ping_count_zero: "ping-count-zero.yaml",
    ping_expect_bad_bound: "ping-expect-bad-bound.yaml",
    ping_interval_too_short: "ping-interval-too-short.yaml",
    ping_target_outside_lab: "ping-target-outside-lab.yaml",
    prefix_too_long: "prefix-too-long.yaml",
    route_destination_host_bits: "route-destination-host-bits.yaml",
    route_gateway_not_connected: "route-gateway-not-connected.yaml",
    route_gateway_other_family: "route-gateway-other-family.yaml",
    route_gateway_own_address: "route-gateway-own-address.yaml",
    route_given_twice: "route-given-twice.yaml",
    sequence_one_end: "sequence-one-end.yaml",
    software_bad_env: "software-bad-env.yaml",
    software_duplicate_program: "software-duplicate-program.yaml",
    software_empty_cmd: "software-empty-cmd.yaml",
    software_file_relative: "software-file-relative.yaml",
    software_file_under_proc: "software-file-under-proc.yaml",
    software_unknown_key: "software-unknown-key.yaml",
    sysctl_key_shell_metachar: "sysctl-key-shell-metachar.yaml",
    sysctl_not_net: "sysctl-not-net.yaml",
    tcp_port_zero: "tcp-port-zero.yaml",
    tcp_target_outside_lab: "tcp-target-outside-lab.yaml",
    timeout_zero: "timeout-zero.yaml",
    ttl_without_pmtudisc: "ttl-without-pmtudisc.yaml",
    ttl_zero: "ttl-zero.yaml",
    tunnel_both_ends_one_node: "tunnel-both-ends-one-node.yaml",
    tunnel_far_end_unreachable: "tunnel-far-end-unreachable.yaml",
    tunnel_local_not_own_address: "tunnel-local-not-own-address.yaml",
    tunnel_mtu_above_65535: "tunnel-mtu-above-65535.yaml",
    tunnel_mtu_below_minimum: "tunnel-mtu-below-minimum.yaml",
    tunnel_name_invalid: "tunnel-name-invalid.yaml",
    type_mtu_string: "type-mtu-string.yaml",
    type_name_list: "type-name-list.yaml",
    unknown_check_kind: "unknown-check-kind.yaml",
    unknown_node_in_check: "unknown-node-in-check.yaml",
    unknown_node_in_link: "unknown-node-in-link.yaml",
    unknown_node_in_tunnel: "unknown-node-in-tunnel.yaml",
    unknown_node_key: "unknown-node-key.yaml",
    unknown_top_level_key: "unknown-top-level-key.yaml",
    unknown_tunnel_key: "unknown-tunnel-key.yaml",
    unknown_tunnel_type: "unknown-tunnel-type.yaml",
    within_negative: "within-negative.yaml",
    within_not_a_duration: "within-not-a-duration.yaml",
    within_too_long: "within-too-long.yaml",
    yaml_bad_indentation: "yaml-bad-indentation.yaml",
    yaml_duplicate_key: "yaml-duplicate-key.yaml",
    yaml_tab_indentation: "yaml-tab-indentation.yaml",
    yaml_unclosed_bracket: "yaml-unclosed-bracket.yaml",
    }

    #[test]
    fn every_bad_file_has_a_test() {
        let on_disk: Vec<String> = super::bad_files().iter().map(|e| e.name()).collect();
        let tested: Vec<String> = BAD_TESTED.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            on_disk, tested,
            "tests/bad and the bad! list in tests/core.rs differ"
        );
        assert!(on_disk.len() >= 34, "only {} bad files", on_disk.len());
    }
}

// ---- Inputs that are no committed file: empty, binary, huge. ----

#[test]
fn empty_and_blank_text_is_refused_with_a_hint() {
    for text in [
        "",
        "\n\n",
        "   \n\t\n",
        "# only\n# comments\n",
        "---\n",
        "---\n# c\n...\n",
    ] {
        let err = format!("{:#}", topology::parse(text, "e.yaml").expect_err(text));
        assert!(
            err.starts_with("e.yaml:1:1: error: the file is empty"),
            "{text:?}: {err}"
        );
        assert!(err.contains("grelab init"), "{text:?}: {err}");
    }
}

#[test]
fn control_characters_are_a_located_parse_error() {
    let err = format!(
        "{:#}",
        topology::parse("name: x\u{0}\nnodes: {a: {}}\n", "g.yaml").unwrap_err()
    );
    assert!(err.starts_with("g.yaml:1:8: error: "), "{err}");
    let err = format!(
        "{:#}",
        topology::parse("\u{7f}ELF\u{2}\u{1}", "g.yaml").unwrap_err()
    );
    assert!(err.starts_with("g.yaml:1:1: error: "), "{err}");
}

#[test]
fn read_file_refuses_binary_huge_and_endless_input() {
    let dir = TempDir::new("core-read");
    let bin = dir.path().join("bin.yaml");
    std::fs::write(&bin, b"name: x\n\xff\xfe\x00garbage").unwrap();
    let err = format!("{:#}", topology::read_file(&bin).unwrap_err());
    assert!(
        err.contains("not UTF-8") && err.contains("offset 8"),
        "{err}"
    );
    assert_eq!(
        grelab::error::exit_code(&topology::read_file(&bin).unwrap_err()),
        2
    );

    let huge = write_huge(dir.path());
    let err = format!("{:#}", topology::read_file(&huge).unwrap_err());
    assert!(err.contains("larger than 8 MiB"), "{err}");

    let err = format!(
        "{:#}",
        topology::read_file(Path::new("/dev/zero")).unwrap_err()
    );
    assert!(err.contains("larger than 8 MiB"), "{err}");

    // Exactly at the cap is still read.
    let at_cap = dir.path().join("cap.yaml");
    std::fs::write(&at_cap, vec![b'#'; topology::MAX_FILE_BYTES as usize]).unwrap();
    assert_eq!(
        topology::read_file(&at_cap).unwrap().len() as u64,
        topology::MAX_FILE_BYTES
    );

    let err = topology::read_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(format!("{err:#}").contains("grelab init"), "{err:#}");
    assert_eq!(grelab::error::exit_code(&err), 2);
}

// ---- Many errors at once. ----

#[test]
fn every_error_is_reported_in_file_order() {
    let text = std::fs::read_to_string(root().join("tests/many-errors.yaml")).unwrap();
    let diags = validate(&parse(&text)).unwrap_err();
    let got: Vec<(u64, u64)> = diags.iter().map(|d| (d.loc.line, d.loc.col)).collect();
    // The file's `# error at L:C` comments say where each error is.
    let want: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| l.split_once("# error at ").map(|x| x.1))
        .flat_map(|list| list.split(", "))
        .map(|lc| {
            let (l, c) = lc.split_once(':').unwrap();
            (l.trim().parse().unwrap(), c.trim().parse().unwrap())
        })
        .collect();
    assert!(
        want.len() >= 10,
        "tests/many-errors.yaml should mark at least 10 errors"
    );
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(
        got,
        sorted,
        "\n{}",
        validate::render("many-errors.yaml", &diags)
    );
    let rendered = validate::render("many-errors.yaml", &diags);
    assert!(
        rendered.ends_with(&format!("{} errors in many-errors.yaml", want.len())),
        "{rendered}"
    );
}

#[test]
fn render_counts_one_error_in_the_singular() {
    let diags = validate(&parse("name: x\nnodes: {}\n")).unwrap_err();
    let out = validate::render("f.yaml", &diags);
    assert_eq!(
        out,
        "f.yaml:1:7: error: the lab has no nodes\n  hint: add at least one node under `nodes:`\n1 error in f.yaml"
    );
}

#[test]
fn empty_mappings_may_be_written_as_null() {
    // `nodes:` and `sysctls:` with nothing after them are empty, not type errors.
    let diags = validate(&parse("name: x\nnodes:\n")).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].message, "the lab has no nodes");
    let topo = parse("name: x\nnodes:\n  a: {sysctls: }\n");
    assert!(topo.node("a").unwrap().sysctls.0.is_empty());
    validate(&topo).unwrap();
}

// ---- MTU derivation. ----

/// A two-node lab with one tunnel of `kind` over a link of `link_mtu`.
fn mtu_lab(kind: &str, link_mtu: u32, opts: &str) -> String {
    let (la, lb) = if kind.starts_with("ip6") {
        ("\"fd00::1\"", "\"fd00::2\"")
    } else {
        ("10.0.0.1", "10.0.0.2")
    };
    format!(
        "name: mtu
nodes: {{a: {{}}, b: {{}}}}
links:
  - endpoints: [\"a:e0\", \"b:e0\"]
    addresses: [[\"10.0.0.1/24\", \"fd00::1/64\"], [\"10.0.0.2/24\", \"fd00::2/64\"]]
    mtu: {link_mtu}
tunnels:
  - name: t0
    type: {kind}
    {opts}
    endpoints:
      - {{node: a, local: {la}}}
      - {{node: b, local: {lb}}}
"
    )
}

fn tunnel_mtus(plan: &Plan) -> Vec<u32> {
    plan.tunnels().map(|(end, _)| end.mtu).collect()
}

#[test]
fn tunnel_mtu_is_underlay_minus_overhead_for_every_kind_and_option() {
    // (kind, link MTU, options, expected tunnel MTU), worked out by hand:
    // outer IPv4 20 / IPv6 40, GRE 4, +4 each for key, checksum, sequence,
    // +14 inner Ethernet for the tap kinds; an explicit mtu wins.
    let all = "{key: 1, checksum: true, sequence: true}";
    let cases: &[(&str, u32, &str, u32)] = &[
        ("gre", 1500, "{}", 1476),
        ("gre", 1500, "{key: 7}", 1472),
        ("gre", 1500, "{checksum: true}", 1472),
        ("gre", 1500, "{sequence: true}", 1472),
        ("gre", 1500, "{key: 7, checksum: true}", 1468),
        ("gre", 1500, all, 1464),
        ("gretap", 1500, "{}", 1462),
        ("gretap", 1500, "{key: 7}", 1458),
        ("gretap", 1500, all, 1450),
        ("ip6gre", 1500, "{}", 1456),
        ("ip6gre", 1500, "{key: 7}", 1452),
        ("ip6gre", 1500, all, 1444),
        ("ip6gretap", 1500, "{}", 1442),
        ("ip6gretap", 1500, "{checksum: true}", 1438),
        ("ip6gretap", 1500, all, 1430),
        ("gre", 9000, "{}", 8976),
        ("gretap", 9000, "{}", 8962),
        ("ip6gre", 9000, "{}", 8956),
        ("ip6gretap", 9000, all, 8930),
        ("gre", 1400, "{}", 1376),
        ("gre", 1400, all, 1364),
        ("gretap", 1400, "{sequence: true}", 1358),
        ("ip6gre", 1400, "{}", 1356),
        ("ip6gretap", 1400, "{}", 1342),
        ("gre", 1500, "{mtu: 1300}", 1300),
        (
            "ip6gretap",
            9000,
            "{key: 1, checksum: true, sequence: true, mtu: 1400}",
            1400,
        ),
        ("gretap", 1400, "{mtu: 1500}", 1500),
    ];
    let mut failures = String::new();
    for &(kind, link, opts, want) in cases {
        // Flow-mapping options become block lines of the tunnel.
        let lines = opts
            .trim_matches(|c| c == '{' || c == '}')
            .split(", ")
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n    ");
        let plan = plan_of(&mtu_lab(kind, link, &lines), None);
        let got = tunnel_mtus(&plan);
        if got != [want, want] {
            writeln!(
                failures,
                "{kind} over {link} with {opts}: want {want} on both ends, got {got:?}"
            )
            .unwrap();
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn only_the_sending_key_costs_bytes() {
    // a sends key 5 (okey), b only expects it: a's header is 4 bytes longer.
    let text = mtu_lab("gre", 1500, "")
        .replace(
            "{node: a, local: 10.0.0.1}",
            "{node: a, local: 10.0.0.1, okey: 5}",
        )
        .replace(
            "{node: b, local: 10.0.0.2}",
            "{node: b, local: 10.0.0.2, ikey: 5}",
        );
    let plan = plan_of(&text, None);
    assert_eq!(tunnel_mtus(&plan), [1472, 1476]);
    let ends: Vec<_> = plan.tunnels().map(|(e, _)| e.clone()).collect();
    assert_eq!((ends[0].ikey, ends[0].okey), (None, Some(5)));
    assert_eq!((ends[1].ikey, ends[1].okey), (Some(5), None));
    assert_eq!(ends[0].overhead_note(), "IPv4 20 + GRE 8 with key");
    assert_eq!(ends[1].overhead_note(), "IPv4 20 + GRE 4");
}

#[test]
fn overhead_note_names_every_part() {
    let plan = plan_of(
        &mtu_lab(
            "ip6gretap",
            1500,
            "key: 1\n    checksum: true\n    sequence: true",
        ),
        None,
    );
    let (end, _) = plan.tunnels().next().unwrap();
    assert_eq!(
        end.overhead_note(),
        "IPv6 40 + GRE 16 with checksum, key, sequence + inner Ethernet 14"
    );
    assert!(plan.script().contains("# t0 on a: MTU 1430 = underlay - (IPv6 40 + GRE 16 with checksum, key, sequence + inner Ethernet 14)\n"));
}

#[test]
fn overhead_function_matches_the_kernel_formulas() {
    let none = EndOptions {
        ikey: None,
        okey: None,
        checksum: false,
        sequence: false,
    };
    let all = EndOptions {
        ikey: Some(1),
        okey: Some(1),
        checksum: true,
        sequence: true,
    };
    let ikey_only = EndOptions {
        ikey: Some(1),
        ..none
    };
    assert_eq!(grelab::model::overhead(TunnelKind::Gre, &none), 24);
    assert_eq!(grelab::model::overhead(TunnelKind::Gre, &ikey_only), 24);
    assert_eq!(grelab::model::overhead(TunnelKind::Gre, &all), 36);
    assert_eq!(grelab::model::overhead(TunnelKind::Gretap, &none), 38);
    assert_eq!(grelab::model::overhead(TunnelKind::Ip6gre, &none), 44);
    assert_eq!(grelab::model::overhead(TunnelKind::Ip6gretap, &none), 58);
    assert_eq!(grelab::model::overhead(TunnelKind::Ip6gretap, &all), 70);
}

#[test]
fn ipv6_overlay_needs_a_tunnel_mtu_of_1280() {
    // gre over 1304 gives exactly 1280: fine; over 1303 it gives 1279: refused.
    let lab = |link: u32| {
        mtu_lab("gre", link, "").replace(
            "{node: a, local: 10.0.0.1}",
            "{node: a, local: 10.0.0.1, address: \"fd01::1/64\"}",
        )
    };
    assert_eq!(tunnel_mtus(&plan_of(&lab(1304), None)), [1280, 1280]);
    let diags = validate(&parse(&lab(1303))).unwrap_err();
    assert_eq!(diags.len(), 1, "{}", validate::render("t.yaml", &diags));
    assert_eq!(
        diags[0].message,
        "tunnel `t0` MTU 1279 on `a` is below the IPv6 minimum 1280"
    );
    // The end without IPv6 only needs IPv4's 68.
    assert!(!diags[0].message.contains("on `b`"));
}

// ---- IpNet. ----

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipnet_contains_edges() {
    assert!(net("0.0.0.0/0").contains(&ip("255.255.255.255")));
    assert!(net("10.1.2.3/0").contains(&ip("0.0.0.0")));
    assert!(
        !net("0.0.0.0/0").contains(&ip("::")),
        "a v4 /0 holds no IPv6 address"
    );
    assert!(net("::/0").contains(&ip("ffff::1")));
    assert!(
        !net("::/0").contains(&ip("0.0.0.0")),
        "::/0 holds no IPv4 address"
    );
    assert!(
        net("::/0").contains(&ip("::ffff:10.0.0.1")),
        "a v4-mapped address is IPv6"
    );
    assert!(!net("10.0.0.0/8").contains(&ip("::ffff:10.0.0.1")));
    assert!(net("10.0.0.1/32").contains(&ip("10.0.0.1")));
    assert!(!net("10.0.0.1/32").contains(&ip("10.0.0.0")));
    assert!(!net("10.0.0.1/32").contains(&ip("10.0.0.2")));
    assert!(net("fd00::1/128").contains(&ip("fd00::1")));
    assert!(!net("fd00::1/128").contains(&ip("fd00::")));
    assert!(net("10.0.0.77/24").contains(&ip("10.0.0.255")));
    assert!(!net("10.0.0.77/24").contains(&ip("10.0.1.0")));
    assert!(net("10.0.0.0/31").contains(&ip("10.0.0.1")));
    assert!(!net("10.0.0.0/31").contains(&ip("10.0.0.2")));
    assert!(net("fd00::/127").contains(&ip("fd00::1")));
    assert!(!net("fd00::/127").contains(&ip("fd00::2")));
    assert!(net("8000::/1").contains(&ip("ffff::")));
    assert!(!net("8000::/1").contains(&ip("7fff::")));
    assert!(net("128.0.0.0/1").contains(&ip("200.0.0.1")));
    assert!(!net("128.0.0.0/1").contains(&ip("127.255.255.255")));
}

#[test]
fn ipnet_overlaps_edges() {
    let overlaps = |a: &str, b: &str| {
        let (a, b) = (net(a), net(b));
        assert_eq!(
            a.overlaps(&b),
            b.overlaps(&a),
            "overlaps must be symmetric: {a} {b}"
        );
        a.overlaps(&b)
    };
    assert!(overlaps("0.0.0.0/0", "10.0.0.1/32"));
    assert!(overlaps("::/0", "fd00::1/128"));
    assert!(!overlaps("0.0.0.0/0", "::/0"), "families never overlap");
    assert!(!overlaps("0.0.0.0/0", "::ffff:0.0.0.0/96"));
    assert!(overlaps("10.0.0.1/24", "10.0.0.2/24"));
    assert!(overlaps("10.0.0.1/32", "10.0.0.1/32"));
    assert!(!overlaps("10.0.0.1/32", "10.0.0.2/32"));
    assert!(overlaps("10.0.0.0/8", "10.255.0.1/30"));
    assert!(!overlaps("10.0.0.0/25", "10.0.0.128/25"), "adjacent halves");
    assert!(overlaps("10.0.0.0/24", "10.0.0.128/25"));
    assert!(!overlaps("fd00::/64", "fd00:0:0:1::/64"));
    assert!(overlaps("fd00::/48", "fd00:0:0:1::1/128"));
    assert!(!overlaps("fd00::1/128", "fd00::2/128"));
}

#[test]
fn ipnet_parse_display_and_network() {
    for s in [
        "10.0.0.1/24",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "fd00::1/64",
        "::/0",
        "::1/128",
    ] {
        assert_eq!(net(s).to_string(), s);
    }
    assert_eq!(net("10.1.2.3/16").network(), ip("10.1.0.0"));
    assert_eq!(net("10.1.2.3/0").network(), ip("0.0.0.0"));
    assert_eq!(net("10.1.2.3/32").network(), ip("10.1.2.3"));
    assert_eq!(net("fd00:1:2:3:4::5/64").network(), ip("fd00:1:2:3::"));
    assert_eq!(net("fd00::5/128").network(), ip("fd00::5"));
    assert_eq!(net("ffff::1/0").network(), ip("::"));
    let err = |s: &str| s.parse::<IpNet>().unwrap_err();
    assert!(err("10.0.0.1").contains("needs a prefix length"));
    assert!(err("10.0.0.1/33").contains("(0..=32)"));
    assert!(err("fd00::1/129").contains("(0..=128)"));
    assert!(err("10.0.0.1/-1").contains("not a prefix length"));
    assert!(err("10.0.0.1/").contains("not a prefix length"));
    assert!(err("10.0.0/24").contains("is not an IP address"));
    assert!(err("/24").contains("is not an IP address"));
    assert!(err("host/24").contains("is not an IP address"));
}

// ---- Plans of the example topologies. ----

/// Compares `actual` with the committed snapshot, or rewrites it when
/// UPDATE_SNAPSHOTS=1; returns a readable difference, if any.
fn snapshot(name: &str, actual: &str) -> Option<String> {
    let path = root().join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return Some(format!(
                "{}: {e} (UPDATE_SNAPSHOTS=1 writes it)",
                path.display()
            ));
        }
    };
    if expected == actual {
        return None;
    }
    let (exp, act): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let line = (0..exp.len().max(act.len()))
        .find(|&i| exp.get(i) != act.get(i))
        .unwrap_or(exp.len());
    Some(format!(
        "tests/snapshots/{name} differs from the plan at line {}:\n  snapshot: {:?}\n  plan:     {:?}\n(review, then accept with UPDATE_SNAPSHOTS=1 cargo test --test core)\n--- full plan ---\n{actual}",
        line + 1,
        exp.get(line).copied().unwrap_or("<end of file>"),
        act.get(line).copied().unwrap_or("<end of file>"),
    ))
}

fn example_plans() -> Vec<(String, Plan)> {
    good_files()
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, plan_of(&std::fs::read_to_string(p).unwrap(), None))
        })
        .collect()
}

#[test]
fn example_scripts_match_their_snapshots() {
    let mut failures = Vec::new();
    for (stem, plan) in example_plans() {
        failures.extend(snapshot(&format!("{stem}.sh"), &plan.script()));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    // No stale snapshot without a topology.
    for entry in std::fs::read_dir(root().join("tests/snapshots")).unwrap() {
        let p = entry.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy();
        assert!(
            root()
                .join("topologies")
                .join(format!("{stem}.yaml"))
                .exists(),
            "{} has no topology",
            p.display()
        );
    }
}

#[test]
fn example_scripts_are_valid_shell() {
    for (stem, plan) in example_plans() {
        let script = plan.script();
        assert!(script.starts_with("#!/bin/sh\n"), "{stem}");
        assert!(
            script.contains("\nset -e\n"),
            "{stem}: a failing command must stop the script"
        );
        assert_valid_shell(&stem, &script);
    }
}

#[test]
fn sysctl_values_are_one_shell_word() {
    let text = "name: q
nodes:
  a:
    sysctls:
      net.ipv4.ping_group_range: \"0 2147483647\"
      net.core.x: \"it's $(reboot)\"
      net.ipv4.ip_forward: true
";
    let script = plan_of(text, None).script();
    assert_valid_shell("sysctl quoting", &script);
    // Run only the sysctl lines, with printf standing in for sysctl.
    let probe: String = script
        .lines()
        .filter(|l| l.contains("sysctl -qw"))
        .map(|l| l.replace("ip netns exec a sysctl -qw", "printf '%s|\\n'") + "\n")
        .collect();
    let out = Command::new("sh").arg("-c").arg(&probe).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "net.ipv4.ping_group_range=0 2147483647|\nnet.core.x=it's $(reboot)|\nnet.ipv4.ip_forward=1|\n",
        "script lines:\n{probe}"
    );
}

#[test]
fn plan_steps_come_in_a_workable_order() {
    for (stem, plan) in example_plans() {
        common::assert_plan_sound(&stem, &plan);
    }
}

#[test]
fn bridges_and_multicast_flags_in_the_plan() {
    let text = std::fs::read_to_string(root().join("topologies/l2-islands.yaml")).unwrap();
    let plan = plan_of(&text, Some("p-"));
    let of = |pred: fn(&Step) -> bool| -> Vec<Step> {
        plan.steps.iter().filter(|s| pred(s)).cloned().collect()
    };
    let bridges = of(|s| matches!(s, Step::Bridge { .. }));
    assert_eq!(bridges.len(), 2, "{bridges:?}");
    let Step::Bridge { ns, name, mtu, mac } = &bridges[0] else {
        unreachable!()
    };
    assert_eq!((ns.as_str(), name.as_str(), *mtu), ("p-sw1", "br0", None));
    // Fixed per lab, node and name, like the veths' MACs; locally administered.
    assert_eq!(mac.0[0], 0x02);
    assert!(!matches!(&bridges[1], Step::Bridge { mac: m, .. } if m == mac));
    let masters = of(|s| matches!(s, Step::Master { .. }));
    assert_eq!(
        masters[..2],
        [
            Step::Master {
                ns: "p-sw1".into(),
                dev: "lan0".into(),
                master: "br0".into()
            },
            Step::Master {
                ns: "p-sw1".into(),
                dev: "gt0".into(),
                master: "br0".into()
            }
        ]
    );
    assert!(plan.steps.contains(&Step::Up {
        ns: "p-sw2".into(),
        dev: "br0".into()
    }));
    let multicast = of(|s| matches!(s, Step::Multicast { .. }));
    assert_eq!(
        multicast,
        ["p-sw1", "p-sw2"].map(|ns| Step::Multicast {
            ns: ns.into(),
            dev: "gt0".into(),
            on: true
        })
    );
    let script = plan.script();
    assert!(
        script.contains("ip -n p-sw1 link add br0 address "),
        "{script}"
    );
    assert!(
        script.contains(" type bridge mcast_snooping 0\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-sw2 link set gt0 master br0\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-sw1 addr add 10.1.0.1/24 dev br0\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-sw1 link set gt0 multicast on\n"),
        "{script}"
    );
    common::assert_valid_shell("l2-islands", &script);

    // `multicast: false` takes the flag off both ends, on any tunnel type;
    // a bridge's MTU is passed on when given.
    let off = text.replace("multicast: true", "multicast: false").replace(
        "addresses: [10.1.0.1/24]}",
        "addresses: [10.1.0.1/24], mtu: 1400}",
    );
    let plan = plan_of(&off, None);
    let script = plan.script();
    assert!(
        script.contains("ip -n sw1 link set gt0 multicast off\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n sw2 link set gt0 multicast off\n"),
        "{script}"
    );
    assert!(
        script.contains(" type bridge mcast_snooping 0\nip -n sw1 link set br0 mtu 1400\n"),
        "{script}"
    );
    let basic = plan_of(
        &std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap(),
        None,
    );
    assert!(
        basic
            .script()
            .contains("ip -n host1 link set tun0 multicast on\n")
    );
}

#[test]
fn basic_plan_in_detail() {
    let plan = plan_of(
        &std::fs::read_to_string(root().join("topologies/basic.yaml")).unwrap(),
        None,
    );
    assert_eq!(plan.lab, "basic");
    assert_eq!(
        plan.namespaces().collect::<Vec<_>>(),
        ["host1", "internet", "host2"]
    );
    assert_eq!(
        plan.namespaces().rev().collect::<Vec<_>>(),
        ["host2", "internet", "host1"]
    );
    assert_eq!(plan.ns_of("internet"), Some("internet"));
    assert_eq!(plan.ns_of("nope"), None);
    let ends: Vec<_> = plan.tunnels().collect();
    assert_eq!(ends.len(), 2);
    let (a, b) = (&ends[0].0, &ends[1].0);
    assert_eq!(
        (a.netns.as_str(), a.local, a.remote),
        ("host1", ip("172.16.10.2"), ip("152.16.10.2"))
    );
    assert_eq!(
        (b.netns.as_str(), b.local, b.remote),
        ("host2", ip("152.16.10.2"), ip("172.16.10.2"))
    );
    assert_eq!(
        (a.kind, a.mtu, a.ttl, a.pmtudisc),
        (TunnelKind::Gre, 1476, 255, true)
    );
    assert_eq!(ends[0].1, grelab::model::Backend::Auto);
    assert_eq!(
        plan.steps
            .iter()
            .filter(|s| matches!(s, Step::Sysctl { .. }))
            .collect::<Vec<_>>(),
        [&Step::Sysctl {
            ns: "internet".into(),
            key: "net.ipv4.ip_forward".into(),
            value: "1".into()
        }]
    );
    assert_eq!(plan.checks.len(), 1);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        json["steps"][0],
        serde_json::json!({"step": "namespace", "ns": "host1"})
    );
}

#[test]
fn prefix_renames_namespaces_and_lab_only() {
    let text = std::fs::read_to_string(root().join("topologies/keyed.yaml")).unwrap();
    let plan = plan_of(&text, Some("ci1-"));
    assert_eq!(plan.lab, "ci1-keyed");
    assert_eq!(
        plan.namespaces().collect::<Vec<_>>(),
        ["ci1-host1", "ci1-internet", "ci1-host2"]
    );
    assert!(plan.steps.iter().all(|s| s.ns().starts_with("ci1-")));
    for (end, _) in plan.tunnels() {
        assert!(
            end.netns.starts_with("ci1-") && !end.name.starts_with("ci1-"),
            "{end:?}"
        );
    }
    let script = plan.script();
    assert!(
        script.contains("ip -n ci1-host1 link add veth0 address 02:")
            && script.contains(" type veth peer name veth1 address 02:")
            && script.contains(" netns ci1-internet\n"),
        "{script}"
    );
    assert!(
        !script.contains(" host1 "),
        "unprefixed namespace left in:\n{script}"
    );
    // A prefix in the file is used when none is given, and the argument wins over it.
    let with_file_prefix = text.replace("name: keyed", "name: keyed\nprefix: f-");
    assert_eq!(
        plan_of(&with_file_prefix, None).ns_of("host1"),
        Some("f-host1")
    );
    assert_eq!(
        plan_of(&with_file_prefix, Some("x-")).ns_of("host1"),
        Some("x-host1")
    );
}

#[test]
fn ipv6_routes_and_addresses_use_the_ipv6_forms() {
    let text = "name: six
nodes:
  a:
    routes: [{to: default6, via: \"fd00::2\"}, {to: \"fd10::/64\", via: \"fd00::2\"}]
  b:
    forwarding: true
links:
  - endpoints: [\"a:e0\", \"b:e0\"]
    addresses: [\"fd00::1/64\", \"fd00::2/64\"]
";
    let script = plan_of(text, None).script();
    assert!(
        script.contains("ip -6 -n a route add default via fd00::2\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -6 -n a route add fd10::/64 via fd00::2\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n a addr add fd00::1/64 dev e0 nodad\n"),
        "{script}"
    );
    assert!(
        script.contains("ip netns exec b sysctl -qw net.ipv6.conf.all.forwarding=1\n"),
        "{script}"
    );
    assert_valid_shell("six", &script);
}

#[test]
fn tunnel_options_reach_the_ip_command() {
    let text = mtu_lab(
        "gre",
        1500,
        "key: 9\n    checksum: true\n    sequence: true\n    tos: 16\n    pmtudisc: false",
    );
    let script = plan_of(&text, None).script();
    assert!(
        script.contains("ip -n a link add t0 mtu 1464 type gre local 10.0.0.1 remote 10.0.0.2 tos 0x10 ikey 9 okey 9 csum seq nopmtudisc\n"),
        "{script}"
    );
    let text = mtu_lab("ip6gretap", 1500, "ttl: 64\n    tos: 8");
    let script = plan_of(&text, None).script();
    assert!(
        script.contains("ip -n b link add t0 mtu 1442 type ip6gretap local fd00::2 remote fd00::1 hoplimit 64 tclass 0x08 encaplimit none\n"),
        "{script}"
    );
}

#[test]
fn a_route_destination_may_be_a_network_only() {
    // The kernel refuses `ip route add 10.5.0.1/16`; validation says so first.
    let text =
        std::fs::read_to_string(root().join("tests/bad/route-destination-host-bits.yaml")).unwrap();
    let d = &validate(&parse(&text)).unwrap_err()[0];
    assert_eq!(d.hint, "write the network: 10.5.0.0/16");
    plan_of(&text.replace("10.5.0.1/16", "10.5.0.0/16"), None);
}

#[test]
fn odd_yaml_is_an_error_not_a_panic() {
    for text in [
        "name: [[[[[[[[[[[[[[[[[[[[",
        "{",
        "}",
        ":",
        "- - - -",
        "!!binary x",
        "&a *a",
        "name: *x",
    ] {
        assert!(topology::parse(text, "odd.yaml").is_err(), "{text}");
    }
}

// ---- Impairments ----

#[test]
fn impairments_apply_to_both_ends_or_to_the_end_named_and_print_as_tc() {
    let plan = plan_of(
        r#"name: imp
nodes: {a: {}, b: {}}
links:
  - endpoints: ["a:e0", "b:e0"]
    addresses: ["10.0.0.1/24", "10.0.0.2/24"]
    impair: {delay: 20ms, jitter: 5ms, loss: 2%, rate: 10mbit}
  - endpoints: ["a:e1", "b:e1"]
    addresses: ["10.0.1.1/24", "10.0.1.2/24"]
    impair: {"b:e1": {loss: 0.5%}}
tunnels:
  - name: t0
    type: gre
    endpoints:
      - {node: a, local: 10.0.0.1, address: 192.168.0.1/30}
      - {node: b, local: 10.0.0.2, address: 192.168.0.2/30}
    impair: {a: {delay: 30ms}}
"#,
        None,
    );
    let got: Vec<String> = plan
        .impairments()
        .map(|(ns, dev, i)| format!("{ns}:{dev} {i}"))
        .collect();
    assert_eq!(
        got,
        [
            "a:e0 delay 20ms jitter 5ms loss 2% rate 10mbit",
            "b:e0 delay 20ms jitter 5ms loss 2% rate 10mbit",
            "b:e1 loss 0.5%",
            "a:t0 delay 30ms",
        ]
    );
    let script = plan.script();
    assert!(
        script.contains(
            "tc -n a qdisc add dev e0 root handle 1: netem delay 20ms 5ms loss 2%\n\
             tc -n a qdisc add dev e0 parent 1:1 handle 10: tbf rate 10mbit burst 24224 latency 100ms\n"
        ),
        "{script}"
    );
    assert!(script.contains("tc -n b qdisc add dev e1 root handle 1: netem loss 0.5%\n"));
    assert!(
        script.contains("where the kernel has sch_netem"),
        "{script}"
    );
    assert_valid_shell("impairments", &script);
}
