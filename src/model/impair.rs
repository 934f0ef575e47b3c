//! Impairments of an interface's egress (delay, jitter, loss, duplication,
//! corruption, reordering, rate) and their units: times in `us`, `ms`, `s`;
//! shares in `%`; rates in `bit`, `kbit`, `mbit`, `gbit` (tc's names, powers
//! of 1000). Values are integers (microseconds, millionths, bits per second)
//! so that plans compare exactly and print back as they were written.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A time, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub u64);

/// A share of packets, in millionths (100% = 1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Share(pub u32);

/// A rate, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(pub u64);

/// The longest delay or jitter taken: a lab models paths, not outages.
pub const MAX_DELAY: Micros = Micros(60_000_000);

/// Splits `text` into its number and its unit (`20ms` -> 20, `ms`).
fn number_unit(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(at);
    let n: f64 = n.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

impl Micros {
    /// Parses `20ms`, `500us`, `1.5s`: a duration as every duration of a
    /// topology is read (`model::Duration`), with its unit always written.
    pub fn parse(text: &str) -> Result<Micros, String> {
        let bad =
            || format!("`{text}` is no time: write a number and `us`, `ms` or `s`, like `20ms`");
        let t = text.trim();
        if t.is_empty() || t.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad());
        }
        let d: super::Duration = t.parse().map_err(|_| bad())?;
        let us = (d.0.as_nanos() + 500) / 1000;
        if us > u128::from(MAX_DELAY.0) {
            return Err(format!(
                "`{text}` is longer than 60s, the most grelab takes"
            ));
        }
        Ok(Micros(us as u64))
    }
}

impl Share {
    /// Parses `2%`, `0.5%`; at most `100%`.
    pub fn parse(text: &str) -> Result<Share, String> {
        let bad = || format!("`{text}` is no share: write a number and `%`, like `2%`");
        let (n, unit) = number_unit(text).ok_or_else(bad)?;
        if unit != "%" {
            return Err(bad());
        }
        if n > 100.0 {
            return Err(format!("`{text}` is above 100%"));
        }
        Ok(Share((n * 1e4).round() as u32))
    }

    /// As a fraction of 1.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 1e6
    }

    /// As a fraction of 2^32, the scale of the kernel's random numbers
    /// (netem's `probability`, `bpf_get_prandom_u32`).
    pub fn of_u32(self) -> u32 {
        ((u64::from(self.0) << 32) / 1_000_000).min(u64::from(u32::MAX)) as u32
    }
}

impl Rate {
    /// Parses `10mbit`, `512kbit`, `1gbit`, `8000bit`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || {
            format!(
                "`{text}` is no rate: write a number and `bit`, `kbit`, `mbit` or `gbit`, like `10mbit`"
            )
        };
        let (n, unit) = number_unit(text).ok_or_else(bad)?;
        let scale = match unit.to_ascii_lowercase().as_str() {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            _ => return Err(bad()),
        };
        let r = (n * scale).round();
        // tbf's rate is 64 bits of bytes per second; below 8 kbit a packet takes seconds.
        if r < 8000.0 {
            return Err(format!("`{text}` is below 8kbit, the least grelab takes"));
        }
        if r > 1e12 {
            return Err(format!("`{text}` is above 1000gbit"));
        }
        Ok(Rate(r as u64))
    }

    /// In bytes per second, as tbf counts.
    pub fn bytes_per_second(self) -> u64 {
        self.0 / 8
    }
}

/// Prints `n / div` with at most `places` decimals, no trailing zeros.
fn decimal(n: u64, div: u64, places: usize) -> String {
    let s = format!("{:.*}", places, n as f64 / div as f64);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            us if us >= 1_000_000 && us % 1_000_000 == 0 => write!(f, "{}s", us / 1_000_000),
            us if us >= 1000 && us % 1000 == 0 => write!(f, "{}ms", us / 1000),
            us if us >= 1000 => write!(f, "{}ms", decimal(us, 1000, 3)),
            us => write!(f, "{us}us"),
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", decimal(u64::from(self.0), 10_000, 4))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            r if r >= 1_000_000_000 && r % 10_000_000 == 0 => {
                write!(f, "{}gbit", decimal(r, 1_000_000_000, 2))
            }
            r if r >= 1_000_000 && r % 1000 == 0 => write!(f, "{}mbit", decimal(r, 1_000_000, 3)),
            r if r % 1000 == 0 => write!(f, "{}kbit", r / 1000),
            r => write!(f, "{r}bit"),
        }
    }
}

