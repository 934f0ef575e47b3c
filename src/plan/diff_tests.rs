//! The diff of every kind of change, on plans built from YAML.

use super::*;
use crate::plan::build;

/// A hub with two spokes, a GRE tunnel to each; `edit` rewrites the text.
fn plan(edit: impl Fn(String) -> String) -> Plan {
    let text = edit(BASE.to_owned());
    let topo = crate::topology::parse(&text, "t.yaml").expect("parses");
    build(&topo, Some("p-"))
}

const BASE: &str = r#"name: d
nodes:
  hub:
    forwarding: true
    sysctls: {net.ipv4.conf.all.rp_filter: "0"}
  s1:
    routes: [{to: 10.9.0.0/16, via: 10.0.1.1}]
  s2:
    run:
      - name: sleeper
        cmd: [sleep, "100"]
links:
  - endpoints: ["hub:e1", "s1:e0"]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
  - endpoints: ["hub:e2", "s2:e0"]
    addresses: [10.0.2.1/24, 10.0.2.2/24]
tunnels:
  - name: t1
    type: gre
    endpoints:
      - {node: hub, local: 10.0.1.1, address: 192.168.1.1/30}
      - {node: s1, local: 10.0.1.2, address: 192.168.1.2/30}
  - name: t2
    type: gre
    endpoints:
      - {node: hub, local: 10.0.2.1, address: 192.168.2.1/30}
      - {node: s2, local: 10.0.2.2, address: 192.168.2.2/30}
"#;

/// A third spoke, its link and tunnel.
fn with_s3(t: String) -> String {
    t.replace(
        "links:\n",
        "  s3: {}\nlinks:\n  - endpoints: [\"hub:e3\", \"s3:e0\"]\n    addresses: [10.0.3.1/24, 10.0.3.2/24]\n",
    )
    .replace(
        "tunnels:\n",
        "tunnels:\n  - name: t3\n    type: gre\n    endpoints:\n      - {node: hub, local: 10.0.3.1, address: 192.168.3.1/30}\n      - {node: s3, local: 10.0.3.2, address: 192.168.3.2/30}\n",
    )
}

fn kinds(d: &Diff) -> Vec<(&'static str, Key)> {
    d.changes
        .iter()
        .map(|c| {
            let k = match c.what {
                What::Add { .. } => "add",
                What::Remove { .. } => "remove",
                What::Modify { .. } => "modify",
                What::Replace { .. } => "replace",
                What::Reapply { .. } => "reapply",
                What::Software { .. } => "software",
            };
            (k, c.key.clone())
        })
        .collect()
}

fn dev(ns: &str, dev: &str) -> Key {
    Key::Device {
        ns: ns.into(),
        dev: dev.into(),
    }
}

fn has(d: &Diff, kind: &str, key: &Key) -> bool {
    kinds(d).iter().any(|(k, x)| *k == kind && x == key)
}

#[test]
fn an_unchanged_plan_gives_an_empty_diff() {
    let d = diff(&plan(|t| t), &plan(|t| t));
    assert!(d.is_empty(), "{d:?}");
    assert!(d.script("p-d").contains("unchanged"));
}

#[test]
fn a_new_spoke_is_only_additions_of_its_own_objects() {
    let (old, new) = (plan(|t| t), plan(with_s3));
    let d = diff(&old, &new);
    let ks = kinds(&d);
    assert!(ks.iter().all(|(k, _)| *k == "add"), "{ks:?}");
    assert!(has(&d, "add", &Key::Namespace { ns: "p-s3".into() }));
    assert!(has(&d, "add", &dev("p-hub", "e3")));
    assert!(has(&d, "add", &dev("p-hub", "t3")));
    assert!(has(&d, "add", &dev("p-s3", "t3")));
    // Nothing of the other spokes is touched.
    for (_, k) in &ks {
        let text = format!("{k:?}");
        assert!(!text.contains("p-s1") && !text.contains("p-s2"), "{k:?}");
        assert!(!text.contains("\"e1\"") && !text.contains("t1"), "{k:?}");
    }
    let script = d.script("p-d");
    assert!(script.contains("ip netns add p-s3\n"), "{script}");
    assert!(script.contains("ip -n p-hub link add e3"), "{script}");
    assert!(
        script.contains("ip -n p-s3 addr add 192.168.3.2/30 dev t3\n"),
        "{script}"
    );
}

