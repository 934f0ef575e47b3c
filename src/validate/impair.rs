//! Impairments: each names an end of its link or tunnel, once; jitter and
//! reordering come with a delay, jitter not above it. (Units and ranges of
//! each value are the parser's.)

use super::Checker;
use crate::topology::{Impair, ImpairParams, Loc};

impl Checker<'_> {
    /// The `impair:` of every link and tunnel.
    pub(super) fn impairments(&mut self) {
        let topo = self.topo;
        for l in &topo.links {
            if let Some(imp) = &l.impair {
                self.impair(imp, l.end_keys(), "link");
            }
        }
        for t in &topo.tunnels {
            if let Some(imp) = &t.impair {
                self.impair(imp, t.end_keys(), "tunnel");
            }
        }
    }

    fn impair(&mut self, imp: &Impair, keys: [String; 2], what: &str) {
        let (per_end, unknown) = imp.per_end([&keys[0], &keys[1]]);
        for k in unknown {
            let form = if what == "link" {
                "`node:iface`"
            } else {
                "the node"
            };
            self.err(
                Loc::of(k),
                format!(
                    "impairment on `{}`, which is no end of this {what}",
                    k.value
                ),
                format!("name an end by {form}: {} or {}", keys[0], keys[1]),
            );
        }
        if let Impair::PerEnd(ends) = imp {
            for (i, (k, _)) in ends.iter().enumerate() {
                if ends[..i].iter().any(|(e, _)| e.value == k.value) {
                    self.err(
                        Loc::of(k),
                        format!("end `{}` is impaired twice", k.value),
                        "give its parameters once",
                    );
                }
            }
        }
        let mut seen: Vec<*const ImpairParams> = Vec::new();
        for p in per_end.into_iter().flatten() {
            // The two-direction form is the same parameters for both ends.
            if !seen.contains(&std::ptr::from_ref(p)) {
                seen.push(p);
                self.impair_params(p);
            }
        }
    }

    fn impair_params(&mut self, p: &ImpairParams) {
        let delay = p.delay.as_ref().map(|d| d.value);
        if let Some(j) = &p.jitter {
            match delay {
                None => self.err(
                    Loc::of(j),
                    format!("jitter {} without a delay", j.value),
                    "jitter spreads a delay: give `delay` too",
                ),
                Some(d) if j.value > d => self.err(
                    Loc::of(j),
                    format!("jitter {} is above delay {d}", j.value),
                    "a jitter above the delay would send packets before they leave",
                ),
                Some(_) => {}
            }
        }
        if let Some(r) = &p.reorder
            && delay.is_none()
        {
            self.err(
                Loc::of(r),
                format!("reorder {} without a delay", r.value),
                "reordering sends some packets ahead of delayed ones: give `delay` too",
            );
        }
    }
}
