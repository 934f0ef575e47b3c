//! Needs root: the kernel's verifier is the judge, and the kernel runs the
//! programs on byte vectors (`test_run`).

mod test_run;

use super::bpf::load;
use super::programs::{decap_program, encap_program};
use super::*;
use crate::dataplane::testing::{encap, end};
use crate::model::TunnelKind;

/// Needs root: the kernel's verifier is the judge.
#[test]
fn programs_pass_the_verifier() {
    let fp = FastPath::new(4).expect("eBPF maps");
    for e in [
        encap(),
        Encap {
            key: Some(42),
            ttl: 0,
            tos: 1,
            df: false,
            ..encap()
        },
        Encap {
            l2: true,
            key: Some(7),
            ..encap()
        },
        Encap {
            local: "fd00:a::2".parse().unwrap(),
            remote: "fd00:b::2".parse().unwrap(),
            ..encap()
        },
        Encap {
            local: "fd00:a::2".parse().unwrap(),
            remote: "fd00:b::2".parse().unwrap(),
            l2: true,
            key: Some(7),
            ..encap()
        },
    ] {
        load(&encap_program(&e, fp.counters.fd()), "t_encap").expect("encap loads");
    }
    load(
        &decap_program(1, [fp.table.fd(), fp.table6.fd()], fp.counters.fd()),
        "t_decap",
    )
    .expect("decap loads");
    let mut end = end("t", "n", TunnelKind::Gre, "10.0.0.1", "10.0.0.2");
    end.mtu = 1476;
    fp.add_route(1, &end, 9, 2).expect("route");
    (end.kind, end.ikey) = (TunnelKind::Ip6gretap, Some(3));
    (end.local, end.remote) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    fp.add_route(1, &end, 9, 3).expect("IPv6 route");
    assert_eq!(fp.counters(2).expect("counters"), Counters::default());
    fp.remove_route(1, &end).expect("removing the IPv6 route");
    fp.remove_route(1, &end)
        .expect("removing it again: nothing to do");
    end.remote = "10.0.0.2".parse().unwrap();
    assert!(fp.add_route(1, &end, 9, 3).is_err(), "mixed families");
}
