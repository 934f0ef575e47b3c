//! Check results for people (plain text), programs (JSON) and CI (JUnit XML).

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The lab behaves as the check expects.
    Pass,
    /// The lab does not behave as the check expects.
    Fail,
    /// The check could not run (a socket or namespace error, say).
    Error,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// What was checked, e.g. `ping host1 -> 192.168.50.2`.
    pub name: String,
    /// The kind of check: `ping`, `mtu`, `encap`...
    pub kind: String,
    /// How it ended.
    pub status: Status,
    /// How long it took; seconds (a float) in JSON.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// One line: what passed, or what is wrong.
    pub summary: String,
    /// Extra lines: ping output, a decoded packet...
    pub details: Vec<String>,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// (passed, failed): errors count as failed, as CI should see them.
fn counts(results: &[CheckResult]) -> (usize, usize) {
    let passed = results.iter().filter(|r| r.status == Status::Pass).count();
    (passed, results.len() - passed)
}

/// One line per check, details under failures (and under passes when
/// `verbose`), then the closing line `N passed, M failed`.
pub fn human(results: &[CheckResult], verbose: bool) -> String {
    let width = results
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{:<5} {:<width$}   {}  ({} ms)",
            r.status.label(),
            r.name,
            r.summary,
            r.duration.as_millis()
        );
        if verbose || r.status != Status::Pass {
            for d in &r.details {
                let _ = writeln!(out, "      {d}");
            }
        }
    }
    let (passed, failed) = counts(results);
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    out
}

/// The results as pretty JSON: `{"lab", "passed", "failed", "checks": [...]}`.
pub fn json(lab: &str, results: &[CheckResult]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        lab: &'a str,
        passed: usize,
        failed: usize,
        checks: &'a [CheckResult],
    }
    let (passed, failed) = counts(results);
    let doc = Doc {
        lab,
        passed,
        failed,
        checks: results,
    };
    // Strings, numbers and a finite float: serialising cannot fail.
    serde_json::to_string_pretty(&doc).expect("check results always serialise") + "\n"
}

