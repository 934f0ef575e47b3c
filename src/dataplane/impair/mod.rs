//! The impairment program: a tc-BPF program (direct action, at an
//! interface's clsact egress hook) that drops, duplicates and corrupts a
//! share of packets, for kernels without sch_netem. It is assembled with
//! the fast path's assembler and loaded by its bpf(2) code (the same files,
//! compiled here too, so the fast path keeps them private); the program
//! lives on in its filter after the loader's descriptor closes, so it needs
//! no process, and the filter's name records its parameters.
//!
//! Per packet, with the kernel's random numbers (`bpf_get_prandom_u32`):
//! loss drops it; duplicate sends a clone first (`bpf_clone_redirect` to the
//! same egress; the clone, marked, passes the program untouched); corrupt
//! flips one random bit of one random byte, as netem does. Checksums are not
//! fixed: the receiver sees a damaged packet.

// The fast path's files, compiled a second time here (not copied) until
// the fast path exports its assembler and loader.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../fastpath/asm.rs"]
mod asm;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../fastpath/bpf.rs"]
mod bpf;

use std::os::fd::OwnedFd;

use anyhow::Result;

use self::asm::*;
use crate::model::Impairment;

// Helpers (include/uapi/linux/bpf.h).
const GET_PRANDOM_U32: i32 = 7;
const SKB_STORE_BYTES: i32 = 9;
const CLONE_REDIRECT: i32 = 13;
const SKB_LOAD_BYTES: i32 = 26;
// Fields of `struct __sk_buff`.
const SKB_LEN: i16 = 0;
const SKB_MARK: i16 = 8;
const SKB_IFINDEX: i16 = 40;
/// tc verdicts: send it on; taken (dropped here, but the sender is told
/// it was sent, as netem does: TC_ACT_SHOT would make a local sender's
/// sendmsg fail with ENOBUFS, and ping sends again, hiding the loss).
const TC_ACT_OK: i32 = 0;
const TC_ACT_STOLEN: i32 = 4;
/// Unsigned "at least" (the assembler names only the jumps the fast path uses).
const JGE: u8 = 0x30;
const MOD: u8 = 0x90;
/// The mark a duplicate carries through its second pass ("GREL").
const DUPLICATE_MARK: i32 = 0x4752_454c;

/// Whether the program has anything to do for `imp`.
pub fn needed(imp: &Impairment) -> bool {
    imp.mangles()
}

/// Loads the program for `imp`'s loss, duplication and corruption.
pub fn load(imp: &Impairment) -> Result<OwnedFd> {
    bpf::load(&program(imp), "grelab_impair")
}

/// The instructions: a section per parameter set, each drawing its own
/// random number and skipping its work unless the number is below the
/// parameter's share of 2^32.
fn program(imp: &Impairment) -> Vec<Insn> {
    let mut a = Asm::default();
    let [fresh, pass] = a.labels();
    a.mov_reg(R6, R1);
    // R8: the packet's mark, given back after a duplicate is sent.
    a.ldx(W, R8, R6, SKB_MARK);
    // A duplicate's second pass: unmark it and let it go.
    a.jmp(JNE, R8, DUPLICATE_MARK, fresh);
    a.mov(R2, 0);
    a.stx(W, R6, SKB_MARK, R2);
    a.ja(pass);
    a.bind(fresh);
    let unless = |a: &mut Asm, share: crate::model::Share, skip| {
        a.call(GET_PRANDOM_U32);
        a.jump(CLS_JMP32 | JGE, R0, 0, share.of_u32() as i32, skip);
    };
    if let Some(loss) = imp.loss {
        let keep = a.label();
        unless(&mut a, loss, keep);
        a.mov(R0, TC_ACT_STOLEN);
        a.exit();
        a.bind(keep);
    }
    if let Some(dup) = imp.duplicate {
        let once = a.label();
        unless(&mut a, dup, once);
        a.mov(R2, DUPLICATE_MARK);
        a.stx(W, R6, SKB_MARK, R2);
        a.mov_reg(R1, R6);
        a.ldx(W, R2, R6, SKB_IFINDEX);
        a.mov(R3, 0);
        a.call(CLONE_REDIRECT);
        a.stx(W, R6, SKB_MARK, R8);
        a.bind(once);
    }
    if let Some(corrupt) = imp.corrupt {
        unless(&mut a, corrupt, pass);
        // R7: a random offset below the packet's length.
        a.call(GET_PRANDOM_U32);
        a.mov32_reg(R7, R0);
        a.ldx(W, R2, R6, SKB_LEN);
        a.jmp(JEQ, R2, 0, pass);
        a.alu_reg(MOD, R7, R2);
        let byte = |a: &mut Asm| {
            a.mov_reg(R1, R6);
            a.mov_reg(R2, R7);
            a.mov_reg(R3, R10);
            a.add(R3, -8);
            a.mov(R4, 1);
        };
        byte(&mut a);
        a.call(SKB_LOAD_BYTES);
        a.jmp64(JNE, R0, 0, pass);
        a.call(GET_PRANDOM_U32);
        a.alu(AND, R0, 7);
        a.mov(R1, 1);
        a.alu_reg(LSH, R1, R0);
        a.ldx(B, R2, R10, -8);
        a.alu_reg(XOR, R2, R1);
        a.stx(B, R10, -8, R2);
        byte(&mut a);
        a.mov(R5, 0);
        a.call(SKB_STORE_BYTES);
    }
    a.bind(pass);
    a.mov(R0, TC_ACT_OK);
    a.exit();
    a.finish()
}

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use super::*;

    /// The kernel's verifier is the witness: every combination loads.
    #[test]
    fn every_combination_of_parameters_passes_the_verifier() {
        for params in [
            &[("loss", "10%")][..],
            &[("duplicate", "1%")],
            &[("corrupt", "0.1%")],
            &[("loss", "100%"), ("duplicate", "50%"), ("corrupt", "5%")],
        ] {
            let mut imp = Impairment::default();
            for (k, v) in params {
                imp.set(k, v).unwrap();
            }
            if let Err(e) = load(&imp) {
                panic!("{imp}: {e:#}");
            }
        }
    }
}
