//! A small eBPF assembler: registers, opcodes, instructions and labels.

use std::mem::size_of;
use std::os::fd::RawFd;

// ---- A small eBPF assembler ----

pub(super) const R0: u8 = 0;
pub(super) const R1: u8 = 1;
pub(super) const R2: u8 = 2;
pub(super) const R3: u8 = 3;
pub(super) const R4: u8 = 4;
pub(super) const R5: u8 = 5;
pub(super) const R6: u8 = 6;
pub(super) const R7: u8 = 7;
pub(super) const R8: u8 = 8;
pub(super) const R9: u8 = 9;
pub(super) const R10: u8 = 10;

// Classes, sizes, modes and operations (include/uapi/linux/bpf_common.h).
pub(super) const CLS_LD: u8 = 0x00;
pub(super) const CLS_LDX: u8 = 0x01;
pub(super) const CLS_ST: u8 = 0x02;
pub(super) const CLS_STX: u8 = 0x03;
pub(super) const CLS_ALU: u8 = 0x04;
pub(super) const CLS_JMP: u8 = 0x05;
pub(super) const CLS_JMP32: u8 = 0x06;
pub(super) const CLS_ALU64: u8 = 0x07;
pub(super) const W: u8 = 0x00;
pub(super) const H16: u8 = 0x08;
pub(super) const B: u8 = 0x10;
pub(super) const DW: u8 = 0x18;
pub(super) const MODE_IMM: u8 = 0x00;
pub(super) const MODE_MEM: u8 = 0x60;
pub(super) const MODE_ATOMIC: u8 = 0xc0;
pub(super) const SRC_X: u8 = 0x08;
pub(super) const ADD: u8 = 0x00;
pub(super) const OR: u8 = 0x40;
pub(super) const AND: u8 = 0x50;
pub(super) const LSH: u8 = 0x60;
pub(super) const RSH: u8 = 0x70;
pub(super) const NEG: u8 = 0x80;
pub(super) const DIV: u8 = 0x30;
pub(super) const XOR: u8 = 0xa0;
pub(super) const MOV: u8 = 0xb0;
pub(super) const END: u8 = 0xd0;
pub(super) const TO_BE: u8 = 0x08;
pub(super) const JA: u8 = 0x00;
pub(super) const JEQ: u8 = 0x10;
pub(super) const JGT: u8 = 0x20;
pub(super) const JNE: u8 = 0x50;
pub(super) const CALL: u8 = 0x80;
pub(super) const EXIT: u8 = 0x90;
pub(super) const FETCH: i32 = 0x01;
pub(super) const PSEUDO_MAP_FD: u8 = 1;

/// One instruction, laid out as `struct bpf_insn` (the loader passes
/// them as they are): `regs` holds the source register in its high nibble,
/// the destination in its low one, as the little-endian bitfields do.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub(super) code: u8,
    pub(super) regs: u8,
    pub(super) off: i16,
    pub(super) imm: i32,
}

const _: () = assert!(size_of::<Insn>() == 8 && cfg!(target_endian = "little"));

#[derive(Clone, Copy)]
pub(super) struct Label(usize);

#[derive(Default)]
pub(super) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    pub(super) fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        });
    }
    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    pub(super) fn labels<const N: usize>(&mut self) -> [Label; N] {
        std::array::from_fn(|_| self.label())
    }
    pub(super) fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    pub(super) fn mov(&mut self, dst: u8, imm: i32) {
        self.emit(CLS_ALU64 | MOV, dst, 0, 0, imm);
    }
    pub(super) fn mov_reg(&mut self, dst: u8, src: u8) {
        self.emit(CLS_ALU64 | MOV | SRC_X, dst, src, 0, 0);
    }
    /// 32-bit move: zero-extends.
    pub(super) fn mov32_reg(&mut self, dst: u8, src: u8) {
        self.emit(CLS_ALU | MOV | SRC_X, dst, src, 0, 0);
    }
    pub(super) fn add(&mut self, dst: u8, imm: i32) {
        self.alu(ADD, dst, imm);
    }
    pub(super) fn alu(&mut self, op: u8, dst: u8, imm: i32) {
        self.emit(CLS_ALU64 | op, dst, 0, 0, imm);
    }
    pub(super) fn alu_reg(&mut self, op: u8, dst: u8, src: u8) {
        self.emit(CLS_ALU64 | op | SRC_X, dst, src, 0, 0);
    }
    pub(super) fn neg(&mut self, dst: u8) {
        self.emit(CLS_ALU64 | NEG, dst, 0, 0, 0);
    }
    /// Host order to big-endian, 16 bits (zero-extended).
    pub(super) fn be16(&mut self, dst: u8) {
        self.emit(CLS_ALU | END | TO_BE, dst, 0, 0, 16);
    }
    pub(super) fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(CLS_LDX | MODE_MEM | size, dst, src, off, 0);
    }
    pub(super) fn stx(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.emit(CLS_STX | MODE_MEM | size, dst, src, off, 0);
    }
    pub(super) fn st(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.emit(CLS_ST | MODE_MEM | size, dst, 0, off, imm);
    }
    pub(super) fn atomic_add(&mut self, dst: u8, off: i16, src: u8) {
        self.emit(CLS_STX | MODE_ATOMIC | DW, dst, src, off, i32::from(ADD));
    }
    /// Atomically adds `src` to the 64-bit word at `dst + off`; `src`
    /// gets the word's old value.
    pub(super) fn atomic_fetch_add(&mut self, dst: u8, off: i16, src: u8) {
        self.emit(
            CLS_STX | MODE_ATOMIC | DW,
            dst,
            src,
            off,
            i32::from(ADD) | FETCH,
        );
    }
    pub(super) fn ld_map(&mut self, dst: u8, fd: RawFd) {
        self.emit(CLS_LD | MODE_IMM | DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.emit(0, 0, 0, 0, 0);
    }
    pub(super) fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.emit(code, dst, src, 0, imm);
    }
    /// 32-bit compare with an immediate (addresses and keys are u32).
    pub(super) fn jmp(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.jump(CLS_JMP32 | op, dst, 0, imm, to);
    }
    pub(super) fn jmp64(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.jump(CLS_JMP | op, dst, 0, imm, to);
    }
    pub(super) fn jmp_reg(&mut self, op: u8, dst: u8, src: u8, to: Label) {
        self.jump(CLS_JMP | op | SRC_X, dst, src, 0, to);
    }
    pub(super) fn ja(&mut self, to: Label) {
        self.jump(CLS_JMP | JA, 0, 0, 0, to);
    }
    pub(super) fn call(&mut self, helper: i32) {
        self.emit(CLS_JMP | CALL, 0, 0, 0, helper);
    }
    pub(super) fn exit(&mut self) {
        self.emit(CLS_JMP | EXIT, 0, 0, 0, 0);
    }
    pub(super) fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.jumps {
            let target = self.labels[to.0].expect("every label used is bound");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        let l = a.label();
        a.jmp(JEQ, R1, 0, l);
        a.mov(R0, 1);
        a.mov(R0, 2);
        a.bind(l);
        a.exit();
        let code = a.finish();
        assert_eq!(code[0].off, 2);
        assert_eq!(code[3].code, CLS_JMP | EXIT);
    }

    #[test]
    fn registers_are_packed_as_the_kernel_reads_them() {
        let mut a = Asm::default();
        a.stx(W, R10, -4, R3);
        let i = a.finish()[0];
        assert_eq!(i.regs, 0x3a, "src in the high nibble, dst in the low");
        assert_eq!(i.code, 0x63);
    }
}
