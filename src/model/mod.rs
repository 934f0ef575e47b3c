//! The vocabulary every layer speaks: tunnel kinds and their GRE options, the
//! header overhead (the MTU arithmetic), addresses with prefixes, backends,
//! units (durations).
//! It imports nothing of the crate (serde only), so anything may import it;
//! it never reads files, parses YAML or touches the system.

mod backend;
mod impair;
mod net;
mod overhead;
mod tunnel;
mod units;

pub use backend::Backend;
pub use impair::{Impairment, MAX_DELAY, Micros, PARAMETERS, Rate, Share};
pub use net::{Family, IpNet};
pub(crate) use overhead::Overhead;
pub use overhead::overhead;
pub use tunnel::{EndOptions, TunnelEnd, TunnelKind};
pub use units::{Duration, DurationError};
