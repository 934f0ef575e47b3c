//! eBPF maps whose keys and values are the `layout` structs.

use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::bpf::{
    Attr, CMD_MAP_CREATE, CMD_MAP_DELETE_ELEM, CMD_MAP_LOOKUP_ELEM, CMD_MAP_UPDATE_ELEM, MapCreate,
    MapElem, addr,
};
use super::layout::Plain;

/// The kinds of map used here; none is per-CPU, so a value is one `V`.
#[derive(Clone, Copy)]
pub(super) enum MapKind {
    Hash = 1,
    Array = 2,
}

/// A map created with `K` keys and `V` values: its calls can only pass
/// buffers of exactly the sizes the kernel reads and writes.
pub(super) struct Map<K: Plain, V: Plain>(OwnedFd, PhantomData<(K, V)>);

impl<K: Plain, V: Plain> Map<K, V> {
    pub(super) fn new(kind: MapKind, entries: u32) -> io::Result<Self> {
        let mut a = Attr::zeroed();
        a.map_create = MapCreate {
            map_type: kind as u32,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries: entries,
        };
        // SAFETY: map creation reads no pointer and returns a new descriptor.
        unsafe { a.call_fd(CMD_MAP_CREATE) }.map(|fd| Map(fd, PhantomData))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The attribute of an element call on `key` (and `value`).
    fn elem(&self, key: &K, value: u64) -> Attr {
        let mut a = Attr::zeroed();
        a.map_elem = MapElem {
            map_fd: self.fd() as u32,
            key: addr(key),
            value,
            ..MapElem::default()
        };
        a
    }

    pub(super) fn update(&self, key: &K, value: &V) -> io::Result<()> {
        let mut a = self.elem(key, addr(value));
        // SAFETY: the kernel reads a K of key and a V of value, this map's
        // sizes, from references that outlive the call.
        unsafe { a.call(CMD_MAP_UPDATE_ELEM) }.map(drop)
    }

    pub(super) fn lookup(&self, key: &K) -> io::Result<V> {
        // SAFETY: `V: Plain` is valid for any bits, zeros included.
        let mut value: V = unsafe { zeroed() };
        let mut a = self.elem(key, addr(&raw mut value));
        // SAFETY: the kernel reads a K of key and writes one V of value
        // (not per-CPU: MapKind has none), each of its size.
        unsafe { a.call(CMD_MAP_LOOKUP_ELEM) }.map(|_| value)
    }

    pub(super) fn delete(&self, key: &K) -> io::Result<()> {
        let mut a = self.elem(key, 0);
        // SAFETY: the kernel reads a K of key, this map's key size.
        unsafe { a.call(CMD_MAP_DELETE_ELEM) }.map(drop)
    }
}
