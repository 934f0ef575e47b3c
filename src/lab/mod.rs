//! A lab's life on the host: `up` (apply a plan, journal, roll back),
//! `configure` (one namespace's settings), `impair` (what carries each
//! impairment, refusing what the kernel cannot; changes at run time),
//! `keeper` (the nodes' programs and views), `progress` (the progress line,
//! timings), `teardown` (down), `state` (the record, checked directory
//! handles, locks), `journal` (proof of the namespaces a lab created).
//! Imports `sys`, `plan`, `topology`; knows the dataplane by its control
//! API (start, stop, identity, stats) and its impairments (the tc-BPF
//! program it loads, the file of delays); never imports `check` or `cli`.

mod configure;
pub mod impair;
pub mod journal;
pub mod keeper;
mod progress;
pub mod reconcile;
pub mod state;
pub mod teardown;
pub mod up;
