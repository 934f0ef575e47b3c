//! The bpf(2) system call: the commands the fast path uses.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, anyhow};

use super::asm::Insn;

// ---- The bpf(2) system call ----

pub(super) const CMD_MAP_CREATE: u32 = 0;
pub(super) const CMD_MAP_LOOKUP_ELEM: u32 = 1;
pub(super) const CMD_MAP_UPDATE_ELEM: u32 = 2;
pub(super) const CMD_MAP_DELETE_ELEM: u32 = 3;
pub(super) const CMD_PROG_LOAD: u32 = 5;
#[cfg(all(test, feature = "root-tests"))]
pub(super) const CMD_PROG_TEST_RUN: u32 = 10;
pub(super) const CMD_LINK_CREATE: u32 = 28;
pub(super) const PROG_SCHED_CLS: u32 = 3;
pub(super) const ATTACH_TCX_INGRESS: u32 = 46;
pub(super) const ATTACH_TCX_EGRESS: u32 = 47;

/// `union bpf_attr` (include/uapi/linux/bpf.h): a named struct per command
/// shape, each the kernel's leading fields of it; the rest stays zero, as
/// the kernel wants of fields a command does not use.
#[repr(C)]
pub(super) union Attr {
    pub(super) map_create: MapCreate,
    pub(super) map_elem: MapElem,
    pub(super) prog_load: ProgLoad,
    pub(super) link_create: LinkCreate,
    #[cfg(all(test, feature = "root-tests"))]
    pub(super) test_run: TestRun,
    bytes: [u64; 16],
}

/// BPF_MAP_CREATE.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct MapCreate {
    pub(super) map_type: u32,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
}

/// BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct MapElem {
    pub(super) map_fd: u32,
    pub(super) _pad: u32,
    pub(super) key: u64,
    pub(super) value: u64,
    pub(super) flags: u64,
}

/// BPF_PROG_LOAD.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct ProgLoad {
    pub(super) prog_type: u32,
    pub(super) insn_cnt: u32,
    pub(super) insns: u64,
    pub(super) license: u64,
    pub(super) log_level: u32,
    pub(super) log_size: u32,
    pub(super) log_buf: u64,
    pub(super) kern_version: u32,
    pub(super) prog_flags: u32,
    pub(super) prog_name: [u8; 16],
}

/// BPF_LINK_CREATE, for TCX (Linux 6.6).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct LinkCreate {
    pub(super) prog_fd: u32,
    pub(super) target_ifindex: u32,
    pub(super) attach_type: u32,
    pub(super) flags: u32,
}

/// BPF_PROG_TEST_RUN: one run of a program on a packet of bytes.
#[cfg(all(test, feature = "root-tests"))]
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct TestRun {
    pub(super) prog_fd: u32,
    pub(super) retval: u32,
    pub(super) data_size_in: u32,
    pub(super) data_size_out: u32,
    pub(super) data_in: u64,
    pub(super) data_out: u64,
    pub(super) repeat: u32,
    pub(super) duration: u32,
    pub(super) ctx_size_in: u32,
    pub(super) ctx_size_out: u32,
    pub(super) ctx_in: u64,
    pub(super) ctx_out: u64,
    pub(super) flags: u32,
    pub(super) cpu: u32,
    pub(super) batch_size: u32,
    pub(super) _pad: u32,
}

/// A pointer as bpf_attr carries it.
pub(super) fn addr<T>(p: *const T) -> u64 {
    p as usize as u64
}

impl Attr {
    /// All zeros: every field a command does not name.
    pub(super) fn zeroed() -> Attr {
        Attr { bytes: [0; 16] }
    }

    /// bpf(`cmd`, self).
    ///
    /// # Safety
    /// Every pointer in the attribute that command `cmd` uses must point at
    /// memory valid for as many bytes as the kernel reads there (and, for
    /// the ones it writes through, writes), for the duration of the call.
    pub(super) unsafe fn call(&mut self, cmd: u32) -> io::Result<i64> {
        // SAFETY: the attribute is valid for its size; the caller vouches
        // for the pointers in it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::from_mut(self),
                size_of::<Attr>() as libc::c_uint,
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
    // GPL-compatible, as the kernel's tc helpers require.
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let mut log = vec![0u8; 0];
    let attempt = |log: &mut Vec<u8>| {
        let mut a = Attr::zeroed();
        // The kernel reads `code.len()` instructions (`Insn` is `struct
        // bpf_insn`), the license up to its NUL, and writes up to
        // `log.len()` bytes of log.
        a.prog_load = ProgLoad {
            prog_type: PROG_SCHED_CLS,
            insn_cnt: code.len() as u32,
            insns: addr(code.as_ptr()),
            license: addr(license.as_ptr()),
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                addr(log.as_mut_ptr())
            },
            prog_name,
            ..ProgLoad::default()
        };
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
    let mut a = Attr::zeroed();
    a.link_create = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: attach,
        flags: 0,
    };
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

/// Runs program `prog` once on the Ethernet frame `data` (BPF_PROG_TEST_RUN,
/// Linux 4.12): its return code and the frame as it left it.
#[cfg(all(test, feature = "root-tests"))]
pub(super) fn test_run(prog: &OwnedFd, data: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    // Room for what a program adds in front (at most the outer headers).
    let mut out = vec![0u8; data.len() + 256];
    let mut a = Attr::zeroed();
    a.test_run = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_size_out: out.len() as u32,
        data_in: addr(data.as_ptr()),
        data_out: addr(out.as_mut_ptr()),
        repeat: 1,
        ..TestRun::default()
    };
    // SAFETY: the kernel reads `data.len()` bytes of `data` and writes at
    // most `out.len()` into `out`, both alive for the call.
    unsafe { a.call(CMD_PROG_TEST_RUN) }?;
    // SAFETY: the kernel filled in the test-run fields it returns, plain
    // integers.
    let (retval, len) = unsafe { (a.test_run.retval, a.test_run.data_size_out) };
    out.truncate(len as usize);
    Ok((retval, out))
}
