//! Changing the ends a running dataplane serves, without stopping it (a
//! reconcile of its lab): on SIGHUP it reads its spec file again, retires
//! the ends no longer there and opens the new ones; the ends it keeps are
//! not touched (their packets flow on). It answers in its reload file:
//! `ok`, or `error: ...`, after which the lab restarts it instead.
//!
//! A retired end keeps its index (the fast path's tables are indexed by
//! tunnel) but leaves every table and the epoll set; its device is closed.
//! New ends go through userspace only: the fast path's tables are sized
//! when it starts.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::control::Spec;
use super::engine::{Engine, Home, SOCK_TOKEN, Sock, Transient, Tunnel, open_device};
use super::fast::FastState;
use super::sock::{epoll_add, epoll_del, raw_socket};
use super::stats::TunnelStats;
use crate::model::TunnelEnd;
use crate::sys::netns;

/// What the stats of a retired end add to its name, so that nothing takes
/// them for those of a new end of the same name.
const REMOVED: &str = " (removed)";

/// The file a dataplane answers a reload in, beside its spec.
pub(super) fn answer_path(lab_dir: &Path) -> std::path::PathBuf {
    lab_dir.join("dataplane-reload")
}

impl Engine {
    /// Serves the spec at `spec_path` from now on and writes the answer.
    pub(super) fn reload_from(&mut self, spec_path: &Path) {
        let result = std::fs::read(spec_path)
            .with_context(|| format!("reading {}", spec_path.display()))
            .and_then(|text| serde_json::from_slice::<Spec>(&text).context("parsing the spec"))
            .and_then(|spec| self.reload(&spec));
        let answer = match &result {
            Ok(()) => "ok\n".to_owned(),
            Err(e) => format!("error: {e:#}\n"),
        };
        if let Err(e) = &result {
            eprintln!("dataplane: reload: {e:#}");
        }
        let dir = spec_path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join("dataplane-reload.tmp");
        let _ = std::fs::write(&tmp, answer).and_then(|()| std::fs::rename(&tmp, answer_path(dir)));
    }

    /// Retires the ends `spec` lacks, then opens those it adds.
    fn reload(&mut self, spec: &Spec) -> Result<()> {
        let key = |e: &TunnelEnd| (e.netns.clone(), e.name.clone());
        let wanted: HashMap<_, &TunnelEnd> = spec.tunnels.iter().map(|e| (key(e), e)).collect();
        for i in 0..self.tunnels.len() {
            let end = &self.tunnels[i].end;
            // A dead end (its device went) is opened again if still wanted.
            let unwanted = wanted.get(&key(end)).is_none_or(|w| *w != end);
            if !self.retired(i) && (unwanted || !self.tunnels[i].alive) {
                self.retire(i);
            }
        }
        let serving: HashMap<_, &TunnelEnd> = (0..self.tunnels.len())
            .filter(|&i| !self.retired(i))
            .map(|i| (key(&self.tunnels[i].end), &self.tunnels[i].end))
            .collect();
        let added: Vec<TunnelEnd> = spec
            .tunnels
            .iter()
            .filter(|e| serving.get(&key(e)).is_none_or(|s| *s != *e))
            .cloned()
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let _home = Home(
            File::open("/proc/thread-self/ns/net")
                .context("opening this thread's network namespace")?,
        );
        let mut transient = Transient(Vec::new());
        let mut ctl: HashMap<usize, std::os::fd::OwnedFd> = HashMap::new();
        for end in &added {
            self.add(end, &mut ctl, &mut transient).with_context(|| {
                format!("adding tunnel `{}` in namespace `{}`", end.name, end.netns)
            })?;
        }
        transient.0.clear();
        self.dirty = true;
        Ok(())
    }

