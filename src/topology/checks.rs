//! The checks a topology asks `verify` to run.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{Duration, Micros, Share};

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

/// What a ping check expects: every request answered (`success`), none
/// (`failure`), or bounds on what the path does, `{loss: "< 5%", rtt: "< 50ms"}`
/// (the share of requests unanswered; the average round trip).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expect {
    #[default]
    Success,
    Failure,
    Path(PathExpect),
}

/// Bounds on a path's loss and round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Bound<Share>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Bound<Micros>>,
}

/// `< 5%`, `<= 50ms`, `> 1%`, `>= 10ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound<T> {
    pub op: &'static str,
    pub value: T,
}

impl<T: PartialOrd> Bound<T> {
    /// Whether `v` is within the bound.
    pub fn holds(&self, v: T) -> bool {
        match self.op {
            "<" => v < self.value,
            "<=" => v <= self.value,
            ">" => v > self.value,
            _ => v >= self.value,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Bound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

/// The units a bound may hold.
trait Unit: Sized {
    fn parse_unit(text: &str) -> Result<Self, String>;
}

impl Unit for Share {
    fn parse_unit(text: &str) -> Result<Self, String> {
        Share::parse(text)
    }
}

impl Unit for Micros {
    fn parse_unit(text: &str) -> Result<Self, String> {
        Micros::parse(text)
    }
}

impl<'de, T: Unit> Deserialize<'de> for Bound<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        let op = ["<=", ">=", "<", ">"]
            .into_iter()
            .find(|op| t.starts_with(op))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "`{s}` is no bound: write `<`, `<=`, `>` or `>=` and a value, like `< 5%`"
                ))
            })?;
        let value = T::parse_unit(&t[op.len()..]).map_err(de::Error::custom)?;
        Ok(Bound { op, value })
    }
}

impl<T: fmt::Display> Serialize for Bound<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<T> JsonSchema for Bound<T> {
    fn schema_name() -> Cow<'static, str> {
        "Bound".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A comparison and a value, like `< 5%` or `<= 50ms`.",
            "pattern": "^\\s*(<=|>=|<|>)\\s*[0-9]"
        })
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`success`, `failure`, or bounds like `{loss: \"< 5%\", rtt: \"< 50ms\"}`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                match v {
                    "success" => Ok(Expect::Success),
                    "failure" => Ok(Expect::Failure),
                    _ => Err(E::unknown_variant(v, &["success", "failure"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Expect, A::Error> {
                PathExpect::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Expect::Path)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expect::Success => s.serialize_str("success"),
            Expect::Failure => s.serialize_str("failure"),
            Expect::Path(p) => p.serialize(s),
        }
    }
}

impl JsonSchema for Expect {
    fn schema_name() -> Cow<'static, str> {
        "Expect".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let path = generator.subschema_for::<PathExpect>();
        json_schema!({
            "description": "`success` (every request answered), `failure` (none), or bounds on the path's loss and average round trip.",
            "anyOf": [{"enum": ["success", "failure"]}, path]
        })
    }
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

    #[test]
    fn path_expectations_hold_as_written_and_survive_the_record() {
        let e: Expect = serde_json::from_str(r#"{"loss": "< 5%", "rtt": ">= 35ms"}"#).unwrap();
        let Expect::Path(p) = e else { panic!("{e:?}") };
        let (loss, rtt) = (p.loss.unwrap(), p.rtt.unwrap());
        assert!(loss.holds(Share(49_999)) && !loss.holds(Share(50_000)));
        assert!(rtt.holds(Micros(35_000)) && !rtt.holds(Micros(34_999)));
        // The lab's record stores the plan's checks as JSON, read back by verify.
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"loss":"< 5%","rtt":">= 35ms"}"#);
        assert_eq!(serde_json::from_str::<Expect>(&json).unwrap(), e);
        for (text, want) in [
            (r#""success""#, Expect::Success),
            (r#""failure""#, Expect::Failure),
        ] {
            assert_eq!(serde_json::from_str::<Expect>(text).unwrap(), want);
            assert_eq!(serde_json::to_string(&want).unwrap(), text);
        }
        assert!(serde_json::from_str::<Expect>(r#"{"loss": "5%"}"#).is_err());
        assert!(serde_json::from_str::<Expect>(r#"{"jitter": "< 5ms"}"#).is_err());
    }
}
