//! The kernel, thin: named network namespaces, TUN/TAP devices, processes
//! by identity, ethtool, and rtnetlink (`rtnl`, the only module that speaks
//! netlink). May import `model`-level vocabulary (plan, topology types) and
//! `error`; never `lab`, `check`, `dataplane` or `cli`.

pub(crate) mod ethtool;
pub mod netns;
pub mod process;
pub mod rtnl;
pub mod tun;
