//! Units a topology file writes as text: durations (`250us`, `500ms`, `1.5s`,
//! `2m`). Parsed exactly, in integers (no float rounding), so what a file
//! says is what runs, and printed back in the same notation.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A length of time, as a topology file writes it: a decimal number and a
/// unit (`ns`, `us`, `ms`, `s`, `m`, `h`), or several (`1m30s`). A bare number is seconds, as the
/// `timeout` fields always were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// The units, longest name first so `ms` is not read as `m`.
const UNITS: [(&str, u128); 9] = [
    ("min", 60_000_000_000),
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("", 1_000_000_000),
];

impl Duration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// As the standard library's duration.
    pub const fn std(self) -> std::time::Duration {
        self.0
    }

    /// A number of seconds as a YAML float gives it; refuses NaN, negatives
    /// and what no duration holds.
    pub fn from_secs_f64(secs: f64) -> Result<Duration, DurationError> {
        if secs.is_nan() {
            return Err(DurationError::new(secs.to_string(), "is not a number"));
        }
        if secs < 0.0 {
            return Err(DurationError::negative(secs.to_string()));
        }
        std::time::Duration::try_from_secs_f64(secs)
            .map(Duration)
            .map_err(|_| DurationError::new(secs.to_string(), "is too long"))
    }
}

/// Why a text is no duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl DurationError {
    fn new(text: impl Into<String>, why: &'static str) -> DurationError {
        DurationError {
            text: text.into(),
            why,
        }
    }

    fn negative(text: impl Into<String>) -> DurationError {
        DurationError::new(text, "is negative: a duration is 0 or more")
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "duration `{}` {}; write a number and a unit, like 250us, 500ms, 1.5s, 2m",
            self.text, self.why
        )
    }
}

impl std::error::Error for DurationError {}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let s = text.trim();
        if s.starts_with('-') {
            return Err(DurationError::negative(text));
        }
        if s.is_empty() {
            return Err(DurationError::new(text, "has no number"));
        }
        // One or more parts, each a number and its unit: `1m30s`.
        let too_long = || DurationError::new(text, "is too long");
        let mut rest = s;
        let mut ns: u128 = 0;
        while !rest.is_empty() {
            let is_number = |c: char| c.is_ascii_digit() || c == '.';
            let n = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
            let u = rest[n..].find(is_number).map_or(rest.len(), |u| n + u);
            let (number, unit) = (&rest[..n], &rest[n..u]);
            if unit.is_empty() && (u < s.len() || ns > 0) {
                return Err(DurationError::new(text, "has a number without a unit"));
            }
            ns = ns
                .checked_add(part_ns(text, number, unit)?)
                .ok_or_else(too_long)?;
            rest = &rest[u..];
        }
        let secs = u64::try_from(ns / 1_000_000_000).map_err(|_| too_long())?;
        Ok(Duration(std::time::Duration::new(
            secs,
            (ns % 1_000_000_000) as u32,
        )))
    }
}

/// Nanoseconds in `number` `unit` (one part of `text`), exactly.
fn part_ns(text: &str, number: &str, unit: &str) -> Result<u128, DurationError> {
    let bad = |why| DurationError::new(text, why);
    let &(_, scale) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| bad("has an unknown unit (units: ns, us, ms, s, m, h)"))?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("has no number"));
    }
    if frac.contains('.') {
        return Err(bad("is no number"));
    }
    let too_long = || bad("is too long");
    let digits = |d: &str| -> Result<u128, DurationError> {
        if d.is_empty() {
            return Ok(0);
        }
        d.parse::<u128>().map_err(|_| too_long())
    };
    // whole * scale + frac * scale / 10^len(frac).
    let places = u32::try_from(frac.len()).map_err(|_| too_long())?;
    let ten = 10u128.checked_pow(places).ok_or_else(too_long)?;
    let frac_ns = digits(frac)?.checked_mul(scale).ok_or_else(too_long)?;
    if frac_ns % ten != 0 {
        return Err(bad("is finer than a nanosecond"));
    }
    digits(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_ns / ten))
        .ok_or_else(too_long)
}

