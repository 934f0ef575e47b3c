//! grelab builds GRE tunnel labs in Linux network namespaces from a YAML
//! file, proves they work, and removes them without a trace.
//!
//! The flow, one module per step:
//!
//! ```text
//! YAML --topology--> Topology --validate--> (all errors, with line:col)
//!      --plan-->     Plan (ordered steps; `grelab plan` prints it as iproute2)
//!      --apply-->    kernel via rtnl (pool threads that enter namespaces, netns)
//!                    + userspace GRE (dataplane, over the gre codec; flows
//!                      move onto its in-kernel eBPF fast path, fastpath)
//!      --state-->    /run/grelab/<lab>/ (record, lock)
//! verify: state + plan --> checks (icmp, capture) --> report
//! down:   state, or the ownership marks in the kernel --> teardown
//! ```

pub mod apply;
pub mod capture;
pub mod cli;
pub mod dataplane;
pub mod error;
pub mod fastpath;
pub mod generate;
pub mod gre;
pub mod icmp;
pub mod netfilter;
pub mod netns;
pub mod plan;
pub mod report;
pub mod rtnl;
pub mod state;
pub mod teardown;
pub mod topology;
pub mod tun;
pub mod validate;
pub mod verify;
