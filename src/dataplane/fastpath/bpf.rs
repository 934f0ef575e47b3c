//! The bpf(2) system call: the commands the fast path uses.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, anyhow};

use super::asm::Insn;

// ---- The bpf(2) system call ----

pub(super) const CMD_MAP_CREATE: u32 = 0;
pub(super) const CMD_MAP_LOOKUP_ELEM: u32 = 1;
pub(super) const CMD_MAP_UPDATE_ELEM: u32 = 2;
pub(super) const CMD_MAP_DELETE_ELEM: u32 = 3;
pub(super) const CMD_PROG_LOAD: u32 = 5;
pub(super) const CMD_LINK_CREATE: u32 = 28;
pub(super) const PROG_SCHED_CLS: u32 = 3;
pub(super) const ATTACH_TCX_INGRESS: u32 = 46;
pub(super) const ATTACH_TCX_EGRESS: u32 = 47;

/// `union bpf_attr`, filled field by field at the kernel's offsets.
pub(super) struct Attr([u8; 128]);

impl Attr {
    pub(super) fn new() -> Attr {
        Attr([0; 128])
    }
    pub(super) fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(super) fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(super) fn ptr<T>(&mut self, at: usize, p: *const T) -> &mut Attr {
        self.u64(at, p as usize as u64)
    }

    /// bpf(`cmd`, self).
    ///
    /// # Safety
    /// Every pointer in the attribute that command `cmd` uses must point at
    /// memory valid for as many bytes as the kernel reads there (and, for
    /// the ones it writes through, writes), for the duration of the call.
    pub(super) unsafe fn call(&mut self, cmd: u32) -> io::Result<i64> {
        // SAFETY: the attribute buffer is valid for its length; the caller
        // vouches for the pointers in it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                self.0.len() as libc::c_uint,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// `call` for a command that returns a new descriptor.
    ///
    /// # Safety
    /// As for `call`; and `cmd` must be a command whose result is a new
    /// file descriptor the caller then owns.
    pub(super) unsafe fn call_fd(&mut self, cmd: u32) -> io::Result<OwnedFd> {
        // SAFETY: the caller's promise, passed on.
        let fd = unsafe { self.call(cmd) }?;
        // SAFETY: `cmd` returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Loads a tc program; on refusal, loads it again for the verifier's log.
pub(super) fn load(code: &[Insn], name: &str) -> Result<OwnedFd> {
    let raw: Vec<u64> = code
        .iter()
        .map(|i| {
            u64::from(i.code)
                | (u64::from(i.regs) << 8)
                | (u64::from(i.off as u16) << 16)
                | (u64::from(i.imm as u32) << 32)
        })
        .collect();
    // GPL-compatible, as the kernel's tc helpers require.
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let mut log = vec![0u8; 0];
    let attempt = |log: &mut Vec<u8>| {
        let mut a = Attr::new();
        // The kernel reads `raw.len()` instructions, the license up to its
        // NUL, and writes up to `log.len()` bytes of log.
        a.u32(0, PROG_SCHED_CLS)
            .u32(4, raw.len() as u32)
            .ptr(8, raw.as_ptr())
            .ptr(16, license.as_ptr());
        if !log.is_empty() {
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .ptr(32, log.as_mut_ptr());
        }
        a.0[48..64].copy_from_slice(&prog_name);
        // SAFETY: every pointer above points at a buffer of the length
        // given beside it (the license is NUL-terminated), all outliving
        // the call; a loaded program is a new descriptor.
        unsafe { a.call_fd(CMD_PROG_LOAD) }
    };
    match attempt(&mut log) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            log = vec![0u8; 1 << 16];
            let _ = attempt(&mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            Err(anyhow!(
                "loading the eBPF program `{name}`: {e}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (verifier: {})",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    )
                }
            ))
        }
    }
}

pub(super) fn link_create(prog: &OwnedFd, ifindex: u32, attach: u32) -> Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, attach);
    // SAFETY: a link is made of descriptors and numbers, no pointer; it is
    // a new descriptor.
    unsafe { a.call_fd(CMD_LINK_CREATE) }.with_context(|| {
        format!(
            "attaching to the tc {} hook of interface {ifindex} (TCX needs Linux 6.6 or later)",
            if attach == ATTACH_TCX_INGRESS {
                "ingress"
            } else {
                "egress"
            }
        )
    })
}