/// Serde and the JSON Schema for a unit type: text in the file, the plan
/// and the state alike.
macro_rules! unit_text {
    ($t:ty, $name:literal, $desc:literal, $pattern:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(de::Error::custom)
            }
        }
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "description": $desc, "pattern": $pattern})
            }
        }
    };
}

unit_text!(
    Micros,
    "Time",
    "A time: a number and `us`, `ms` or `s`, like `20ms`.",
    "^[0-9]+(\\.[0-9]+)?(us|ms|s)$"
);
unit_text!(
    Share,
    "Share",
    "A share of packets: a number and `%`, like `2%` (at most 100%).",
    "^[0-9]+(\\.[0-9]+)?%$"
);
unit_text!(
    Rate,
    "Rate",
    "A rate: a number and `bit`, `kbit`, `mbit` or `gbit`, like `10mbit`.",
    "^[0-9]+(\\.[0-9]+)?([kKmMgG]?bit)$"
);

/// What one interface's egress suffers. Absent parameters are none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Micros>,
    /// Spread around `delay` (netem's uniform-ish jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Share>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Share>,
    /// One bit flipped in this share of packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Share>,
    /// This share of packets sent at once, the others delayed (needs `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<Share>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// The parameters' names, in the order they print.
pub const PARAMETERS: [&str; 7] = [
    "delay",
    "jitter",
    "loss",
    "duplicate",
    "corrupt",
    "reorder",
    "rate",
];

impl Impairment {
    /// The impairment of `pairs` (name, value), for tests.
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Impairment {
        let mut i = Impairment::default();
        for (k, v) in pairs {
            i.set(k, v).unwrap();
        }
        i
    }

    /// No parameter set.
    pub fn is_empty(&self) -> bool {
        *self == Impairment::default()
    }

