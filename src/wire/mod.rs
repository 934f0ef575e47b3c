//! Packets on the wire, as views in the shape of `gre`: a checked view over
//! bytes and a `Repr` that parses and emits. Sans-IO: imports nothing else
//! of the crate, does no I/O, never panics on input.

pub mod checksum;
pub mod gre;
pub mod ipv4;