/// The results as JUnit XML, one `<testsuite>` per lab, as Jenkins and GitLab
/// read it. A failing check's details are the body of its `<failure>` (or
/// `<error>`); a passing check's go to `<system-out>`.
pub fn junit(lab: &str, results: &[CheckResult]) -> String {
    let n = results.len();
    let failures = results.iter().filter(|r| r.status == Status::Fail).count();
    let errors = results.iter().filter(|r| r.status == Status::Error).count();
    let time: Duration = results.iter().map(|r| r.duration).sum();
    let counts = format!(
        r#"tests="{n}" failures="{failures}" errors="{errors}" time="{:.3}""#,
        time.as_secs_f64()
    );
    let lab_attr = attr(lab);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, r#"<testsuites name="grelab" {counts}>"#);
    let _ = writeln!(x, r#"  <testsuite name="{lab_attr}" {counts} skipped="0">"#);
    for r in results {
        // Jenkins splits classname at its last dot: package = lab, class = kind.
        let _ = write!(
            x,
            r#"    <testcase name="{}" classname="{lab_attr}.{}" time="{:.3}""#,
            attr(&r.name),
            attr(&r.kind),
            r.duration.as_secs_f64()
        );
        let body = text(&r.details.join("\n"));
        match r.status {
            Status::Pass if r.details.is_empty() => x.push_str("/>\n"),
            Status::Pass => {
                let _ = write!(
                    x,
                    ">\n      <system-out>{body}</system-out>\n    </testcase>\n"
                );
            }
            Status::Fail | Status::Error => {
                let tag = if r.status == Status::Fail {
                    "failure"
                } else {
                    "error"
                };
                let _ = write!(
                    x,
                    ">\n      <{tag} message=\"{}\" type=\"{}\">{body}</{tag}>\n    </testcase>\n",
                    attr(&r.summary),
                    attr(&r.kind)
                );
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// `s` escaped for an XML attribute value (line breaks kept as references).
fn attr(s: &str) -> String {
    escape(s, true)
}

/// `s` escaped for XML character data.
fn text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attr => out.push_str("&quot;"),
            '\'' if in_attr => out.push_str("&apos;"),
            // Parsers turn raw line breaks and tabs in attributes into spaces.
            '\n' if in_attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if in_attr => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            // Other control characters are not allowed in XML 1.0 at all,
            // not even as references.
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn check(
        name: &str,
        kind: &str,
        status: Status,
        ms: u64,
        summary: &str,
        details: &[&str],
    ) -> CheckResult {
        CheckResult {
            name: name.into(),
            kind: kind.into(),
            status,
            duration: Duration::from_millis(ms),
            summary: summary.into(),
            details: details.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn sample() -> Vec<CheckResult> {
        vec![
            check(
                "ping host1 -> 192.168.50.2",
                "ping",
                Status::Pass,
                12,
                "3/3 replies, rtt avg 0.110 ms",
                &["64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.094 ms"],
            ),
            check(
                "mtu host1 -> host2",
                "mtu",
                Status::Fail,
                1520,
                "1472 bytes with DF did not pass: path MTU is 1400",
                &[
                    "From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)",
                    "second line",
                ],
            ),
            check(
                "encap r1",
                "encap",
                Status::Error,
                3,
                "cannot open a capture socket",
                &[],
            ),
        ]
    }

    #[test]
    fn human_lists_checks_then_the_plain_closing_line() {
        let quiet = human(&sample(), false);
        assert_eq!(
            quiet,
            "PASS  ping host1 -> 192.168.50.2   3/3 replies, rtt avg 0.110 ms  (12 ms)\n\
             FAIL  mtu host1 -> host2           1472 bytes with DF did not pass: path MTU is 1400  (1520 ms)\n\
             \x20     From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n\
             \x20     second line\n\
             ERROR encap r1                     cannot open a capture socket  (3 ms)\n\
             1 passed, 2 failed\n"
        );
        let verbose = human(&sample(), true);
        let lines: Vec<&str> = verbose.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[1],
            "      64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.094 ms"
        );
        assert_eq!(human(&[], false), "0 passed, 0 failed\n");
    }

    #[test]
    fn json_parses_back_with_every_field() {
        let v: Value = serde_json::from_str(&json("lab-1", &sample())).unwrap();
        assert_eq!(v["lab"], "lab-1");
        assert_eq!(v["passed"], 1);
        assert_eq!(v["failed"], 2);
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 3);
        assert_eq!(checks[0]["name"], "ping host1 -> 192.168.50.2");
        assert_eq!(checks[0]["kind"], "ping");
        assert_eq!(checks[0]["status"], "pass");
        assert_eq!(checks[1]["status"], "fail");
        assert_eq!(checks[2]["status"], "error");
        assert_eq!(checks[1]["duration"].as_f64(), Some(1.52));
        assert_eq!(checks[0]["summary"], "3/3 replies, rtt avg 0.110 ms");
        assert_eq!(checks[1]["details"][1], "second line");
        assert_eq!(checks[2]["details"].as_array().unwrap().len(), 0);
        let keys: Vec<&str> = checks[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
    }

    fn attr_of<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
        n.attribute(name)
            .unwrap_or_else(|| panic!("<{}> has no {name}", n.tag_name().name()))
    }

    #[test]
    fn junit_has_the_shape_ci_reads() {
        let xml = junit("lab-1", &sample());
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 1);
        let suite = suites[0];
        assert_eq!(suite.tag_name().name(), "testsuite");
        assert_eq!(attr_of(suite, "name"), "lab-1");
        assert_eq!(attr_of(suite, "tests"), "3");
        assert_eq!(attr_of(suite, "failures"), "1");
        assert_eq!(attr_of(suite, "errors"), "1");
        assert_eq!(attr_of(suite, "time"), "1.535");
        for n in [root, suite] {
            assert_eq!((attr_of(n, "tests"), attr_of(n, "failures")), ("3", "1"));
        }

        let cases: Vec<_> = suite.children().filter(|n| n.is_element()).collect();
        assert!(cases.iter().all(|c| c.tag_name().name() == "testcase"));
        assert_eq!(cases.len(), 3);
        assert_eq!(attr_of(cases[0], "name"), "ping host1 -> 192.168.50.2");
        assert_eq!(attr_of(cases[0], "classname"), "lab-1.ping");
        assert_eq!(attr_of(cases[0], "time"), "0.012");
        let kids = |c: roxmltree::Node| -> Vec<String> {
            c.children()
                .filter(|n| n.is_element())
                .map(|n| n.tag_name().name().to_owned())
                .collect()
        };
        assert_eq!(kids(cases[0]), ["system-out"]);
        assert_eq!(kids(cases[1]), ["failure"]);
        assert_eq!(kids(cases[2]), ["error"]);

        let failure = cases[1].first_element_child().unwrap();
        assert_eq!(
            attr_of(failure, "message"),
            "1472 bytes with DF did not pass: path MTU is 1400"
        );
        assert_eq!(attr_of(failure, "type"), "mtu");
        assert_eq!(
            failure.text(),
            Some("From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\nsecond line")
        );
        let error = cases[2].first_element_child().unwrap();
        assert_eq!(attr_of(error, "message"), "cannot open a capture socket");
        let out = cases[0].first_element_child().unwrap();
        assert_eq!(
            out.text(),
            Some("64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.094 ms")
        );

        let empty_xml = junit("empty", &[]);
        let empty = roxmltree::Document::parse(&empty_xml).unwrap();
        let suite = empty.root_element().first_element_child().unwrap();
        assert_eq!(
            (attr_of(suite, "tests"), attr_of(suite, "failures")),
            ("0", "0")
        );
    }

    #[test]
    fn junit_escapes_markup_in_names_and_details() {
        let nasty = r#"a<b & "c" 'd' </testcase> ]]>"#;
        let r = vec![check(
            nasty,
            "k&<",
            Status::Fail,
            1,
            nasty,
            &[nasty, "line\tbreak\r\nbell\u{7}"],
        )];
        let xml = junit("lab \"<&>\"", &r);
        assert!(!xml.contains("<b "), "{xml}");
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = doc.root_element().first_element_child().unwrap();
        assert_eq!(attr_of(suite, "name"), "lab \"<&>\"");
        let case = suite.first_element_child().unwrap();
        assert_eq!(attr_of(case, "name"), nasty);
        assert_eq!(attr_of(case, "classname"), "lab \"<&>\".k&<");
        let failure = case.first_element_child().unwrap();
        assert_eq!(attr_of(failure, "message"), nasty);
        // The bell cannot be in XML 1.0; it becomes U+FFFD.
        assert_eq!(
            failure.text(),
            Some(format!("{nasty}\nline\tbreak\r\nbell\u{fffd}").as_str())
        );
    }

    proptest! {
        #[test]
        fn junit_parses_for_any_text(name in any::<String>(), detail in any::<String>()) {
            let r = vec![check(&name, "ping", Status::Error, 5, &name, &[&detail])];
            let xml = junit(&name, &r);
            let doc = roxmltree::Document::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
            let case = doc.root_element().first_element_child().unwrap().first_element_child().unwrap();
            let clean = |s: &str| -> String {
                s.chars().map(|c| if ((c as u32) < 0x20 && !"\t\n\r".contains(c)) || c == '\u{fffe}' || c == '\u{ffff}' { '\u{fffd}' } else { c }).collect()
            };
            prop_assert_eq!(attr_of(case, "name"), clean(&name));
        }
    }
}
