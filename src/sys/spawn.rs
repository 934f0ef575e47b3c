//! Starting a process as the first of a new PID namespace (its init), so
//! that when it ends the kernel ends every process of the namespace: what a
//! lab's programs start, daemons that fork away included, cannot outlive it.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::process::Pidfd;

/// The arguments of clone3(2), as the kernel lays them out.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Where the child first copies the descriptors it is given, above any
/// number they could have, before putting them in place.
const STAGING: RawFd = 512;

/// Starts `argv` (argv[0] the program's path) in a new session as PID 1 of
/// a new PID namespace, with `fds[i]` as its descriptor `i`. Returns its
/// pidfd (its pid as this process sees it inside).
pub fn init(argv: &[CString], fds: &[RawFd]) -> io::Result<Pidfd> {
    if argv.is_empty() || fds.len() > 16 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Everything the child uses is made before the clone: between it and
    // exec, the child of a multithreaded process may only make syscalls.
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: (libc::CLONE_NEWPID | libc::CLONE_PIDFD) as u64,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with a valid, fully initialised argument block and no
    // stack: the child continues here on a copy of this stack, like fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: the child: only async-signal-safe syscalls, then exec or _exit.
        unsafe { child(&ptrs, fds) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: clone3 stored a new pidfd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Pidfd::from_owned(fd, pid as u32))
}

/// The child's side of [`init`]: its descriptors, a session, exec.
///
/// # Safety
/// Only in the child of clone3, with `ptrs` a null-terminated argv.
unsafe fn child(ptrs: &[*const libc::c_char], fds: &[RawFd]) -> ! {
    // SAFETY (all below): plain syscalls on integers and the caller's
    // prepared pointers; nothing allocates or takes a lock.
    unsafe {
        for (i, &fd) in fds.iter().enumerate() {
            if libc::dup3(fd, STAGING + i as RawFd, libc::O_CLOEXEC) < 0 {
                libc::_exit(126);
            }
        }
        for i in 0..fds.len() {
            if libc::dup2(STAGING + i as RawFd, i as RawFd) < 0 {
                libc::_exit(126);
            }
        }
        if libc::setsid() < 0 {
            libc::_exit(126);
        }
        unsafe extern "C" {
            static environ: *const *const libc::c_char;
        }
        libc::execve(ptrs[0], ptrs.as_ptr(), environ);
        libc::_exit(127)
    }
}
