//! The checks a topology asks `verify` to run.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Duration;

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
    /// A TCP connection from a node to an address and port is accepted.
    Tcp(TcpCheck),
    /// UDP sent to a multicast group from one node arrives, joined, at another.
    Multicast(MulticastCheck),
}

impl Check {
    /// How long the check is retried until it passes (None: it runs once).
    pub fn within(&self) -> Option<Duration> {
        match self {
            Check::Ping(c) => c.within,
            Check::Mtu(c) | Check::Encap(c) => c.within,
            Check::Route(c) => c.within,
            Check::Exec(c) => c.within,
            Check::Tcp(c) => c.within,
            Check::Multicast(c) => c.within,
        }
    }

    /// How long one attempt may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Check::Ping(c) => c.timeout,
            Check::Mtu(c) | Check::Encap(c) => c.timeout,
            Check::Route(c) => c.timeout,
            Check::Exec(c) => c.timeout,
            Check::Tcp(c) => c.timeout,
            Check::Multicast(c) => c.timeout,
        }
    }
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
    /// Time between echo requests.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long to wait for the last reply.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TunnelCheck {
    pub tunnel: String,
    /// The end to probe from (default: the tunnel's first endpoint).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Retried until it passes or this runs out (absent: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    pub from: String,
    pub to: IpAddr,
    /// The interface traffic must leave through.
    pub dev: String,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Retried until it passes or this runs out (absent: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
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
    pub timeout: Duration,
    /// Retried until it passes or this runs out (absent: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    pub from: String,
    pub to: IpAddr,
    pub port: u16,
    /// How long one connection attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MulticastCheck {
    /// The sending node.
    pub from: String,
    /// The receiving node: it joins the group.
    pub to: String,
    pub group: IpAddr,
    #[serde(default = "default_multicast_port")]
    pub port: u16,
    /// The interface of `from` to send through (default: the route lookup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The interface of `to` that joins (default: every interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// How long one attempt waits for a datagram.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

fn default_multicast_port() -> u16 {
    5007
}

fn default_count() -> u32 {
    3
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Echoes a few milliseconds apart: lab links are local, and as root any
/// interval is allowed (iputils' 1 s would only make checks slow).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(5);

fn default_interval() -> Duration {
    DEFAULT_PING_INTERVAL
}

/// What a ping check expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    #[default]
    Success,
    Failure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_from_before_durations_still_reads() {
        // Records kept `timeout` as a float of seconds.
        let old =
            r#"{"ping":{"from":"a","to":"10.0.0.1","count":3,"expect":"success","timeout":2.5}}"#;
        let c: Check = serde_json::from_str(old).unwrap();
        assert_eq!(c.timeout(), "2.5s".parse().unwrap());
        assert_eq!(c.within(), None);
        let Check::Ping(p) = &c else { panic!("{c:?}") };
        assert_eq!(p.interval, DEFAULT_PING_INTERVAL);
    }

    #[test]
    fn every_kind_round_trips_with_its_waits() {
        for text in [
            r#"{"ping":{"from":"a","to":"10.0.0.1","count":2,"expect":"failure","interval":"1ms","timeout":"1s","within":"30s"}}"#,
            r#"{"tcp":{"from":"a","to":"10.0.0.1","port":179,"timeout":"500ms","within":"10s"}}"#,
            r#"{"multicast":{"from":"a","to":"b","group":"239.1.1.1","port":5007,"dev":"tun0","join":"eth0","timeout":"5s","within":"1m"}}"#,
            r#"{"route":{"from":"a","to":"10.0.0.1","dev":"tun0","timeout":"5s","within":"1.5s"}}"#,
        ] {
            let c: Check = serde_json::from_str(text).unwrap();
            assert!(c.within().is_some(), "{text}");
            let back = serde_json::to_string(&c).unwrap();
            let again: Check = serde_json::from_str(&back).unwrap();
            assert_eq!(serde_json::to_string(&again).unwrap(), back);
        }
    }
}
