//! A lab's life on the host: `up` (apply a plan, journal, roll back),
//! `teardown` (down), `state` (the record, checked directory handles,
//! locks), `journal` (proof of the namespaces a lab created), `interrupt`
//! (signals during `up`, crash points for tests). Knows the dataplane only
//! by its control API (start, stop, identity, stats).

pub mod interrupt;
pub mod journal;
pub mod state;
pub mod teardown;
pub mod up;
