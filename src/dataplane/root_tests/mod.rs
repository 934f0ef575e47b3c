//! Dataplane tests that need root: network namespaces, TUN/TAP devices,
//! raw sockets, eBPF. They share one fixture (`fixture`).

mod fast;
mod fixture;
mod path;
mod setup;