#[test]
fn removing_a_spoke_lists_only_what_does_not_go_with_its_namespace() {
    let (old, new) = (plan(with_s3), plan(|t| t));
    let d = diff(&old, &new);
    let ks = kinds(&d);
    assert!(ks.iter().all(|(k, _)| *k == "remove"), "{ks:?}");
    // The hub's end of the link and its tunnel end, and the namespace:
    // the rest lives in the namespace or on the devices removed.
    assert_eq!(
        ks.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>(),
        vec![
            dev("p-hub", "t3"),
            dev("p-hub", "e3"),
            Key::Namespace { ns: "p-s3".into() },
        ],
        "{ks:?}"
    );
    let script = d.script("p-d");
    assert!(script.contains("ip -n p-hub link del t3\n"), "{script}");
    assert!(script.contains("ip netns del p-s3\n"), "{script}");
}

#[test]
fn a_new_tunnel_type_replaces_both_ends_and_reapplies_what_was_on_them() {
    let new = plan(|t| t.replacen("name: t1\n    type: gre", "name: t1\n    type: gretap", 1));
    let d = diff(&plan(|t| t), &new);
    assert!(has(&d, "replace", &dev("p-hub", "t1")), "{:?}", kinds(&d));
    assert!(has(&d, "replace", &dev("p-s1", "t1")));
    let addr = Key::Address {
        ns: "p-s1".into(),
        dev: "t1".into(),
        addr: "192.168.1.2/30".parse().unwrap(),
    };
    assert!(has(&d, "reapply", &addr), "{:?}", kinds(&d));
    let up = Key::Up {
        ns: "p-hub".into(),
        dev: "t1".into(),
    };
    assert!(has(&d, "reapply", &up));
    // s1's route may have gone with a device of s1: put back (replace).
    let route = Key::Route {
        ns: "p-s1".into(),
        to: Destination::Net("10.9.0.0/16".parse().unwrap()),
    };
    assert!(has(&d, "reapply", &route));
    // t2 is not touched.
    assert!(!format!("{:?}", kinds(&d)).contains("t2"));
    let script = d.script("p-d");
    assert!(script.contains("ip -n p-s1 link del t1\n"), "{script}");
    assert!(script.contains("type gretap"), "{script}");
    assert!(
        script.contains("route replace 10.9.0.0/16 via 10.0.1.1"),
        "{script}"
    );
}

#[test]
fn new_link_ends_remove_the_link_and_add_the_new_one() {
    let new = plan(|t| t.replace("\"s1:e0\"", "\"s1:e9\""));
    let d = diff(&plan(|t| t), &new);
    // The veth keyed by its first end keeps its key: new peer, made again.
    assert!(has(&d, "replace", &dev("p-hub", "e1")), "{:?}", kinds(&d));
    let moved = Key::Address {
        ns: "p-s1".into(),
        dev: "e9".into(),
        addr: "10.0.1.2/24".parse().unwrap(),
    };
    assert!(has(&d, "add", &moved));
    let hub_addr = Key::Address {
        ns: "p-hub".into(),
        dev: "e1".into(),
        addr: "10.0.1.1/24".parse().unwrap(),
    };
    assert!(has(&d, "reapply", &hub_addr), "{:?}", kinds(&d));
    // The old end's address goes with the old veth: not listed.
    assert!(!format!("{:?}", kinds(&d)).contains("\"e0\", addr: 10.0.1.2"));
    // Reversed ends: another first end, so remove + add.
    let rev = plan(|t| t.replace("[\"hub:e2\", \"s2:e0\"]", "[\"s2:e0\", \"hub:e2\"]"));
    let d = diff(&plan(|t| t), &rev);
    assert!(has(&d, "remove", &dev("p-hub", "e2")), "{:?}", kinds(&d));
    assert!(has(&d, "add", &dev("p-s2", "e0")));
}

#[test]
fn an_mtu_changes_in_place_and_so_does_the_tunnel_mtu_derived_from_it() {
    let new = plan(|t| {
        t.replace(
            "addresses: [10.0.1.1/24, 10.0.1.2/24]",
            "addresses: [10.0.1.1/24, 10.0.1.2/24]\n    mtu: 1400",
        )
    });
    let d = diff(&plan(|t| t), &new);
    assert!(has(&d, "modify", &dev("p-hub", "e1")), "{:?}", kinds(&d));
    assert!(has(&d, "modify", &dev("p-s1", "t1")));
    assert!(
        kinds(&d).iter().all(|(k, _)| *k == "modify"),
        "{:?}",
        kinds(&d)
    );
    let script = d.script("p-d");
    assert!(
        script.contains("ip -n p-hub link set e1 mtu 1400\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-s1 link set e0 mtu 1400\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-s1 link set t1 mtu 1376\n"),
        "{script}"
    );
}

