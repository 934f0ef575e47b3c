use super::*;
use crate::dataplane::fastpath::Encap;
use crate::dataplane::testing::encap;

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
