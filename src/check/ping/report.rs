//! What one ping run saw, and the text iputils `ping` prints for it.

use std::net::IpAddr;
use std::time::Duration;

use super::ICMP_HDR;

/// One echo reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// ICMP sequence number, from 1.
    pub seq: u16,
    /// ICMP bytes received (header + payload), as ping prints them.
    pub bytes: usize,
    /// TTL / hop limit of the reply.
    pub ttl: u8,
    /// Round-trip time.
    pub rtt: Duration,
    /// Who replied.
    pub from: IpAddr,
}

/// What one ping run saw.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// The address pinged.
    pub target: IpAddr,
    /// ICMP payload bytes per request.
    pub payload: usize,
    /// Requests sent.
    pub transmitted: u32,
    /// Replies, in order of arrival; duplicates are dropped.
    pub replies: Vec<Reply>,
    /// ICMP errors from the path and failed sends, as ping prints them.
    pub errors: Vec<String>,
    /// From the first request to the last, as iputils counts `time`.
    pub elapsed: Duration,
}

impl PingReport {
    /// Replies received.
    pub fn received(&self) -> u32 {
        self.replies.len() as u32
    }

    /// Lost requests in percent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        let lost = self.transmitted.saturating_sub(self.received());
        f64::from(lost) * 100.0 / f64::from(self.transmitted)
    }

    /// Round-trip min, avg, max and mdev, if any reply came.
    pub fn rtt_stats(&self) -> Option<(Duration, Duration, Duration, Duration)> {
        // Whole nanoseconds, so an average like 110 us stays exact.
        let ns: Vec<u128> = self.replies.iter().map(|r| r.rtt.as_nanos()).collect();
        let n = ns.len() as u128;
        let min = *ns.iter().min()?;
        let max = *ns.iter().max()?;
        let avg = ns.iter().sum::<u128>() / n;
        // mdev as iputils defines it: sqrt(E[rtt^2] - E[rtt]^2).
        let var = ns
            .iter()
            .map(|&x| (x as f64 - avg as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let d = |x: u128| Duration::from_nanos(u64::try_from(x).unwrap_or(u64::MAX));
        Some((
            d(min),
            d(avg),
            d(max),
            Duration::from_secs_f64(var.sqrt() / 1e9),
        ))
    }

    /// The run as iputils `ping` prints it (errors after the replies).
    pub fn lines(&self) -> Vec<String> {
        let t = self.target;
        let mut out = Vec::with_capacity(self.replies.len() + self.errors.len() + 4);
        out.push(match t {
            IpAddr::V4(_) => format!(
                "PING {t} ({t}) {}({}) bytes of data.",
                self.payload,
                self.payload + ICMP_HDR + 20
            ),
            IpAddr::V6(_) => format!("PING {t}({t}) {} data bytes", self.payload),
        });
        for r in &self.replies {
            out.push(format!(
                "{} bytes from {}: icmp_seq={} ttl={} time={} ms",
                r.bytes,
                r.from,
                r.seq,
                r.ttl,
                reply_ms(r.rtt)
            ));
        }
        out.extend(self.errors.iter().cloned());
        out.push(String::new());
        out.push(format!("--- {t} ping statistics ---"));
        let errors = match self.errors.len() {
            0 => String::new(),
            n => format!("+{n} errors, "),
        };
        out.push(format!(
            "{} packets transmitted, {} received, {errors}{}% packet loss, time {}ms",
            self.transmitted,
            self.received(),
            fmt_g(self.loss_percent()),
            self.elapsed.as_millis()
        ));
        if let Some((min, avg, max, mdev)) = self.rtt_stats() {
            out.push(format!(
                "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
                stat_ms(min),
                stat_ms(avg),
                stat_ms(max),
                stat_ms(mdev)
            ));
        }
        out
    }
}

/// A reply time as iputils prints it: whole microseconds, cut (not rounded)
/// to 3 significant decimals below 100 ms.
fn reply_ms(rtt: Duration) -> String {
    let us = rtt.as_micros();
    let (ms, frac) = (us / 1000, us % 1000);
    match ms {
        100.. => format!("{ms}"),
        10.. => format!("{ms}.{}", frac / 100),
        1.. => format!("{ms}.{:02}", frac / 10),
        _ => format!("0.{frac:03}"),
    }
}

/// Milliseconds with 3 decimals, cut to whole microseconds as iputils does.
fn stat_ms(d: Duration) -> String {
    let us = d.as_micros();
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// C's `%g`: 6 significant digits, trailing zeros dropped.
fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let decimals = (5 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(target: &str, rtts_us: &[u64], transmitted: u32, errors: &[&str]) -> PingReport {
        let target: IpAddr = target.parse().unwrap();
        PingReport {
            target,
            payload: 56,
            transmitted,
            replies: rtts_us
                .iter()
                .enumerate()
                .map(|(i, us)| Reply {
                    seq: i as u16 + 1,
                    bytes: 64,
                    ttl: 64,
                    rtt: Duration::from_micros(*us),
                    from: target,
                })
                .collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            elapsed: Duration::from_micros(402_300),
        }
    }

    #[test]
    fn lines_match_iputils() {
        let r = report("192.168.50.2", &[94, 112, 124], 3, &[]);
        assert_eq!(
            r.lines(),
            [
                "PING 192.168.50.2 (192.168.50.2) 56(84) bytes of data.",
                "64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.094 ms",
                "64 bytes from 192.168.50.2: icmp_seq=2 ttl=64 time=0.112 ms",
                "64 bytes from 192.168.50.2: icmp_seq=3 ttl=64 time=0.124 ms",
                "",
                "--- 192.168.50.2 ping statistics ---",
                "3 packets transmitted, 3 received, 0% packet loss, time 402ms",
                "rtt min/avg/max/mdev = 0.094/0.110/0.124/0.012 ms",
            ]
        );
        assert_eq!(r.received(), 3);
        assert_eq!(r.loss_percent(), 0.0);
    }

    #[test]
    fn lines_with_loss_errors_and_v6() {
        let r = report(
            "fd00::2",
            &[1_234],
            3,
            &["From fd00::1 icmp_seq=2 Destination unreachable: Address unreachable"],
        );
        let lines = r.lines();
        assert_eq!(lines[0], "PING fd00::2(fd00::2) 56 data bytes");
        assert_eq!(
            lines[1],
            "64 bytes from fd00::2: icmp_seq=1 ttl=64 time=1.23 ms"
        );
        assert_eq!(
            lines[2],
            "From fd00::1 icmp_seq=2 Destination unreachable: Address unreachable"
        );
        assert_eq!(
            lines[5],
            "3 packets transmitted, 1 received, +1 errors, 66.6667% packet loss, time 402ms"
        );
        assert_eq!(
            lines[6],
            "rtt min/avg/max/mdev = 1.234/1.234/1.234/0.000 ms"
        );
        assert!((r.loss_percent() - 66.666_666).abs() < 1e-3);

        let none = report("192.0.2.9", &[], 3, &[]);
        assert_eq!(none.loss_percent(), 100.0);
        assert!(none.rtt_stats().is_none());
        let lines = none.lines();
        assert_eq!(
            lines.last().unwrap(),
            "3 packets transmitted, 0 received, 100% packet loss, time 402ms"
        );
    }

    #[test]
    fn reply_times_and_percentages_format_like_c() {
        let ms = |us| reply_ms(Duration::from_micros(us));
        assert_eq!(ms(94), "0.094");
        assert_eq!(ms(1_239), "1.23");
        assert_eq!(ms(12_345), "12.3");
        assert_eq!(ms(123_456), "123");
        assert_eq!(fmt_g(100.0), "100");
        assert_eq!(fmt_g(100.0 / 3.0), "33.3333");
        assert_eq!(fmt_g(50.0), "50");
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(100.0 / 7.0), "14.2857");
    }
}