#[test]
fn sysctls_routes_and_addresses_change_by_their_own_keys() {
    let new = plan(|t| {
        t.replace("rp_filter: \"0\"", "rp_filter: \"2\"")
            .replace("forwarding: true\n", "")
            .replace("via: 10.0.1.1", "via: 10.0.1.3")
            .replace("192.168.2.2/30", "192.168.2.3/30")
    });
    let d = diff(&plan(|t| t), &new);
    let ks = kinds(&d);
    let sysctl = |key: &str| Key::Sysctl {
        ns: "p-hub".into(),
        key: key.into(),
    };
    assert!(
        has(&d, "modify", &sysctl("net.ipv4.conf.all.rp_filter")),
        "{ks:?}"
    );
    assert!(has(&d, "remove", &sysctl("net.ipv4.ip_forward")), "{ks:?}");
    let route = Key::Route {
        ns: "p-s1".into(),
        to: Destination::Net("10.9.0.0/16".parse().unwrap()),
    };
    assert!(has(&d, "modify", &route));
    let addr = |a: &str| Key::Address {
        ns: "p-s2".into(),
        dev: "t2".into(),
        addr: a.parse().unwrap(),
    };
    assert!(has(&d, "remove", &addr("192.168.2.2/30")));
    assert!(has(&d, "add", &addr("192.168.2.3/30")));
    assert_eq!(ks.len(), 5, "{ks:?}");
    let script = d.script("p-d");
    assert!(
        script.contains("ip -n p-s1 route replace 10.9.0.0/16 via 10.0.1.3\n"),
        "{script}"
    );
    assert!(
        script.contains("ip -n p-s2 addr del 192.168.2.2/30 dev t2\n"),
        "{script}"
    );
    assert!(
        script.contains("unshare -n sysctl -n net.ipv4.ip_forward"),
        "{script}"
    );
}

#[test]
fn software_changes_by_node_and_nothing_else_moves() {
    let new = plan(|t| t.replace("[sleep, \"100\"]", "[sleep, \"200\"]"));
    let d = diff(&plan(|t| t), &new);
    assert_eq!(
        kinds(&d),
        vec![("software", Key::Software { node: "s2".into() })]
    );
    let gone = plan(|t| {
        t.replace(
            "    run:\n      - name: sleeper\n        cmd: [sleep, \"100\"]\n",
            "",
        )
    });
    let d = diff(&plan(|t| t), &gone);
    assert!(
        matches!(
            &d.changes[..],
            [Change {
                what: What::Software {
                    old: Some(_),
                    new: None
                },
                ..
            }]
        ),
        "{d:?}"
    );
    assert!(d.script("p-d").contains("# s2: no software any more"));
}

#[test]
fn the_json_names_each_change_and_its_object() {
    let d = diff(&plan(|t| t), &plan(with_s3));
    let json = serde_json::to_value(&d).unwrap();
    let first = &json["changes"][0];
    assert_eq!(first["change"], "add");
    assert_eq!(first["key"]["object"], "namespace");
    assert_eq!(first["key"]["ns"], "p-s3");
    assert_eq!(first["step"]["step"], "namespace");
}

#[test]
fn a_rebuilt_node_is_made_again_with_its_links_and_what_was_on_their_far_ends() {
    let p = plan(|t| t);
    let d = rebuild(&p, &["s1"]);
    let ks = kinds(&d);
    assert_eq!(ks[0], ("remove", Key::Namespace { ns: "p-s1".into() }));
    assert!(has(&d, "add", &Key::Namespace { ns: "p-s1".into() }));
    // The veth from the hub goes with s1's namespace: made again.
    assert!(has(&d, "add", &dev("p-hub", "e1")));
    assert!(has(&d, "add", &dev("p-s1", "t1")));
    let hub_addr = Key::Address {
        ns: "p-hub".into(),
        dev: "e1".into(),
        addr: "10.0.1.1/24".parse().unwrap(),
    };
    assert!(has(&d, "reapply", &hub_addr), "{ks:?}");
    // The hub's tunnel end to s1 and everything of s2 stay.
    for (_, k) in &ks {
        let text = format!("{k:?}");
        assert!(!text.contains("p-s2") && !text.contains("\"e2\""), "{k:?}");
        assert_ne!(*k, dev("p-hub", "t1"));
    }
    // A node with software: its programs too.
    let d = rebuild(&p, &["s2"]);
    assert!(has(&d, "software", &Key::Software { node: "s2".into() }));
}
