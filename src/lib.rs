//! grelab builds GRE tunnel labs in Linux network namespaces from a YAML
//! file, proves they work, and removes them without a trace.
//!
//! The flow, and the folders that are its layers (each imports only layers
//! below it; each folder's `mod.rs` says what it owns; `tests/layers.rs`
//! holds the code to it):
//!
//! ```text
//! YAML --topology--> Topology --validate--> (all errors, with line:col)
//!      --plan-->     Plan (ordered steps; `grelab plan` prints it as iproute2)
//!      --lab::up-->  the kernel through sys (netns, rtnl: pool threads that
//!                    enter namespaces) + the userspace GRE dataplane (over
//!                    wire::gre; flows move onto its in-kernel eBPF fast path)
//!                    + lab::keeper: PID 1 of the lab's PID namespace, the
//!                    nodes' views (sys::view) and programs; impairments
//!                    (netem/tbf via rtnl, tc-BPF, the dataplane's delay line)
//!      --lab::state--> /run/grelab/<lab>/ (journal, record, lock, logs)
//! up of an edited file: plan::diff (old plan, new plan) --lab::reconcile-->
//!                    only the difference, journalled, resumable after a crash
//! check (verify): state + plan --> checks (ping, tcp, multicast, route,
//!                    exec in the node's view, encap via capture; `within`) --> report
//! lab::teardown (down): keeper, dataplane, then journal + state, or the
//!                    ownership marks --> teardown
//! ```
//!
//! ```text
//! cli                      commands; nothing imports it
//! check  capture           verify's checks and reports; packets read off an interface
//! lab                      up, reconcile, configure, impair, keeper, teardown, state, journal
//! dataplane                the userspace GRE process and its eBPF fast path
//! sys                      netns, pool, rtnl, tun, process, spawn, view, interrupt: the kernel, thin
//! plan  validate  topology the file, checked, and what to build: pure
//! model  wire  error       the vocabulary (kinds, overhead, backends); packet views; exit codes
//! ```

pub mod capture;
pub(crate) mod check;
pub mod cli;
pub mod dataplane;
pub mod error;
pub(crate) mod lab;
pub mod model;
pub mod plan;
pub mod sys;
pub mod topology;
pub mod validate;
pub mod wire;