impl fmt::Display for Duration {
    /// The largest unit that shows it exactly: `5s`, `1.5s`, `500ms`, `250us`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if secs > 0 {
            let frac = format!("{nanos:09}");
            write!(f, "{secs}.{}s", frac.trim_end_matches('0'))
        } else if nanos % 1_000_000 == 0 {
            write!(f, "{}ms", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            write!(f, "{}us", nanos / 1_000)
        } else {
            write!(f, "{nanos}ns")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 1.5s or 2m (a bare number is seconds)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                let secs = u64::try_from(v)
                    .map_err(|_| E::custom(DurationError::negative(v.to_string())))?;
                Ok(Duration::from_secs(secs))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::from_secs_f64(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// A number (seconds) or a string of numbers and units, as `FromStr` reads it.
impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A length of time: a number of seconds, or numbers with units (ns, us, ms, s, m, min, h), like `500ms`, `1.5s`, `1m30s`.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9.]+[0-9.a-zµ]*\\s*$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<std::time::Duration, DurationError> {
        s.parse::<Duration>().map(Duration::std)
    }

    #[test]
    fn every_unit_and_fractions_parse_exactly() {
        use std::time::Duration as D;
        assert_eq!(d("500ms"), Ok(D::from_millis(500)));
        assert_eq!(d("30s"), Ok(D::from_secs(30)));
        assert_eq!(d("2m"), Ok(D::from_secs(120)));
        assert_eq!(d("2min"), Ok(D::from_secs(120)));
        assert_eq!(d("1h"), Ok(D::from_secs(3600)));
        assert_eq!(d("1.5s"), Ok(D::from_millis(1500)));
        assert_eq!(d("250us"), Ok(D::from_micros(250)));
        assert_eq!(d("250µs"), Ok(D::from_micros(250)));
        assert_eq!(d("7ns"), Ok(D::from_nanos(7)));
        assert_eq!(d("0.1s"), Ok(D::from_millis(100)));
        assert_eq!(d(".5ms"), Ok(D::from_micros(500)));
        assert_eq!(d("2.ms"), Ok(D::from_millis(2)));
        assert_eq!(d("0"), Ok(D::ZERO));
        assert_eq!(d("3"), Ok(D::from_secs(3)));
        assert_eq!(d("0.000000001"), Ok(D::from_nanos(1)));
        assert_eq!(d("1m30s"), Ok(D::from_secs(90)));
        assert_eq!(d("1h2m3.5s"), Ok(D::from_millis(3_723_500)));
        assert_eq!(d("10m1s"), Ok(D::from_secs(601)));
    }

    #[test]
    fn what_is_no_duration_says_why() {
        for (text, why) in [
            ("3 apples", "unknown unit"),
            ("3apples", "unknown unit"),
            ("ms", "no number"),
            ("", "no number"),
            ("-5s", "negative"),
            ("1.2.3s", "no number"),
            ("1.5ns", "finer than a nanosecond"),
            ("99999999999999999999999999999999999999h", "too long"),
            ("9999999999999999h", "too long"),
            ("1m30", "without a unit"),
            ("30 1m", "unknown unit"),
            ("1m-2s", "unknown unit"),
        ] {
            let e = d(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains(&format!("`{text}`")), "{text}: {e}");
        }
    }

    #[test]
    fn display_is_exact_and_parses_back() {
        for (text, shown) in [
            ("5s", "5s"),
            ("2m", "120s"),
            ("1.5s", "1.5s"),
            ("1.000001s", "1.000001s"),
            ("500ms", "500ms"),
            ("250us", "250us"),
            ("7ns", "7ns"),
            ("0", "0s"),
        ] {
            let x: Duration = text.parse().unwrap();
            assert_eq!(x.to_string(), shown);
            assert_eq!(shown.parse::<Duration>().unwrap(), x);
        }
    }

    #[test]
    fn numbers_are_seconds_and_bad_numbers_are_refused() {
        let j = |s: &str| serde_json::from_str::<Duration>(s).map_err(|e| e.to_string());
        assert_eq!(j("5"), Ok(Duration::from_secs(5)));
        assert_eq!(j("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(j("\"250ms\""), Ok(Duration::from_millis(250)));
        assert!(j("-1").unwrap_err().contains("negative"));
        assert!(j("-0.5").unwrap_err().contains("negative"));
        assert!(j("1e300").unwrap_err().contains("too long"));
        assert!(Duration::from_secs_f64(f64::NAN).is_err());
        let back = serde_json::to_string(&Duration::from_millis(1500)).unwrap();
        assert_eq!(back, "\"1.5s\"");
    }
}
