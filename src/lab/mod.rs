//! A lab's life on the host: `up` (apply a plan, journal, roll back),
//! `configure` (one namespace's settings), `keeper` (the nodes' programs
//! and views), `progress` (the progress line,
//! timings), `teardown` (down), `state` (the record, checked directory
//! handles, locks), `journal` (proof of the namespaces a lab created).
//! Imports `sys`, `plan`, `topology`; knows the dataplane only by its
//! control API (start, stop, identity, stats); never imports `check` or `cli`.

mod configure;
pub mod journal;
pub mod keeper;
mod progress;
pub mod reconcile;
pub mod state;
pub mod teardown;
pub mod up;
