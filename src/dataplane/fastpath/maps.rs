//! eBPF maps of fixed key and value sizes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::bpf::{
    Attr, CMD_MAP_CREATE, CMD_MAP_DELETE_ELEM, CMD_MAP_LOOKUP_ELEM, CMD_MAP_UPDATE_ELEM,
};

/// The kinds of map used here; none is per-CPU, so a value is `V` bytes.
#[derive(Clone, Copy)]
pub(super) enum MapKind {
    Hash = 1,
    Array = 2,
}

/// A map created with `K`-byte keys and `V`-byte values: its calls can only
/// pass buffers of exactly the sizes the kernel reads and writes.
pub(super) struct Map<const K: usize, const V: usize>(OwnedFd);

impl<const K: usize, const V: usize> Map<K, V> {
    pub(super) fn new(kind: MapKind, entries: u32) -> io::Result<Self> {
        let mut a = Attr::new();
        a.u32(0, kind as u32)
            .u32(4, K as u32)
            .u32(8, V as u32)
            .u32(12, entries);
        // SAFETY: map creation reads no pointer and returns a new descriptor.
        unsafe { a.call_fd(CMD_MAP_CREATE) }.map(Map)
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub(super) fn update(&self, key: &[u8; K], value: &[u8; V]) -> io::Result<()> {
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .ptr(8, key.as_ptr())
            .ptr(16, value.as_ptr());
        // SAFETY: the kernel reads K bytes of key and V of value, this
        // map's sizes, from buffers of those lengths that outlive the call.
        unsafe { a.call(CMD_MAP_UPDATE_ELEM) }.map(drop)
    }

    pub(super) fn lookup(&self, key: &[u8; K]) -> io::Result<[u8; V]> {
        let mut value = [0u8; V];
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .ptr(8, key.as_ptr())
            .ptr(16, value.as_mut_ptr());
        // SAFETY: the kernel reads K bytes of key and writes V of value
        // (not per-CPU: MapKind has none) into buffers of those lengths.
        unsafe { a.call(CMD_MAP_LOOKUP_ELEM) }.map(|_| value)
    }

    pub(super) fn delete(&self, key: &[u8; K]) -> io::Result<()> {
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32).ptr(8, key.as_ptr());
        // SAFETY: the kernel reads K bytes of key, this map's key size.
        unsafe { a.call(CMD_MAP_DELETE_ELEM) }.map(drop)
    }
}
