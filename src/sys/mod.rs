//! The kernel, thin: named network namespaces and the worker pool that
//! enters them, TUN/TAP devices, processes by identity, signals
//! (`interrupt`), ethtool, and rtnetlink (`rtnl`, the only module that
//! speaks netlink); with the `root-tests` feature, `testns`, the root
//! tests' one namespace fixture. May import `model`-level vocabulary
//! (plan, topology types, validate's name rules) and `error`; never `lab`,
//! `check`, `dataplane` or `cli`.

// The root tests' fixture, for the integration tests too.
#[cfg(feature = "root-tests")]
pub mod testns;

pub(crate) mod ethtool;
pub(crate) mod interrupt;
pub mod netns;
pub(crate) mod pool;
pub mod process;
pub mod rtnl;
pub mod spawn;
pub mod tun;
pub mod view;
