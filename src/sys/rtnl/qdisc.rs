//! Impairments of an interface's egress as the kernel keeps them: netem at
//! the root (delay, jitter, reorder, loss, duplicate, corrupt) with tbf
//! under it for the rate; or, where the kernel has no netem, tbf at the root
//! and a tc-BPF program (direct action, at the clsact egress hook) that
//! drops, duplicates and corrupts. The program's filter is named after its
//! parameters (`grelab loss 1% ...`), so that reading them back needs the
//! kernel only.

use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Result, anyhow};
use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};

use super::Rtnl;
use crate::error;
use crate::model::{Impairment, Micros, Rate, Share};

const TCA_OPTIONS: u16 = 2;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// netem's root handle (1:) and tbf's (10:), as `grelab plan` prints them.
const NETEM: TcHandle = TcHandle { major: 1, minor: 0 };
const TBF: TcHandle = TcHandle {
    major: 0x10,
    minor: 0,
};
/// The names of the filters grelab's programs are attached by start so.
pub const PROGRAM_PREFIX: &str = "grelab ";

/// How an impairment is carried.
#[derive(Debug, Clone, Copy)]
pub enum Carrier<'a> {
    /// netem (and tbf under it for the rate).
    Netem,
    /// tbf for the rate, the program for loss, duplication, corruption.
    Bpf(Option<BorrowedFd<'a>>),
}

impl Rtnl {
    /// Whether the kernel has sch_netem: adds and removes one on `lo` here
    /// (call it in a lab-owned namespace).
    pub async fn supports_netem(&self) -> Result<bool> {
        let lo = self.link_index("lo").await?;
        let probe = netem_message(lo, &Impairment::default());
        match self.tc(new(probe), NLM_F_CREATE | NLM_F_EXCL).await {
            Ok(_) => {
                self.clear_impairment("lo").await?;
                Ok(true)
            }
            Err(n) if n == libc::ENOENT || n == libc::EOPNOTSUPP => Ok(false),
            Err(n) => Err(anyhow!(
                "probing for sch_netem: {}",
                std::io::Error::from_raw_os_error(n)
            )),
        }
    }

    /// Puts `imp` on `dev`'s egress by `carrier`, replacing what grelab had
    /// put there.
    pub async fn set_impairment(
        &self,
        dev: &str,
        imp: &Impairment,
        carrier: Carrier<'_>,
    ) -> Result<()> {
        let doing = format!("impairing `{dev}` ({imp})");
        let index = self.link_index(dev).await?;
        self.clear_impairment(dev).await?;
        let fail = |n: i32| explain_tc(n, &doing);
        let create = NLM_F_CREATE | NLM_F_EXCL;
        let mut rate_parent = TcHandle::ROOT;
        if matches!(carrier, Carrier::Netem) && (imp.delays() || imp.mangles()) {
            self.tc(new(netem_message(index, imp)), create)
                .await
                .map_err(fail)?;
            rate_parent = TcHandle { major: 1, minor: 1 };
        }
        if let Some(rate) = imp.rate {
            let mut m = TcMessage::with_index(index as i32);
            m.header.parent = rate_parent;
            m.header.handle = TBF;
            m.attributes.push(TcAttribute::Kind("tbf".into()));
            m.attributes.push(TcAttribute::Other(tbf_options(rate)));
            self.tc(new(m), create).await.map_err(fail)?;
        }
        if let Carrier::Bpf(Some(prog)) = carrier {
            let mut q = TcMessage::with_index(index as i32);
            q.header.parent = TcHandle::CLSACT;
            q.header.handle = TcHandle {
                major: 0xffff,
                minor: 0,
            };
            q.attributes.push(TcAttribute::Kind("clsact".into()));
            self.tc(new(q), create).await.map_err(fail)?;
            let mut f = TcMessage::with_index(index as i32);
            f.header.parent = TcHandle {
                major: 0xffff,
                minor: TcHandle::MIN_EGRESS,
            };
            // Priority 1, every protocol (ETH_P_ALL in network order).
            f.header.info = (1 << 16) | u32::from(3u16.to_be());
            f.attributes.push(TcAttribute::Kind("bpf".into()));
            f.attributes.push(TcAttribute::Options(vec![
                TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
                TcOption::Bpf(TcFilterBpfOption::ProgName(program_name(imp))),
                TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
            ]));
            let msg = RouteNetlinkMessage::NewTrafficFilter(f);
            self.tc(msg, create).await.map_err(fail)?;
        }
        Ok(())
    }

