//! Addresses with their prefix length, and address families.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// An address with its prefix length, as `172.16.10.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    fn max_prefix(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// The network address (host bits cleared), as a number.
    fn bits(&self) -> u128 {
        let (v, width) = match self.addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let host = width - u32::from(self.prefix);
        if host >= 128 { 0 } else { (v >> host) << host }
    }

    /// The network address: host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((self.bits() as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(self.bits().into()),
        }
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == Family::of(&self.addr)
            && IpNet {
                addr: *ip,
                prefix: self.prefix,
            }
            .bits()
                == self.bits()
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if shorter == self { other } else { self };
        shorter.contains(&longer.addr)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` needs a prefix length, like `10.0.0.1/24`"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= Self::max_prefix(&addr))
            .ok_or_else(|| {
                format!(
                    "`{p}` is not a prefix length for {addr} (0..={})",
                    Self::max_prefix(&addr)
                )
            })?;
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

// As strict as `from_str`, for IPv4 (octets without leading zeros); IPv6
// only by its colon. Rust reads `+24` and `024` as a prefix length: so do they.
impl schemars::JsonSchema for IpNet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IpNet".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
        let v4 = format!(r"^({OCTET}\.){{3}}{OCTET}/\+?0*(3[0-2]|[12]?[0-9])$");
        let v6 = r"^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/\+?0*(12[0-8]|1[01][0-9]|[1-9]?[0-9])$";
        schemars::json_schema!({
            "type": "string",
            "description": "An IPv4 or IPv6 address with its prefix length, like `172.16.10.2/24` or `fd00::1/64`.",
            "anyOf": [{"pattern": v4}, {"pattern": v6}]
        })
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
