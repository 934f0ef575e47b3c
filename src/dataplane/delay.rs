//! Delay, jitter and reordering of what a tunnel end sends, for kernels
//! without sch_netem: packets read from an impaired end's device wait in a
//! line ordered by their departure time, then are wrapped and sent as any
//! other. Like netem, jitter (uniform within +-jitter) may reorder packets,
//! and `reorder` sends that share at once, ahead of those waiting.
//!
//! The impairments come from a file in the lab's directory (`IMPAIR_FILE`),
//! written by `up` and by `grelab impair`, and are read again whenever it
//! changes. An impaired end stays off the fast path, which would bypass it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::engine::Engine;
use super::offload;
use crate::model::Impairment;
use crate::sys::tun;

/// The file of the dataplane's impairments, in the lab's directory:
/// `[[namespace, device, impairment], ...]` as JSON.
pub const IMPAIR_FILE: &str = "dataplane-impair.json";

/// One impaired tunnel end, as the file lists it.
pub type Impaired = (String, String, Impairment);

/// Packets waiting to leave, by departure time.
#[derive(Default)]
pub(super) struct DelayLine {
    line: BTreeMap<(Instant, u64), (usize, Vec<u8>)>,
    seq: u64,
    rng: u64,
}

impl DelayLine {
    fn random(&mut self) -> u32 {
        // xorshift64*: only the spread of delays depends on it.
        if self.rng == 0 {
            self.rng = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Holds `packet` (a device read, virtio header first) of tunnel `ti`
    /// until its departure under `imp`.
    pub(super) fn hold(&mut self, ti: usize, packet: &[u8], imp: &Impairment, now: Instant) {
        let at_once = imp.reorder.is_some_and(|r| self.random() < r.of_u32());
        let mut wait = imp.delay.map_or(0, |d| d.0 as i64);
        if let Some(j) = imp.jitter {
            let j = j.0 as i64;
            wait += ((i64::from(self.random()) * (2 * j + 1)) >> 32) - j;
        }
        let due = if at_once {
            now
        } else {
            now + Duration::from_micros(wait.max(0) as u64)
        };
        self.seq += 1;
        self.line.insert((due, self.seq), (ti, packet.to_vec()));
    }

    /// How long until the next packet leaves, if one waits.
    pub(super) fn next_in(&self, now: Instant) -> Option<Duration> {
        self.line
            .keys()
            .next()
            .map(|(due, _)| due.saturating_duration_since(now))
    }

    /// The next packet due by `now`: (tunnel, device read).
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Vec<u8>)> {
        let entry = self.line.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }
}

/// The impairments file beside the dataplane's stats, and when it changed.
pub(super) struct ImpairFile {
    path: PathBuf,
    seen: Option<SystemTime>,
}

impl ImpairFile {
    pub(super) fn beside(stats_path: &Path) -> ImpairFile {
        ImpairFile {
            path: stats_path.with_file_name(IMPAIR_FILE),
            seen: None,
        }
    }

    /// The impairments, if the file changed since the last call (none when
    /// it is missing; an unreadable file is reported and ignored).
    pub(super) fn changed(&mut self) -> Option<Vec<Impaired>> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.seen {
            return None;
        }
        self.seen = modified;
        let Ok(text) = std::fs::read(&self.path) else {
            return Some(Vec::new());
        };
        match serde_json::from_slice(&text) {
            Ok(list) => Some(list),
            Err(e) => {
                eprintln!(
                    "dataplane: {}: {e}; impairments unchanged",
                    self.path.display()
                );
                None
            }
        }
    }
}

impl Engine {
    /// Takes the impairments of `list` for the tunnel ends it names (the
    /// dataplane carries their delays; the kernel the rest).
    pub(super) fn set_impairments(&mut self, list: &[Impaired]) {
        for (t, slot) in self.tunnels.iter().zip(&mut self.delays) {
            *slot = list
                .iter()
                .find(|(ns, dev, _)| *ns == t.end.netns && *dev == t.end.name)
                .map(|(_, _, imp)| *imp);
        }
    }

    /// Sends every held packet that is due.
    pub(super) fn release_due(&mut self) {
        let now = Instant::now();
        while let Some((ti, packet)) = self.line.pop_due(now) {
            let Engine {
                tunnels,
                socks,
                stats,
                tx,
                ..
            } = self;
            let (t, st) = (&mut tunnels[ti], &mut stats.tunnels[ti]);
            let len = packet.len().min(tx.arena.len());
            tx.arena[..len].copy_from_slice(&packet[..len]);
            let vh = offload::VnetHdr::parse(&tx.arena[..len]);
            let sock = &socks[t.sock];
            tx.encapsulate(t, st, sock, vh, tun::VNET_HDR_LEN, len);
            if tx.n > 0 {
                tx.send(sock, st);
            }
            self.dirty = true;
        }
    }
}