    /// Each parameter set, as (name, value as written).
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let s = |v: Option<String>, n| v.map(|v| (n, v));
        [
            s(self.delay.map(|v| v.to_string()), "delay"),
            s(self.jitter.map(|v| v.to_string()), "jitter"),
            s(self.loss.map(|v| v.to_string()), "loss"),
            s(self.duplicate.map(|v| v.to_string()), "duplicate"),
            s(self.corrupt.map(|v| v.to_string()), "corrupt"),
            s(self.reorder.map(|v| v.to_string()), "reorder"),
            s(self.rate.map(|v| v.to_string()), "rate"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Sets parameter `name` from its text (`delay`, `20ms`); a zero value
    /// (or `0`, `none`) clears it.
    pub fn set(&mut self, name: &str, text: &str) -> Result<(), String> {
        fn nz<T: Default + PartialEq>(v: T) -> Option<T> {
            (v != T::default()).then_some(v)
        }
        let off = matches!(text.trim(), "0" | "none");
        match name {
            "delay" if off => self.delay = None,
            "jitter" if off => self.jitter = None,
            "loss" if off => self.loss = None,
            "duplicate" if off => self.duplicate = None,
            "corrupt" if off => self.corrupt = None,
            "reorder" if off => self.reorder = None,
            "rate" if off => self.rate = None,
            _ => {}
        }
        if off && PARAMETERS.contains(&name) {
            return Ok(());
        }
        match name {
            "delay" => self.delay = nz(Micros::parse(text)?),
            "jitter" => self.jitter = nz(Micros::parse(text)?),
            "loss" => self.loss = nz(Share::parse(text)?),
            "duplicate" => self.duplicate = nz(Share::parse(text)?),
            "corrupt" => self.corrupt = nz(Share::parse(text)?),
            "reorder" => self.reorder = nz(Share::parse(text)?),
            "rate" => self.rate = Some(Rate::parse(text)?),
            _ => {
                return Err(format!(
                    "`{name}` is no impairment (one of {})",
                    PARAMETERS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// tbf's bucket for `rate`: 10 ms of it, at least 16 full-size packets
    /// (a smaller bucket starves TCP at high rates).
    pub fn burst_bytes(rate: Rate) -> u64 {
        (rate.bytes_per_second() / 100).max(16 * 1514)
    }

    /// What carries each parameter, like `netem (delay, loss), tbf (rate)`:
    /// on a kernel with sch_netem or without, on a userspace tunnel end
    /// (whose delays grelab's dataplane carries) or another interface.
    pub fn carriers(&self, netem: bool, userspace: bool) -> String {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, _) in self.parameters() {
            let by = match name {
                "rate" => "tbf",
                _ if netem => "netem",
                "delay" | "jitter" | "reorder" if userspace => "the dataplane",
                "delay" | "jitter" | "reorder" => "refused, no sch_netem",
                _ => "tc-BPF",
            };
            match groups.iter_mut().find(|(b, _)| *b == by) {
                Some((_, names)) => names.push(name),
                None => groups.push((by, vec![name])),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(by, names)| format!("{by} ({})", names.join(", ")))
            .collect();
        parts.join(", ")
    }

    /// Whether it needs a queue that holds packets back (netem's delay line).
    pub fn delays(&self) -> bool {
        self.delay.is_some() || self.jitter.is_some() || self.reorder.is_some()
    }

    /// Whether it drops, copies or damages packets (what a tc-BPF program can do).
    pub fn mangles(&self) -> bool {
        self.loss.is_some() || self.duplicate.is_some() || self.corrupt.is_some()
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = self
            .parameters()
            .into_iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        f.write_str(&p.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_unit_and_print_back() {
        assert_eq!(Micros::parse("20ms"), Ok(Micros(20_000)));
        assert_eq!(Micros::parse("500us"), Ok(Micros(500)));
        assert_eq!(Micros::parse("1.5s"), Ok(Micros(1_500_000)));
        assert_eq!(Micros::parse(" 0.25ms "), Ok(Micros(250)));
        for t in ["20ms", "500us", "2s", "1.5ms"] {
            assert_eq!(Micros::parse(t).unwrap().to_string(), t);
        }
        for bad in ["20", "ms", "20 min", "-5ms", "1e3ms", "61s", ""] {
            assert!(Micros::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_stop_at_100_percent() {
        assert_eq!(Share::parse("2%"), Ok(Share(20_000)));
        assert_eq!(Share::parse("0.5%"), Ok(Share(5_000)));
        assert_eq!(Share::parse("100%"), Ok(Share(1_000_000)));
        assert!(Share::parse("100.1%").unwrap_err().contains("above 100%"));
        assert!(Share::parse("5").is_err());
        assert_eq!(Share::parse("0.1%").unwrap().to_string(), "0.1%");
        assert_eq!(Share(1_000_000).of_u32(), u32::MAX);
        assert_eq!(Share(500_000).of_u32(), 1 << 31);
    }

    #[test]
    fn rates_take_tc_units() {
        assert_eq!(Rate::parse("10mbit"), Ok(Rate(10_000_000)));
        assert_eq!(Rate::parse("512kbit"), Ok(Rate(512_000)));
        assert_eq!(Rate::parse("1Gbit"), Ok(Rate(1_000_000_000)));
        assert_eq!(Rate::parse("10mbit").unwrap().to_string(), "10mbit");
        assert_eq!(Rate::parse("1.5mbit").unwrap().to_string(), "1.5mbit");
        assert!(Rate::parse("10mbps").is_err());
        assert!(Rate::parse("1kbit").unwrap_err().contains("below 8kbit"));
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let mut now = Impairment::default();
        now.set("delay", "20ms").unwrap();
        now.set("loss", "5%").unwrap();
        now.set("delay", "50ms").unwrap();
        assert_eq!(now.to_string(), "delay 50ms loss 5%");
        now.set("loss", "0%").unwrap();
        assert_eq!(now.to_string(), "delay 50ms");
        now.set("rate", "1mbit").unwrap();
        now.set("rate", "none").unwrap();
        now.set("delay", "0").unwrap();
        assert!(now.is_empty(), "{now}");
        assert!(now.set("latency", "1ms").is_err());
    }

    #[test]
    fn each_parameter_is_said_to_be_carried_by_what_the_kernel_has() {
        let mut i = Impairment::default();
        for (k, v) in [("delay", "20ms"), ("loss", "1%"), ("rate", "1mbit")] {
            i.set(k, v).unwrap();
        }
        assert_eq!(i.carriers(true, false), "netem (delay, loss), tbf (rate)");
        assert_eq!(
            i.carriers(false, true),
            "the dataplane (delay), tc-BPF (loss), tbf (rate)"
        );
        assert_eq!(
            i.carriers(false, false),
            "refused, no sch_netem (delay), tc-BPF (loss), tbf (rate)"
        );
    }
}
