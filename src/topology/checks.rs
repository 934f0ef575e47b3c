//! The checks a topology asks `verify` to run.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A check that `verify` runs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// Ping from a node to an address (expect success, or failure for isolation).
    Ping(PingCheck),
    /// Path MTU across a tunnel: a DF probe filling the MTU passes, one byte more is refused.
    Mtu(TunnelCheck),
    /// The packet on the wire: outer header, GRE header and inner packet as configured.
    Encap(TunnelCheck),
    /// Traffic from a node to an address leaves through the expected interface.
    Route(RouteCheck),
    /// A command in a node exits with the expected code.
    Exec(ExecCheck),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PingCheck {
    pub from: String,
    pub to: IpAddr,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub expect: Expect,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TunnelCheck {
    pub tunnel: String,
    /// The end to probe from (default: the tunnel's first endpoint).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    pub from: String,
    pub to: IpAddr,
    /// The interface traffic must leave through.
    pub dev: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCheck {
    pub node: String,
    /// The program and its arguments.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub exit: i32,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

fn default_count() -> u32 {
    3
}

fn default_timeout() -> f64 {
    5.0
}

/// What a ping check expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    #[default]
    Success,
    Failure,
}
