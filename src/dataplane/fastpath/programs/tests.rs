use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::dataplane::fastpath::Encap;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn encap() -> Encap {
    Encap {
        index: 3,
        local: v4([172, 16, 10, 2]),
        remote: v4([152, 16, 10, 2]),
        key: None,
        ttl: 255,
        tos: 0,
        df: true,
        l2: false,
        out_ifindex: 7,
        id_base: 0,
    }
}

#[test]
fn every_program_ends_in_exit_and_every_jump_stays_inside() {
    for code in [
        encap_program(&encap(), 5),
        encap_program(
            &Encap {
                key: Some(42),
                ttl: 0,
                tos: 1,
                ..encap()
            },
            5,
        ),
        encap_program(
            &Encap {
                l2: true,
                ..encap()
            },
            5,
        ),
        decap_program(2, [6, 8], 5),
    ] {
        assert_eq!(code.last().map(|i| i.code), Some(CLS_JMP | EXIT));
        for (at, i) in code.iter().enumerate() {
            let class = i.code & 7;
            let op = i.code & 0xf0;
            if (class == CLS_JMP || class == CLS_JMP32) && op != CALL && op != EXIT {
                let to = at as isize + 1 + i.off as isize;
                assert!(
                    (0..code.len() as isize).contains(&to),
                    "jump at {at} to {to}"
                );
            }
        }
    }
}