    /// Removes every impairment from `dev`'s egress: its root qdisc and its
    /// clsact hook (where grelab's program hangs). Nothing there is fine.
    pub async fn clear_impairment(&self, dev: &str) -> Result<()> {
        let index = self.link_index(dev).await?;
        for parent in [TcHandle::ROOT, TcHandle::CLSACT] {
            let mut m = TcMessage::with_index(index as i32);
            m.header.parent = parent;
            match self.tc(RouteNetlinkMessage::DelQueueDiscipline(m), 0).await {
                Ok(_) => {}
                // No such qdisc, or only the default one (which cannot go).
                Err(libc::ENOENT | libc::EINVAL) => {}
                Err(n) => {
                    return Err(explain_tc(
                        n,
                        &format!("clearing the impairments of `{dev}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What `dev`'s egress suffers, read from its qdiscs and filters.
    pub async fn impairment(&self, dev: &str) -> Result<Impairment> {
        let index = self.link_index(dev).await? as i32;
        let doing = format!("reading the impairments of `{dev}`");
        let mut out = Impairment::default();
        let mut dump = TcMessage::with_index(index);
        dump.header.index = index;
        let qdiscs = self
            .tc(RouteNetlinkMessage::GetQueueDiscipline(dump), NLM_F_DUMP)
            .await
            .map_err(|n| explain_tc(n, &doing))?;
        for m in qdiscs {
            let RouteNetlinkMessage::NewQueueDiscipline(m) = m else {
                continue;
            };
            if m.header.index != index {
                continue;
            }
            match (kind(&m).as_deref(), raw_options(&m)) {
                (Some("netem"), Some(o)) => read_netem(&o, &mut out),
                (Some("tbf"), Some(o)) => out.rate = read_tbf(&o),
                _ => {}
            }
        }
        let mut f = TcMessage::with_index(index);
        f.header.parent = TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_EGRESS,
        };
        let filters = match self
            .tc(RouteNetlinkMessage::GetTrafficFilter(f), NLM_F_DUMP)
            .await
        {
            Ok(f) => f,
            // No clsact hook: no program.
            Err(libc::EINVAL | libc::ENOENT) => Vec::new(),
            Err(n) => return Err(explain_tc(n, &doing)),
        };
        for m in filters {
            let RouteNetlinkMessage::NewTrafficFilter(m) = m else {
                continue;
            };
            for a in &m.attributes {
                let TcAttribute::Options(opts) = a else {
                    continue;
                };
                for o in opts {
                    if let TcOption::Bpf(TcFilterBpfOption::ProgName(n)) = o
                        && let Some(params) = n.strip_prefix(PROGRAM_PREFIX)
                    {
                        let mut words = params.split_whitespace();
                        while let (Some(k), Some(v)) = (words.next(), words.next()) {
                            let _ = out.set(k, v);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// One traffic-control request: its replies, or the kernel's errno.
    async fn tc(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, i32> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut replies = self.handle.clone().request(req).map_err(|_| libc::EIO)?;
        let mut out = Vec::new();
        while let Some(m) = replies.next().await {
            match m.payload {
                NetlinkPayload::Error(e) if e.raw_code() != 0 => return Err(-e.raw_code()),
                NetlinkPayload::InnerMessage(m) => out.push(m),
                _ => {}
            }
        }
        Ok(out)
    }
}

fn new(m: TcMessage) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewQueueDiscipline(m)
}

/// The filter name that records a program's parameters.
pub fn program_name(imp: &Impairment) -> String {
    let only = Impairment {
        loss: imp.loss,
        duplicate: imp.duplicate,
        corrupt: imp.corrupt,
        ..Impairment::default()
    };
    format!("{PROGRAM_PREFIX}{only}")
}

fn explain_tc(errno: i32, doing: &str) -> anyhow::Error {
    let raw = std::io::Error::from_raw_os_error(errno);
    match errno {
        libc::ENOENT | libc::EOPNOTSUPP => error::environment(format!(
            "{doing}: the kernel lacks a queueing discipline or classifier it needs \
             (sch_netem, sch_tbf, sch_ingress or cls_bpf): {raw}"
        )),
        libc::EPERM | libc::EACCES => error::environment(format!(
            "{doing}: permission denied: grelab needs root (CAP_NET_ADMIN)"
        )),
        _ => anyhow!("{doing}: {raw}"),
    }
}

fn kind(m: &TcMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    })
}

/// TCA_OPTIONS of a qdisc the library does not parse: its bytes.
fn raw_options(m: &TcMessage) -> Option<Vec<u8>> {
    m.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(o) => o.iter().find_map(|o| match o {
            TcOption::Other(n) => Some(nla_value(n)),
            _ => None,
        }),
        _ => None,
    })
}

/// The value of an attribute the library keeps whole.
fn nla_value(n: &DefaultNla) -> Vec<u8> {
    use rtnetlink::packet_core::Nla;
    let mut v = vec![0; n.value_len()];
    n.emit_value(&mut v);
    v
}

/// Appends attribute `kind` with `value` (netlink's 4-byte alignment).
fn push_nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend(((4 + value.len()) as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The attributes after the fixed struct of `len` bytes: (kind, value).
fn nlas(bytes: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes.get(skip.next_multiple_of(4)..).unwrap_or_default();
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((kind, &rest[4..len]));
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// `struct tc_netem_qopt` (latency, limit, loss, gap, duplicate, jitter)
/// and the attributes for what it cannot say (64-bit times, reorder, corrupt).
fn netem_message(index: u32, imp: &Impairment) -> TcMessage {
    let p = |s: Option<Share>| s.map_or(0, Share::of_u32);
    let ticks = |t: Option<Micros>| (t.map_or(0, |t| t.0).saturating_mul(1000) >> 6) as u32;
    let mut o = Vec::new();
    for v in [
        ticks(imp.delay),
        1000,
        p(imp.loss),
        u32::from(imp.reorder.is_some()),
        p(imp.duplicate),
        ticks(imp.jitter),
    ] {
        o.extend(v.to_ne_bytes());
    }
    let ns = |t: Option<Micros>| (t.map_or(0, |t| t.0) * 1000).to_ne_bytes();
    push_nla(&mut o, TCA_NETEM_LATENCY64, &ns(imp.delay));
    push_nla(&mut o, TCA_NETEM_JITTER64, &ns(imp.jitter));
    for (kind, share) in [
        (TCA_NETEM_REORDER, imp.reorder),
        (TCA_NETEM_CORRUPT, imp.corrupt),
    ] {
        if let Some(s) = share {
            let mut v = s.of_u32().to_ne_bytes().to_vec();
            v.extend(0u32.to_ne_bytes());
            push_nla(&mut o, kind, &v);
        }
    }
    let mut m = TcMessage::with_index(index as i32);
    m.header.parent = TcHandle::ROOT;
    m.header.handle = NETEM;
    m.attributes.push(TcAttribute::Kind("netem".into()));
    m.attributes
        .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, o)));
    m
}

fn share_of(p: u32) -> Option<Share> {
    (p != 0).then(|| Share(((u64::from(p) * 1_000_000 + (1 << 31)) >> 32) as u32))
}

fn read_netem(o: &[u8], out: &mut Impairment) {
    let word = |i: usize| {
        o.get(i * 4..i * 4 + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    out.loss = share_of(word(2));
    out.duplicate = share_of(word(4));
    let us = |ticks: u32| (ticks != 0).then(|| Micros((u64::from(ticks) << 6) / 1000));
    out.delay = us(word(0));
    out.jitter = us(word(5));
    for (kind, v) in nlas(o, 24) {
        let first = v
            .get(..4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let ns = v
            .get(..8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()));
        let time = (ns != 0).then_some(Micros(ns / 1000));
        match kind {
            TCA_NETEM_LATENCY64 => out.delay = time,
            TCA_NETEM_JITTER64 => out.jitter = time,
            TCA_NETEM_REORDER => out.reorder = share_of(first),
            TCA_NETEM_CORRUPT => out.corrupt = share_of(first),
            _ => {}
        }
    }
}

/// `struct tc_tbf_qopt` (rate and peak rate as `tc_ratespec`, limit,
/// buffer, mtu) with the rate in 64 bits and the bucket in bytes.
fn tbf_options(rate: Rate) -> DefaultNla {
    let bps = rate.bytes_per_second();
    let burst = Impairment::burst_bytes(rate);
    // The queue holds 100 ms of the rate beyond the bucket.
    let limit = (bps / 10 + burst).min(u64::from(u32::MAX)) as u32;
    let mut parms = Vec::new();
    // tc_ratespec: cell_log, linklayer (1 = Ethernet: no rate table), overhead, cell_align, mpu, rate.
    parms.extend([0u8, 1]);
    parms.extend([0u8; 6]);
    parms.extend((bps.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    parms.extend([0u8; 12]);
    parms.extend(limit.to_ne_bytes());
    parms.extend([0u8; 8]);
    let mut o = Vec::new();
    push_nla(&mut o, TCA_TBF_PARMS, &parms);
    push_nla(&mut o, TCA_TBF_RATE64, &bps.to_ne_bytes());
    push_nla(&mut o, TCA_TBF_BURST, &(burst as u32).to_ne_bytes());
    DefaultNla::new(TCA_OPTIONS, o)
}

fn read_tbf(o: &[u8]) -> Option<Rate> {
    let mut bps = 0u64;
    for (kind, v) in nlas(o, 0) {
        match kind {
            TCA_TBF_PARMS if v.len() >= 12 => {
                bps = u64::from(u32::from_ne_bytes([v[8], v[9], v[10], v[11]]));
            }
            TCA_TBF_RATE64 if v.len() >= 8 => {
                bps = u64::from_ne_bytes(v[..8].try_into().unwrap_or_default());
            }
            _ => {}
        }
    }
    (bps != 0).then_some(Rate(bps * 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(pairs: &[(&str, &str)]) -> Impairment {
        Impairment::of(pairs)
    }

    #[test]
    fn netem_options_read_back_as_written() {
        let want = imp(&[
            ("delay", "20ms"),
            ("jitter", "5ms"),
            ("loss", "2%"),
            ("duplicate", "0.5%"),
            ("corrupt", "0.1%"),
            ("reorder", "1%"),
        ]);
        let m = netem_message(7, &want);
        let Some(TcAttribute::Other(o)) = m.attributes.get(1) else {
            panic!("no options: {m:?}")
        };
        let mut got = Impairment::default();
        read_netem(&nla_value(o), &mut got);
        assert_eq!(got, want);
        assert_eq!(m.header.handle, NETEM);
    }

    #[test]
    fn tbf_options_read_back_as_written() {
        for r in ["10mbit", "8kbit", "40gbit"] {
            let rate = Rate::parse(r).unwrap();
            assert_eq!(read_tbf(&nla_value(&tbf_options(rate))), Some(rate), "{r}");
        }
    }

    #[test]
    fn the_program_name_records_only_what_the_program_does() {
        let i = imp(&[("delay", "20ms"), ("loss", "1%"), ("rate", "1mbit")]);
        assert_eq!(program_name(&i), "grelab loss 1%");
    }
}
