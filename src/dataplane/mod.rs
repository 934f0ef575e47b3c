//! The userspace GRE dataplane, for kernels without ip_gre: per tunnel end a
//! TUN (gre, ip6gre) or TAP (gretap, ip6gretap) device in the end's
//! namespace, and real GRE on the wire through raw IP-protocol-47 sockets,
//! wire-compatible with Linux ip_gre. One process serves a whole lab.
//!
//! Setup creates every device and socket from one thread, entering each
//! namespace in turn (an fd stays bound to the namespace it was made in);
//! then a single epoll loop moves packets. There is one raw socket per
//! (namespace, address family), so a hub with many tunnels gets each packet
//! once, and received packets are demultiplexed by (destination, source, key).
//!
//! Devices run with offloads, as a virtio NIC: the kernel hands over TCP
//! super-packets of up to 64 KiB and leaves checksums to us. Each is cut
//! into MTU-sized segments (as the kernel's TSO would) before GRE, and the
//! whole train leaves in one sendmmsg; received in-order segments of a flow
//! are joined back into one super-packet per device write (GRO). The wire
//! sees the same GRE packets as without (`GRELAB_DP_OFFLOAD=0`, to compare).
//! One thread: a second one, on 2 cores, cost more in cross-CPU copies and
//! wakeups than it gained.
//!
//! Owns the dataplane process: its control API (`control`, what `lab`
//! uses), the engine and its loop, receive and send paths, device
//! offloads, the in-kernel fast path, the delay line of impaired ends
//! (`delay`), and the tc-BPF impairment program `lab` loads (`impair`). Imports `wire`, `sys`, and the
//! tunnel vocabulary (`plan::TunnelEnd`, `topology::overhead`); never `lab`
//! or `cli`.

mod control;
mod delay;
pub mod demux;
mod engine;
mod fast;
pub mod fastpath;
pub mod impair;
mod offload;
mod reload;
mod rx;
mod sock;
mod stats;
mod tx;

#[cfg(test)]
mod testing;

#[cfg(all(test, feature = "root-tests"))]
mod root_tests;

pub use control::{Spec, find, is_running, reload, serve, start, stats_path, stop};
pub use delay::{IMPAIR_FILE, Impaired};
pub use engine::run;
pub use stats::{Stats, TunnelStats, read_stats};