    /// Takes end `i` out of service.
    fn retire(&mut self, i: usize) {
        epoll_del(&self.epoll, self.tunnels[i].dev.as_raw_fd());
        self.routes.retain(|_, t| *t != i);
        self.pairs.retain(|_, t| *t != i);
        let t = &mut self.tunnels[i];
        t.alive = false;
        // Closed: /dev/null takes the field's place.
        if let Ok(null) = File::open("/dev/null") {
            drop(std::mem::replace(&mut t.dev, null));
        }
        let st = &mut self.stats.tunnels[i];
        st.name = format!("{}{REMOVED}", st.name);
        if let Some(fast) = &mut self.fast {
            fast.tunnels[i] = FastState::Off;
        }
        // The last end of its namespace: its socket and namespace go, so a
        // namespace the lab removed is freed (and never entered again).
        let (slot, sock) = (self.tunnels[i].slot, self.tunnels[i].sock);
        let live = |e: &Engine, f: &dyn Fn(&Tunnel) -> bool| {
            (0..e.tunnels.len()).any(|j| !e.retired(j) && f(&e.tunnels[j]))
        };
        if !live(self, &|t| t.sock == sock) {
            epoll_del(&self.epoll, self.socks[sock].fd.as_raw_fd());
            if let Ok(null) = File::open("/dev/null") {
                self.socks[sock].fd = null.into();
            }
        }
        if !live(self, &|t| t.slot == slot)
            && let Ok(null) = File::open("/dev/null")
        {
            self.namespaces[slot] = null;
        }
    }

    /// Whether end `i` was retired by a reload.
    fn retired(&self, i: usize) -> bool {
        self.stats.tunnels[i].name.ends_with(REMOVED)
    }

    /// Opens end `end`: its device in its namespace (entered on this
    /// thread, `ctl` its ioctl sockets by slot), a raw socket there if
    /// its namespace and family have none yet.
    fn add(
        &mut self,
        end: &TunnelEnd,
        ctl: &mut HashMap<usize, std::os::fd::OwnedFd>,
        transient: &mut Transient,
    ) -> Result<()> {
        let v6 = end.kind.is_ipv6();
        if end.local.is_ipv6() != v6 || end.remote.is_ipv6() != v6 {
            bail!(
                "a {} tunnel needs local and remote addresses of its family",
                end.kind.as_str()
            );
        }
        let same_ns = (0..self.tunnels.len())
            .find(|&j| !self.retired(j) && self.tunnels[j].end.netns == end.netns);
        let slot = match same_ns {
            Some(j) => self.tunnels[j].slot,
            None => {
                self.namespaces.push(netns::open(&end.netns)?);
                self.namespaces.len() - 1
            }
        };
        netns::enter(&self.namespaces[slot])
            .with_context(|| format!("entering network namespace `{}`", end.netns))?;
        let ctl = match ctl.entry(slot) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(netns::ioctl_socket()?),
        };
        let l2 = end.kind.is_l2();
        let dev = open_device(end, l2, ctl.as_fd(), self.gro, transient)?;
        let same_sock = (0..self.tunnels.len()).find(|&j| {
            let t = &self.tunnels[j];
            !self.retired(j) && t.slot == slot && self.socks[t.sock].v6 == v6
        });
        let sock = match same_sock {
            Some(j) => self.tunnels[j].sock,
            None => {
                let fd = raw_socket(v6)?;
                epoll_add(
                    &self.epoll,
                    fd.as_raw_fd(),
                    SOCK_TOKEN + self.socks.len() as u64,
                )?;
                self.socks.push(Sock { fd, v6 });
                self.socks.len() - 1
            }
        };
        let index = self.tunnels.len();
        let route = (sock, end.local, end.remote, end.ikey, l2);
        if self.routes.contains_key(&route) {
            bail!(
                "another tunnel would receive the same packets (same local, remote, key and type)"
            );
        }
        epoll_add(&self.epoll, dev.as_raw_fd(), index as u64)?;
        self.routes.insert(route, index);
        self.pairs
            .entry((sock, end.local, end.remote))
            .or_insert(index);
        self.tunnels.push(Tunnel::new(end, dev, sock, l2, slot));
        self.stats.tunnels.push(TunnelStats {
            name: end.name.clone(),
            netns: end.netns.clone(),
            fast_path_off: self
                .fast
                .as_ref()
                .map(|_| "added to a running dataplane: userspace only until it restarts".into()),
            ..TunnelStats::default()
        });
        if let Some(fast) = &mut self.fast {
            fast.tunnels.push(FastState::Off);
        }
        // Not impaired: the lab's impairments do not change while it runs
        // by a reconcile (`grelab impair` rewrites the file, read apart).
        self.delays.push(None);
        Ok(())
    }
}
