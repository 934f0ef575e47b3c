//! See GRE on the wire: a packet socket on one interface ([`Capture`]), a
//! structured decode for assertions ([`decode`]), a text decode that reads
//! like `tcpdump -v -n` ([`describe`]), and a classic pcap writer
//! ([`PcapWriter`]) so captures open in tcpdump and Wireshark.

use std::fmt::Write as _;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, LinkAddr, MsgFlags, SockFlag, SockType, recvmsg,
    setsockopt, socket, sockopt,
};

use crate::wire::checksum::internet_checksum;
use crate::wire::gre;

const ETH_HLEN: usize = 14;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_GRE: u8 = 47;
const PROTO_ICMPV6: u8 = 58;

/// The largest frame kept whole: a 64 KiB IP packet and its Ethernet header.
pub const MAX_FRAME: usize = 65535 + ETH_HLEN;

/// One captured frame, always starting with an Ethernet header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's bytes, at most [`MAX_FRAME`].
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data.len()` if cut).
    pub wire_len: usize,
    /// When the kernel saw it.
    pub timestamp: SystemTime,
    /// Whether this host sent it (`PACKET_OUTGOING`) rather than received it.
    pub outgoing: bool,
}

/// A packet socket receiving every frame of one interface, both directions.
pub struct Capture {
    fd: OwnedFd,
    iface: String,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

impl Capture {
    /// Opens a capture on `iface` in the calling thread's network namespace
    /// (enter the namespace first, e.g. with [`crate::sys::netns::run_in`]).
    pub fn open(iface: &str) -> Result<Capture> {
        let index = nix::net::if_::if_nametoindex(iface).with_context(|| {
            format!("finding interface `{iface}` to capture on: is the thread in the right network namespace?")
        })?;
        // Protocol 0 receives nothing until bound, so no frame of another
        // interface slips in between socket() and bind().
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("opening a packet socket: capturing needs root (CAP_NET_RAW)")?;
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)
            .context("asking for kernel timestamps on the packet socket")?;
        // Room for a burst (iperf through a tunnel); best effort, the default also works.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: the pointer and length describe `sll`, which outlives the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("binding the packet socket to `{iface}`"));
        }
        Ok(Capture {
            fd,
            iface: iface.to_owned(),
            buf: vec![0; MAX_FRAME],
            cmsg: nix::cmsg_space!(libc::timespec),
        })
    }

    /// The next frame, or `None` once `deadline` passes without one.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<Frame>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Round up, so the last wait reaches the deadline instead of spinning.
            let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("waiting for frames on `{}`", self.iface));
                }
            }
            match self.receive() {
                Ok(frame) => return Ok(Some(frame)),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(Errno::ENETDOWN) => {
                    anyhow::bail!(
                        "`{0}` is down, so nothing can be captured on it: bring it up (`ip link set {0} up`)",
                        self.iface
                    );
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading a frame from `{}`", self.iface));
                }
            }
        }
    }

    fn receive(&mut self) -> nix::Result<Frame> {
        // Receive after room for an Ethernet header, in case the device has none.
        let mut iov = [IoSliceMut::new(&mut self.buf[ETH_HLEN..])];
        let msg = recvmsg::<LinkAddr>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
        )?;
        let mut timestamp = SystemTime::now();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    let since = Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
                    timestamp = SystemTime::UNIX_EPOCH + since;
                }
            }
        }
        let (wire_len, addr) = (msg.bytes, msg.address);
        let kept = wire_len.min(MAX_FRAME - ETH_HLEN);
        let outgoing = addr.is_some_and(|a| a.pkttype() == libc::PACKET_OUTGOING);
        let hatype = addr.map_or(libc::ARPHRD_ETHER, |a| a.hatype());
        if hatype == libc::ARPHRD_ETHER || hatype == libc::ARPHRD_LOOPBACK {
            let data = self.buf[ETH_HLEN..ETH_HLEN + kept].to_vec();
            return Ok(Frame {
                data,
                wire_len,
                timestamp,
                outgoing,
            });
        }
        // An L3 device (TUN, a kernel gre link) hands over bare IP packets:
        // give them a zeroed Ethernet header so every frame decodes alike.
        let ethertype = addr.map_or(0, |a| u16::from_be(a.protocol()));
        self.buf[..12].fill(0);
        self.buf[12..ETH_HLEN].copy_from_slice(&ethertype.to_be_bytes());
        let data = self.buf[..ETH_HLEN + kept].to_vec();
        Ok(Frame {
            data,
            wire_len: wire_len + ETH_HLEN,
            timestamp,
            outgoing,
        })
    }
}

/// A GRE packet as seen on the wire, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encap {
    /// The tunnel's local end, as sent.
    pub outer_src: IpAddr,
    /// The tunnel's remote end.
    pub outer_dst: IpAddr,
    /// TTL, or the hop limit for IPv6.
    pub ttl: u8,
    /// TOS, or the traffic class for IPv6.
    pub tos: u8,
    /// Don't-fragment (always false for IPv6).
    pub df: bool,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// Length of the outer IP packet, header included.
    pub outer_len: usize,
    /// The GRE header (checksum flag, key, sequence, protocol type).
    pub gre: gre::Repr,
    /// Whether the GRE checksum is right (true when there is none).
    pub checksum_ok: bool,
    /// What the GRE packet carries.
    pub inner: Inner,
}

/// What a GRE packet carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// An IPv4 or IPv6 packet (gre, ip6gre); `ttl` is the hop limit for IPv6.
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        ttl: u8,
        /// Don't Fragment (IPv4; false for IPv6).
        df: bool,
        len: usize,
        /// The identifier, when it is an ICMP or ICMPv6 echo request.
        echo_id: Option<u16>,
    },
    /// An Ethernet frame (gretap, ip6gretap), with its IP addresses and protocol if IP.
    Ethernet {
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        ethertype: u16,
        ip: Option<(IpAddr, IpAddr, u8)>,
        /// The identifier, when the IP packet is an ICMP or ICMPv6 echo request.
        echo_id: Option<u16>,
    },
    /// A payload not decoded: another protocol type, or too short to read.
    Other(u16),
}

/// Decodes an Ethernet frame holding IPv4 or IPv6 carrying GRE; `None` for
/// anything else (or a non-first fragment).
pub fn decode(frame: &[u8]) -> Option<Encap> {
    let ip = Ip::parse(be16(frame, 12)?, frame.get(ETH_HLEN..)?)?;
    if ip.proto != PROTO_GRE || ip.offset != 0 {
        return None;
    }
    let packet = gre::Packet::new_checked(ip.payload).ok()?;
    let repr = gre::Repr {
        protocol: packet.protocol(),
        checksum: packet.checksum_present(),
        key: packet.key(),
        sequence: packet.sequence(),
    };
    let payload = packet.payload();
    let inner = match repr.protocol {
        gre::ETHERTYPE_TEB if payload.len() >= ETH_HLEN => {
            let ethertype = be16(payload, 12).unwrap_or(0);
            Inner::Ethernet {
                dst_mac: mac_at(payload, 0),
                src_mac: mac_at(payload, 6),
                ethertype,
                ip: Ip::parse(ethertype, &payload[ETH_HLEN..]).map(|i| (i.src, i.dst, i.proto)),
                echo_id: Ip::parse(ethertype, &payload[ETH_HLEN..])
                    .and_then(|i| i.echo_request_id()),
            }
        }
        p => match Ip::parse(p, payload) {
            Some(i) => Inner::Ip {
                src: i.src,
                dst: i.dst,
                proto: i.proto,
                ttl: i.ttl,
                df: i.df,
                len: i.len,
                echo_id: i.echo_request_id(),
            },
            None => Inner::Other(p),
        },
    };
    Some(Encap {
        outer_src: ip.src,
        outer_dst: ip.dst,
        ttl: ip.ttl,
        tos: ip.tos,
        df: ip.df,
        ip_id: ip.id,
        outer_len: ip.len,
        gre: repr,
        checksum_ok: packet.verify_checksum(),
        inner,
    })
}

/// Describes an Ethernet frame as `tcpdump -v -n` prints it, one string per
/// line, for GRE (every flag), IPv4, IPv6, ICMP and ICMPv6 echo, UDP and ARP;
/// other protocols get a shorter summary. Unlike tcpdump -v, a gretap payload
/// shows its Ethernet header (as `tcpdump -e` prints it): the MACs matter there.
pub fn describe(frame: &[u8]) -> Vec<String> {
    let mut out = String::new();
    ether(&mut out, frame, false, 0);
    out.lines().map(str::to_owned).collect()
}

/// Writes frames as a classic pcap file (microsecond timestamps, Ethernet).
pub struct PcapWriter<W: io::Write> {
    w: W,
}

impl<W: io::Write> PcapWriter<W> {
    const SNAPLEN: u32 = 65535;

    /// Writes the file header.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&Self::SNAPLEN.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&h)?;
        Ok(PcapWriter { w })
    }

    /// Appends one frame (cut to the 65535-byte snap length).
    pub fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let since = frame
            .timestamp
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let kept = frame.data.len().min(Self::SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&(kept as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.wire_len.max(kept) as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(&frame.data[..kept])
    }

    /// Gives the writer back (flush it if buffered).
    pub fn into_inner(self) -> W {
        self.w
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    b.get(at..at + 6)
        .and_then(|m| m.try_into().ok())
        .unwrap_or_default()
}

fn mac(m: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = m;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    be32(b, at).map(Ipv4Addr::from)
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let bytes: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(bytes))
}

/// An IPv4 or IPv6 header, and its upper-layer payload.
struct Ip<'a> {
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    df: bool,
    mf: bool,
    evil: bool,
    /// Fragment offset in bytes.
    offset: usize,
    id: u16,
    /// Total length, header included (from the header, not the capture).
    len: usize,
    /// IPv4 header checksum: (stored, correct) when they differ.
    bad_sum: Option<(u16, u16)>,
    /// IPv6 flow label word's class and label bits.
    flow: u32,
    /// The IPv6 fixed header's next header.
    next_header: u8,
    /// The upper-layer protocol, after any IPv6 extension headers.
    proto: u8,
    /// The upper-layer bytes, bounded by `len` and by what was captured.
    payload: &'a [u8],
    /// The upper layer's length as the header declares it.
    upper_len: usize,
    /// Whether the whole packet was captured.
    whole: bool,
}

impl<'a> Ip<'a> {
    /// The identifier of an ICMP or ICMPv6 echo request.
    fn echo_request_id(&self) -> Option<u16> {
        let request = match self.proto {
            1 => 8,
            58 => 128,
            _ => return None,
        };
        (self.offset == 0 && self.payload.first() == Some(&request))
            .then(|| be16(self.payload, 4))
            .flatten()
    }

    fn parse(ethertype: u16, b: &'a [u8]) -> Option<Ip<'a>> {
        match ethertype {
            gre::ETHERTYPE_IPV4 => Self::parse4(b),
            gre::ETHERTYPE_IPV6 => Self::parse6(b),
            _ => None,
        }
    }

    fn parse4(b: &'a [u8]) -> Option<Ip<'a>> {
        let ihl = usize::from(*b.first()? & 0x0f) * 4;
        if b[0] >> 4 != 4 || ihl < 20 || b.len() < ihl {
            return None;
        }
        let len = usize::from(be16(b, 2)?);
        if len < ihl {
            return None;
        }
        let frag = be16(b, 6)?;
        let stored = be16(b, 10)?;
        let bad_sum = (internet_checksum(&b[..ihl]) != 0).then(|| {
            let mut h = b[..ihl].to_vec();
            h[10..12].fill(0);
            (stored, internet_checksum(&h))
        });
        Some(Ip {
            v6: false,
            src: ipv4_at(b, 12)?.into(),
            dst: ipv4_at(b, 16)?.into(),
            ttl: b[8],
            tos: b[1],
            df: frag & 0x4000 != 0,
            mf: frag & 0x2000 != 0,
            evil: frag & 0x8000 != 0,
            offset: usize::from(frag & 0x1fff) * 8,
            id: be16(b, 4)?,
            len,
            bad_sum,
            flow: 0,
            next_header: b[9],
            proto: b[9],
            payload: b.get(ihl..len.min(b.len()))?,
            upper_len: len - ihl,
            whole: b.len() >= len,
        })
    }

    fn parse6(b: &'a [u8]) -> Option<Ip<'a>> {
        if b.len() < 40 || b[0] >> 4 != 6 {
            return None;
        }
        let len = 40 + usize::from(be16(b, 4)?);
        let end = len.min(b.len());
        let (mut proto, mut at) = (b[6], 40);
        let (mut offset, mut mf) = (0, false);
        // Walk the extension headers an upper layer may sit behind.
        while matches!(proto, 0 | 43 | 44 | 60) {
            let next = *b.get(at)?;
            let ext_len = if proto == 44 {
                let frag = be16(b, at + 2)?;
                offset = usize::from(frag & 0xfff8);
                mf = frag & 1 != 0;
                8
            } else {
                (usize::from(*b.get(at + 1)?) + 1) * 8
            };
            proto = next;
            at += ext_len;
        }
        Some(Ip {
            v6: true,
            src: ipv6_at(b, 8)?.into(),
            dst: ipv6_at(b, 24)?.into(),
            ttl: b[7],
            tos: ((be16(b, 0)? >> 4) & 0xff) as u8,
            df: false,
            mf,
            evil: false,
            offset,
            id: 0,
            len,
            bad_sum: None,
            flow: be32(b, 0)? & 0x0fff_ffff,
            next_header: b[6],
            proto,
            payload: b.get(at..end)?,
            upper_len: len.saturating_sub(at),
            whole: b.len() >= len,
        })
    }

    fn fragmented(&self) -> bool {
        self.mf || self.offset != 0
    }

    /// The pseudo-header that UDP, TCP and ICMPv6 checksums cover.
    fn pseudo_header(&self, proto: u8, len: usize) -> Vec<u8> {
        let mut h = Vec::with_capacity(40);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&[0, proto]);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (s, d) => {
                for a in [s, d] {
                    if let IpAddr::V6(a) = a {
                        h.extend_from_slice(&a.octets());
                    }
                }
                h.extend_from_slice(&(len as u32).to_be_bytes());
                h.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        h
    }

    /// Checks the upper-layer checksum stored at `at`: None if right, else
    /// (stored, correct).
    fn check_upper(&self, proto: u8, at: usize, pseudo: bool) -> Option<(u16, u16)> {
        let stored = be16(self.payload, at)?;
        let mut data = if pseudo {
            self.pseudo_header(proto, self.payload.len())
        } else {
            Vec::new()
        };
        data.extend_from_slice(self.payload);
        if internet_checksum(&data) == 0 {
            return None;
        }
        let field = data.len() - self.payload.len() + at;
        data[field..field + 2].fill(0);
        Some((stored, internet_checksum(&data)))
    }
}

fn ethertype_name(t: u16) -> &'static str {
    match t {
        gre::ETHERTYPE_IPV4 => "IPv4",
        gre::ETHERTYPE_IPV6 => "IPv6",
        ETHERTYPE_ARP => "ARP",
        gre::ETHERTYPE_TEB => "TEB",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        0x8847 => "MPLS unicast",
        _ => "Unknown",
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        0 => "Options",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPIP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6",
        43 => "Routing",
        44 => "Fragment",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        103 => "PIM",
        112 => "VRRP",
        132 => "SCTP",
        143 => "Ethernet",
        _ => "unknown",
    }
}

/// How deep packets may nest (GRE in GRE, ICMP quoting GRE...) before the
/// text stops: crafted frames must not exhaust the stack.
const MAX_DEPTH: usize = 8;

/// An Ethernet frame; `eflag` prints its header as `tcpdump -e` does;
/// `depth` counts the packets this one is nested in.
fn ether(out: &mut String, frame: &[u8], eflag: bool, depth: usize) {
    let Some(ethertype) = be16(frame, 12) else {
        out.push_str(" [|ether]");
        return;
    };
    let header = format!(
        "{} > {}, ethertype {} (0x{ethertype:04x}), length {}: ",
        mac(mac_at(frame, 6)),
        mac(mac_at(frame, 0)),
        ethertype_name(ethertype),
        frame.len()
    );
    if eflag {
        out.push_str(&header);
    }
    let payload = &frame[ETH_HLEN..];
    match ethertype {
        gre::ETHERTYPE_IPV4 => ip4(out, payload, eflag, depth),
        gre::ETHERTYPE_IPV6 => ip6(out, payload, eflag, depth),
        ETHERTYPE_ARP => arp(out, payload, eflag),
        _ if !eflag => out.push_str(header.trim_end()),
        _ => {}
    }
}

fn ip4(out: &mut String, b: &[u8], eflag: bool, depth: usize) {
    if b.is_empty() {
        out.push_str(" [|ip]");
        return;
    }
    if !eflag {
        out.push_str("IP ");
    }
    // The checks tcpdump makes, in its order, so bad headers read the same.
    let (Some(len), true) = (be16(b, 2), b.len() >= 20) else {
        out.push_str(" [|ip]");
        return;
    };
    let (version, ihl) = (b[0] >> 4, usize::from(b[0] & 0x0f) * 4);
    let bad = if version != 4 {
        format!("bad version {version}")
    } else if ihl < 20 {
        format!("bad-hlen {ihl}")
    } else if usize::from(len) < ihl {
        format!("bad-len {len}")
    } else {
        String::new()
    };
    if !bad.is_empty() {
        out.push_str(&bad);
        return;
    }
    let Some(ip) = Ip::parse4(b) else {
        out.push_str(" [|ip]"); // options cut short
        return;
    };
    let _ = write!(out, "(tos 0x{:x}", ip.tos);
    out.push_str(["", ",ECT(1)", ",ECT(0)", ",CE"][usize::from(ip.tos & 3)]);
    if ip.ttl >= 1 {
        let _ = write!(out, ", ttl {}", ip.ttl);
    }
    let flags: Vec<&str> = [(ip.mf, "+"), (ip.df, "DF"), (ip.evil, "rsvd")]
        .iter()
        .filter(|f| f.0)
        .map(|f| f.1)
        .collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags.join(", ")
    };
    let _ = write!(
        out,
        ", id {}, offset {}, flags [{flags}], proto {} ({}), length {}",
        ip.id,
        ip.offset,
        proto_name(ip.proto),
        ip.proto,
        ip.len
    );
    if let Some((stored, correct)) = ip.bad_sum {
        let _ = write!(out, ", bad cksum {stored:x} (->{correct:x})!");
    }
    out.push_str(")\n    ");
    if ip.offset != 0 {
        let _ = write!(out, "{} > {}: ip-proto-{}", ip.src, ip.dst, ip.proto);
        return;
    }
    upper(out, &ip, depth);
}

fn ip6(out: &mut String, b: &[u8], eflag: bool, depth: usize) {
    let Some(ip) = Ip::parse6(b) else {
        out.push_str(" [|ip6]");
        return;
    };
    if !eflag {
        out.push_str("IP6 ");
    }
    out.push('(');
    if ip.flow & 0x0ff0_0000 != 0 {
        let _ = write!(out, "class 0x{:02x}, ", ip.tos);
    }
    if ip.flow & 0x000f_ffff != 0 {
        let _ = write!(out, "flowlabel 0x{:05x}, ", ip.flow & 0x000f_ffff);
    }
    let _ = write!(
        out,
        "hlim {}, next-header {} ({}) payload length: {}) ",
        ip.ttl,
        proto_name(ip.next_header),
        ip.next_header,
        ip.len - 40
    );
    upper(out, &ip, depth);
}

/// The upper layer of a first fragment (or whole packet).
fn upper(out: &mut String, ip: &Ip, depth: usize) {
    let (src, dst, b) = (ip.src, ip.dst, ip.payload);
    match ip.proto {
        PROTO_GRE => {
            let _ = write!(out, "{src} > {dst}: ");
            gre_v(out, b, ip.upper_len, depth);
        }
        PROTO_ICMP if !ip.v6 => icmp(out, ip, depth),
        PROTO_ICMPV6 if ip.v6 => icmp6(out, ip),
        PROTO_UDP => udp(out, ip),
        PROTO_TCP => tcp(out, ip),
        p => {
            let _ = write!(out, "{src} > {dst}:  ip-proto-{p} {}", ip.upper_len);
        }
    }
}

/// A GRE packet; `len` is its length by the outer header (`b` may be cut short).
fn gre_v(out: &mut String, b: &[u8], len: usize, depth: usize) {
    let (Some(&f0), Some(&f1)) = (b.first(), b.get(1)) else {
        out.push_str(" [|gre]");
        return;
    };
    let version = f1 & 7;
    let _ = write!(out, "GREv{version}");
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE: not a tunnel grelab builds.
        let _ = match version {
            1 => write!(out, ", length {len}"),
            _ => write!(out, " ERROR: unknown-version"),
        };
        return;
    }
    let names = [
        (f0 & 0x80, "checksum present"),
        (f0 & 0x40, "routing present"),
        (f0 & 0x20, "key present"),
        (f0 & 0x10, "sequence# present"),
        (f0 & 0x08, "source routing present"),
        (f1 & 0x80, "ack present"),
    ];
    let flags: Vec<&str> = names.iter().filter(|n| n.0 != 0).map(|n| n.1).collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags.join(", ")
    };
    let _ = write!(out, ", Flags [{flags}]");
    let truncated = |out: &mut String| out.push_str(" [|gre]");
    let Some(protocol) = be16(b, 2) else {
        return truncated(out);
    };
    let mut at = 4;
    if f0 & 0xc0 != 0 {
        let (Some(sum), Some(off)) = (be16(b, at), be16(b, at + 2)) else {
            return truncated(out);
        };
        let _ = write!(out, ", sum 0x{sum:x}, off 0x{off:x}");
        at += 4;
    }
    if f0 & 0x20 != 0 {
        let Some(key) = be32(b, at) else {
            return truncated(out);
        };
        let _ = write!(out, ", key=0x{key:x}");
        at += 4;
    }
    if f0 & 0x10 != 0 {
        let Some(seq) = be32(b, at) else {
            return truncated(out);
        };
        let _ = write!(out, ", seq {seq}");
        at += 4;
    }
    if f0 & 0x40 != 0 {
        return truncated(out); // routing entries: not decoded
    }
    let _ = write!(out, ", length {len}\n\t");
    if depth >= MAX_DEPTH {
        out.push_str(" [|nested]");
        return;
    }
    let payload = &b[at..];
    match protocol {
        gre::ETHERTYPE_IPV4 => ip4(out, payload, false, depth + 1),
        gre::ETHERTYPE_IPV6 => ip6(out, payload, false, depth + 1),
        gre::ETHERTYPE_TEB => ether(out, payload, true, depth + 1),
        p => {
            let _ = write!(out, "gre-proto-0x{p:x}");
        }
    }
}

fn icmp(out: &mut String, ip: &Ip, depth: usize) {
    let b = ip.payload;
    let _ = write!(out, "{} > {}: ", ip.src, ip.dst);
    let (Some(&ty), Some(&code), true) = (b.first(), b.get(1), b.len() >= 8) else {
        out.push_str(" [|icmp]");
        return;
    };
    // The packet an ICMP error quotes starts at byte 8.
    let quoted = b.get(8..).and_then(Ip::parse4);
    let qdst = quoted
        .as_ref()
        .map_or_else(|| "?".to_owned(), |q| q.dst.to_string());
    let text = match (ty, code) {
        (0 | 8, _) => format!(
            "echo {}, id {}, seq {}",
            if ty == 8 { "request" } else { "reply" },
            be16(b, 4).unwrap_or(0),
            be16(b, 6).unwrap_or(0)
        ),
        (3, 0) => format!("net {qdst} unreachable"),
        (3, 1) => format!("host {qdst} unreachable"),
        (3, 2) => format!(
            "{qdst} protocol {} unreachable",
            quoted.as_ref().map_or(0, |q| q.proto)
        ),
        (3, 3) => match quoted
            .as_ref()
            .filter(|q| matches!(q.proto, PROTO_UDP | PROTO_TCP))
        {
            Some(q) => format!(
                "{qdst} {} port {} unreachable",
                if q.proto == PROTO_UDP { "udp" } else { "tcp" },
                be16(q.payload, 2).unwrap_or(0)
            ),
            None => format!("{qdst} port unreachable"),
        },
        (3, 4) => format!(
            "{qdst} unreachable - need to frag (mtu {})",
            be16(b, 6).unwrap_or(0)
        ),
        (11, 0) => "time exceeded in-transit".to_owned(),
        (11, 1) => "ip reassembly time exceeded".to_owned(),
        _ => format!("type-#{ty}"),
    };
    let _ = write!(out, "ICMP {text}, length {}", ip.upper_len);
    if ip.whole
        && !ip.fragmented()
        && let Some((stored, correct)) = ip.check_upper(PROTO_ICMP, 2, false)
    {
        let _ = write!(out, " (wrong icmp cksum {stored:x} (->{correct:x})!)");
    }
    // Errors quote the packet that caused them: show it, as tcpdump -v does.
    if matches!(ty, 3 | 4 | 5 | 11 | 12) {
        out.push_str("\n\t");
        if depth >= MAX_DEPTH {
            out.push_str(" [|nested]");
            return;
        }
        ip4(out, &b[8..], false, depth + 1);
    }
}

fn icmp6(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let _ = write!(out, "{} > {}: ", ip.src, ip.dst);
    let Some(&ty) = b.first() else {
        out.push_str(" [|icmp6]");
        return;
    };
    if ip.whole && !ip.fragmented() && b.len() >= 4 {
        match ip.check_upper(PROTO_ICMPV6, 2, true) {
            None => out.push_str("[icmp6 sum ok] "),
            Some((stored, correct)) => {
                let _ = write!(out, "[bad icmp6 cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
            }
        }
    }
    let target = || ipv6_at(b, 8).map_or_else(|| "?".to_owned(), |a| a.to_string());
    let _ = match ty {
        128 | 129 => write!(
            out,
            "ICMP6, echo {}, id {}, seq {}",
            if ty == 128 { "request" } else { "reply" },
            be16(b, 4).unwrap_or(0),
            be16(b, 6).unwrap_or(0)
        ),
        2 => write!(
            out,
            "ICMP6, packet too big, mtu {}",
            be32(b, 4).unwrap_or(0)
        ),
        135 => write!(
            out,
            "ICMP6, neighbor solicitation, length {}, who has {}",
            ip.upper_len,
            target()
        ),
        136 => write!(
            out,
            "ICMP6, neighbor advertisement, length {}, tgt is {}",
            ip.upper_len,
            target()
        ),
        _ => {
            let name = match ty {
                1 => "destination unreachable",
                3 => "time exceeded in-transit",
                133 => "router solicitation",
                134 => "router advertisement",
                _ => "unknown icmp6 type",
            };
            write!(out, "ICMP6, {name}, length {}", ip.upper_len)
        }
    };
}

fn udp(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let (Some(sport), Some(dport), Some(ulen)) = (be16(b, 0), be16(b, 2), be16(b, 4)) else {
        let _ = write!(out, "{} > {}:  [|udp]", ip.src, ip.dst);
        return;
    };
    let _ = write!(out, "{}.{sport} > {}.{dport}: ", ip.src, ip.dst);
    // tcpdump -v checks UDP checksums over IPv6 only (IPv4 needs -vv).
    if ip.v6 && ip.whole && !ip.fragmented() {
        match ip.check_upper(PROTO_UDP, 6, true) {
            None => out.push_str("[udp sum ok] "),
            Some((stored, correct)) => {
                let _ = write!(out, "[bad udp cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
            }
        }
    }
    let _ = write!(out, "UDP, length {}", ulen.saturating_sub(8));
}

/// A summary only: tcpdump's TCP line depends on earlier packets (relative
/// sequence numbers) and on options.
fn tcp(out: &mut String, ip: &Ip) {
    let b = ip.payload;
    let (Some(sport), Some(dport), Some(seq), Some(&off), Some(&fl), Some(win)) = (
        be16(b, 0),
        be16(b, 2),
        be32(b, 4),
        b.get(12),
        b.get(13),
        be16(b, 14),
    ) else {
        let _ = write!(out, "{} > {}:  [|tcp]", ip.src, ip.dst);
        return;
    };
    let letters = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    let flags: String = letters
        .iter()
        .filter(|l| fl & l.0 != 0)
        .map(|l| l.1)
        .collect();
    let flags = if flags.is_empty() {
        "none".to_owned()
    } else {
        flags
    };
    let len = ip.upper_len.saturating_sub(usize::from(off >> 4) * 4);
    let _ = write!(
        out,
        "{}.{sport} > {}.{dport}: Flags [{flags}], seq {seq}, win {win}, length {len}",
        ip.src, ip.dst
    );
}

fn arp(out: &mut String, b: &[u8], eflag: bool) {
    let (Some(htype), Some(ptype), Some(&hlen), Some(&plen), Some(op)) =
        (be16(b, 0), be16(b, 2), b.get(4), b.get(5), be16(b, 6))
    else {
        out.push_str(" [|arp]");
        return;
    };
    if b.len() < 8 + 2 * usize::from(hlen) + 2 * usize::from(plen) {
        out.push_str(" [|arp]");
        return;
    }
    if !eflag {
        out.push_str("ARP, ");
    }
    if htype != 1 || ptype != gre::ETHERTYPE_IPV4 || hlen != 6 || plen != 4 {
        let _ = write!(
            out,
            "hardware type {htype}, protocol 0x{ptype:04x}, length {}",
            b.len()
        );
        return;
    }
    let (sha, spa, tha, tpa) = (mac_at(b, 8), ipv4_at(b, 14), mac_at(b, 18), ipv4_at(b, 24));
    let (Some(spa), Some(tpa)) = (spa, tpa) else {
        return;
    };
    out.push_str("Ethernet (len 6), IPv4 (len 4), ");
    let _ = match op {
        1 if tha == [0; 6] => write!(out, "Request who-has {tpa} tell {spa}"),
        1 => write!(out, "Request who-has {tpa} ({}) tell {spa}", mac(tha)),
        2 => write!(out, "Reply {spa} is-at {}", mac(sha)),
        3 => write!(out, "Reverse Request who-is {} tell {}", mac(tha), mac(sha)),
        4 => write!(out, "Reverse Reply {} at {tpa}", mac(tha)),
        _ => write!(out, "Unknown ({op})"),
    };
    let _ = write!(out, ", length {}", b.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const HOST1: [u8; 4] = [172, 16, 10, 2];
    const HOST2: [u8; 4] = [152, 16, 10, 2];
    const TUN1: [u8; 4] = [192, 168, 50, 1];
    const TUN2: [u8; 4] = [192, 168, 50, 2];

    fn v6(last: u16, net: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, net, 0, 0, 0, last)
    }

    fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        [&dst[..], &src[..], &ethertype.to_be_bytes(), payload].concat()
    }

    struct V4 {
        ttl: u8,
        id: u16,
        tos: u8,
        df: bool,
    }
    const V4_DEFAULT: V4 = V4 {
        ttl: 64,
        id: 0,
        tos: 0,
        df: true,
    };

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, o: V4, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, o.tos];
        h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&o.id.to_be_bytes());
        h.extend_from_slice(&(if o.df { 0x4000u16 } else { 0 }).to_be_bytes());
        h.extend_from_slice(&[o.ttl, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let sum = internet_checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(payload);
        h
    }

    fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut m = [
            &[8, 0, 0, 0][..],
            &id.to_be_bytes(),
            &seq.to_be_bytes(),
            data,
        ]
        .concat();
        let sum = internet_checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut m = [
            &[128, 0, 0, 0][..],
            &id.to_be_bytes(),
            &seq.to_be_bytes(),
            data,
        ]
        .concat();
        let pseudo = [
            &src.octets()[..],
            &dst.octets(),
            &(m.len() as u32).to_be_bytes(),
            &[0, 0, 0, 58],
            &m,
        ]
        .concat();
        let sum = internet_checksum(&pseudo);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn gre_packet(repr: gre::Repr, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0; repr.header_len()];
        b.extend_from_slice(payload);
        repr.emit(&mut b).unwrap();
        b
    }

    fn repr(protocol: u16, checksum: bool, key: Option<u32>, sequence: Option<u32>) -> gre::Repr {
        gre::Repr {
            protocol,
            checksum,
            key,
            sequence,
        }
    }

    /// The seed lab's ping: 192.168.50.1 > .2 inside 172.16.10.2 > 152.16.10.2.
    const ECHO_ID: u16 = 43241;
    const ECHO_ID6: u16 = 0x1234;

    fn inner_ping() -> Vec<u8> {
        let data: Vec<u8> = (0..56).collect();
        ipv4(
            TUN1,
            TUN2,
            1,
            V4 {
                id: 16117,
                ..V4_DEFAULT
            },
            &icmp_echo(43241, 1, &data),
        )
    }

    fn over_v4(g: gre::Repr, o: V4, payload: &[u8]) -> Vec<u8> {
        eth(
            M2,
            M1,
            0x0800,
            &ipv4(HOST1, HOST2, 47, o, &gre_packet(g, payload)),
        )
    }

    fn seed() -> Vec<u8> {
        over_v4(
            repr(0x0800, false, None, None),
            V4 {
                ttl: 255,
                id: 18951,
                ..V4_DEFAULT
            },
            &inner_ping(),
        )
    }

    fn gretap_inner() -> Vec<u8> {
        eth(
            [2, 0, 0, 0, 0, 0xa],
            [2, 0, 0, 0, 0, 0xb],
            0x0800,
            &inner_ping(),
        )
    }

    fn inner6() -> Vec<u8> {
        ipv6(
            v6(1, 1),
            v6(2, 1),
            58,
            &icmp6_echo(v6(1, 1), v6(2, 1), 0x1234, 3, &(0..16).collect::<Vec<u8>>()),
        )
    }

    fn arp(op: u8, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
        let a = [&[0, 1, 8, 0, 6, 4, 0, op][..], &sha, &spa, &tha, &tpa].concat();
        eth(if op == 1 { [0xff; 6] } else { tha }, sha, 0x0806, &a)
    }

    fn arp_request() -> Vec<u8> {
        arp(1, M1, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
    }

    /// What a kernel without GRE answers the seed's packet: protocol 47 unreachable.
    fn gre_unreachable() -> Vec<u8> {
        let quoted = &seed()[ETH_HLEN..ETH_HLEN + 28];
        let mut m = [&[3, 2, 0, 0, 0, 0, 0, 0][..], quoted].concat();
        let sum = internet_checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        eth(
            M1,
            M2,
            0x0800,
            &ipv4(
                HOST2,
                HOST1,
                1,
                V4 {
                    ttl: 64,
                    id: 7,
                    tos: 0xc0,
                    df: false,
                },
                &m,
            ),
        )
    }

    fn echo_reply() -> Vec<u8> {
        let mut m = icmp_echo(9, 2, b"abc");
        m[0] = 0;
        let sum = internet_checksum(&[&m[..2], &[0, 0], &m[4..]].concat());
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        eth(M1, M2, 0x0800, &ipv4(TUN2, TUN1, 1, V4_DEFAULT, &m))
    }

    fn udp6() -> Vec<u8> {
        let (src, dst) = (v6(1, 1), v6(2, 1));
        let mut u = vec![0x30, 0x39, 0x01, 0xbb, 0, 12, 0, 0, 1, 2, 3, 4];
        let pseudo = [
            &src.octets()[..],
            &dst.octets(),
            &[0, 0, 0, 12, 0, 0, 0, 17],
            &u,
        ]
        .concat();
        let sum = internet_checksum(&pseudo);
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        eth(M2, M1, 0x86dd, &ipv6(src, dst, 17, &u))
    }

    /// Frames with what `tcpdump -t -v -n` 4.99.3 printed for them (gretap:
    /// the inner Ethernet line as `-e` prints it).
    fn vectors() -> Vec<(Vec<u8>, &'static str)> {
        let t255 = |id| V4 {
            ttl: 255,
            id,
            ..V4_DEFAULT
        };
        vec![
            (seed(), "IP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, false, Some(0x2a), None), t255(1), &inner_ping()),
             "IP (tos 0x0, ttl 255, id 1, offset 0, flags [DF], proto GRE (47), length 112)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [key present], key=0x2a, length 92
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, true, None, Some(7)), t255(2), &inner_ping()),
             "IP (tos 0x0, ttl 255, id 2, offset 0, flags [DF], proto GRE (47), length 116)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [checksum present, sequence# present], sum 0x67f8, off 0x0, seq 7, length 96
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x0800, true, Some(0xdead_beef), Some(7)), V4 { ttl: 255, id: 3, tos: 0xb8, df: false }, &inner_ping()),
             "IP (tos 0xb8, ttl 255, id 3, offset 0, flags [none], proto GRE (47), length 120)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [checksum present, key present, sequence# present], sum 0xaa5a, off 0x0, key=0xdeadbeef, seq 7, length 100
\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x6558, false, Some(5), None), V4 { id: 4, ..V4_DEFAULT }, &gretap_inner()),
             "IP (tos 0x0, ttl 64, id 4, offset 0, flags [DF], proto GRE (47), length 126)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [key present], key=0x5, length 106
\t02:00:00:00:00:0b > 02:00:00:00:00:0a, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (eth(M2, M1, 0x86dd, &ipv6(v6(1, 0), v6(2, 0), 47, &gre_packet(repr(0x86dd, false, None, None), &inner6()))),
             "IP6 (hlim 64, next-header GRE (47) payload length: 68) fd00::1 > fd00::2: GREv0, Flags [none], length 68
\tIP6 (hlim 64, next-header ICMPv6 (58) payload length: 24) fd00:0:0:1::1 > fd00:0:0:1::2: [icmp6 sum ok] ICMP6, echo request, id 4660, seq 3"),
            (eth(M2, M1, 0x86dd, &ipv6(v6(1, 0), v6(2, 0), 47, &gre_packet(repr(0x6558, false, None, None), &gretap_inner()))),
             "IP6 (hlim 64, next-header GRE (47) payload length: 102) fd00::1 > fd00::2: GREv0, Flags [none], length 102
\t02:00:00:00:00:0b > 02:00:00:00:00:0a, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)
    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64"),
            (over_v4(repr(0x86dd, false, None, None), t255(5), &inner6()),
             "IP (tos 0x0, ttl 255, id 5, offset 0, flags [DF], proto GRE (47), length 88)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 68
\tIP6 (hlim 64, next-header ICMPv6 (58) payload length: 24) fd00:0:0:1::1 > fd00:0:0:1::2: [icmp6 sum ok] ICMP6, echo request, id 4660, seq 3"),
            (over_v4(repr(0x1234, false, None, None), t255(6), b"xyz"),
             "IP (tos 0x0, ttl 255, id 6, offset 0, flags [DF], proto GRE (47), length 27)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 7
\tgre-proto-0x1234"),
            (arp_request(), "ARP, Ethernet (len 6), IPv4 (len 4), Request who-has 10.0.0.2 tell 10.0.0.1, length 28"),
            (arp(2, M2, [10, 0, 0, 2], M1, [10, 0, 0, 1]),
             "ARP, Ethernet (len 6), IPv4 (len 4), Reply 10.0.0.2 is-at 02:00:00:00:00:02, length 28"),
            (gre_unreachable(), "IP (tos 0xc0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 56)
    152.16.10.2 > 172.16.10.2: ICMP 152.16.10.2 protocol 47 unreachable, length 36
\tIP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)
    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88
\tIP  [|ip]"),
            (echo_reply(), "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto ICMP (1), length 31)
    192.168.50.2 > 192.168.50.1: ICMP echo reply, id 9, seq 2, length 11"),
            (udp6(), "IP6 (hlim 64, next-header UDP (17) payload length: 12) fd00:0:0:1::1.12345 > fd00:0:0:1::2.443: [udp sum ok] UDP, length 4"),
            (eth(M2, M1, 0x0800, &ipv4([1, 2, 3, 4], [5, 6, 7, 8], 99, V4_DEFAULT, b"abcd")),
             "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto unknown (99), length 24)
    1.2.3.4 > 5.6.7.8:  ip-proto-99 4"),
            (eth(M2, M1, 0x0800, &ipv4([1, 2, 3, 4], [5, 6, 7, 8], 17, V4_DEFAULT, &[3, 232, 7, 208, 0, 12, 0, 0, 1, 2, 3, 4])),
             "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 32)
    1.2.3.4.1000 > 5.6.7.8.2000: UDP, length 4"),
        ]
    }

    #[test]
    fn describes_like_tcpdump() {
        for (frame, want) in vectors() {
            assert_eq!(describe(&frame).join("\n"), want);
        }
    }

    #[test]
    fn seed_packet_reads_exactly_as_in_the_blog() {
        let want = [
            "IP (tos 0x0, ttl 255, id 18951, offset 0, flags [DF], proto GRE (47), length 108)",
            "    172.16.10.2 > 152.16.10.2: GREv0, Flags [none], length 88",
            "\tIP (tos 0x0, ttl 64, id 16117, offset 0, flags [DF], proto ICMP (1), length 84)",
            "    192.168.50.1 > 192.168.50.2: ICMP echo request, id 43241, seq 1, length 64",
        ];
        assert_eq!(describe(&seed()), want);
    }

    #[test]
    fn decodes_the_seed_packet() {
        let e = decode(&seed()).expect("the seed frame is GRE");
        assert_eq!(e.outer_src, IpAddr::from(HOST1));
        assert_eq!(e.outer_dst, IpAddr::from(HOST2));
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (255, 0, true, 18951, 108)
        );
        assert_eq!(e.gre, repr(0x0800, false, None, None));
        assert!(e.checksum_ok);
        let inner = Inner::Ip {
            src: TUN1.into(),
            dst: TUN2.into(),
            proto: 1,
            ttl: 64,
            df: true,
            len: 84,
            echo_id: Some(ECHO_ID),
        };
        assert_eq!(e.inner, inner);
    }

    #[test]
    fn decodes_key_checksum_and_sequence() {
        let g = repr(0x0800, true, Some(0xdead_beef), Some(7));
        let e = decode(&over_v4(
            g,
            V4 {
                ttl: 9,
                id: 3,
                tos: 0xb8,
                df: false,
            },
            &inner_ping(),
        ))
        .unwrap();
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (9, 0xb8, false, 3, 120)
        );
        assert_eq!(e.gre, g);
        assert!(e.checksum_ok);
    }

    #[test]
    fn flags_a_wrong_gre_checksum() {
        let mut frame = over_v4(repr(0x0800, true, None, None), V4_DEFAULT, &inner_ping());
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        let e = decode(&frame).unwrap();
        assert!(e.gre.checksum);
        assert!(!e.checksum_ok);
    }

    #[test]
    fn decodes_gretap_inner_ethernet() {
        let e = decode(&over_v4(
            repr(0x6558, false, Some(5), None),
            V4_DEFAULT,
            &gretap_inner(),
        ))
        .unwrap();
        let inner = Inner::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 0xb],
            dst_mac: [2, 0, 0, 0, 0, 0xa],
            ethertype: 0x0800,
            ip: Some((TUN1.into(), TUN2.into(), 1)),
            echo_id: Some(ECHO_ID),
        };
        assert_eq!(e.inner, inner);
        assert_eq!(e.gre.key, Some(5));
    }

    #[test]
    fn decodes_ip6gre() {
        let outer = ipv6(
            v6(1, 0),
            v6(2, 0),
            47,
            &gre_packet(repr(0x86dd, false, Some(1), None), &inner6()),
        );
        let e = decode(&eth(M2, M1, 0x86dd, &outer)).unwrap();
        assert_eq!(
            (e.outer_src, e.outer_dst),
            (IpAddr::from(v6(1, 0)), IpAddr::from(v6(2, 0)))
        );
        assert_eq!(
            (e.ttl, e.tos, e.df, e.ip_id, e.outer_len),
            (64, 0, false, 0, outer.len())
        );
        let inner = Inner::Ip {
            src: v6(1, 1).into(),
            dst: v6(2, 1).into(),
            proto: 58,
            ttl: 64,
            df: false,
            len: 64,
            echo_id: Some(ECHO_ID6),
        };
        assert_eq!(e.inner, inner);
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_gre_packet() {
        // A short frame is padded to 60 bytes: the checksum covers only what
        // the outer IP length says.
        let mut frame = over_v4(repr(0x1234, true, None, None), V4_DEFAULT, b"x");
        frame.resize(60, 0xaa);
        let e = decode(&frame).unwrap();
        assert!(e.checksum_ok);
        assert_eq!(e.inner, Inner::Other(0x1234));
        assert!(describe(&frame)[1].ends_with("length 9"));
    }

    #[test]
    fn non_gre_frames_are_not_decoded() {
        assert_eq!(decode(&arp_request()), None);
        assert_eq!(decode(&eth(M2, M1, 0x0800, &inner_ping())), None);
        assert_eq!(decode(&[]), None);
        // A later fragment carries no GRE header.
        let mut frag = seed();
        frag[ETH_HLEN + 6] = 0x00;
        frag[ETH_HLEN + 7] = 0x10;
        assert_eq!(decode(&frag), None);
    }

    #[test]
    fn short_descriptions_for_odd_frames() {
        assert_eq!(describe(&[1, 2, 3]), [" [|ether]"]);
        assert_eq!(
            describe(&eth(M2, M1, 0x1234, b"hello")),
            ["02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype Unknown (0x1234), length 19:"]
        );
        assert_eq!(describe(&seed()[..ETH_HLEN + 10]), ["IP  [|ip]"]);
    }

    #[test]
    fn deep_nesting_stops_without_exhausting_the_stack() {
        // GRE in GRE in GRE...: 2000 levels would overflow the stack unchecked.
        let mut packet = inner_ping();
        for _ in 0..2000 {
            packet = ipv4(
                HOST1,
                HOST2,
                47,
                V4_DEFAULT,
                &gre_packet(repr(0x0800, false, None, None), &packet),
            );
        }
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || describe(&eth(M2, M1, 0x0800, &packet)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(text.len(), 2 * (MAX_DEPTH + 1) + 1);
        assert_eq!(text.last().unwrap(), "\t [|nested]");
    }

    #[test]
    fn open_names_a_missing_interface() {
        let err = Capture::open("gl-no-such-if")
            .err()
            .expect("no such interface");
        assert!(format!("{err:#}").contains("`gl-no-such-if`"), "{err:#}");
    }

    fn frame(data: Vec<u8>, secs: u64) -> Frame {
        let wire_len = data.len();
        let timestamp = SystemTime::UNIX_EPOCH + Duration::new(secs, 250_000_000);
        Frame {
            data,
            wire_len,
            timestamp,
            outgoing: false,
        }
    }

    #[test]
    fn pcap_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(&frame(vec![0xab; 3], 7)).unwrap();
        let bytes = w.into_inner();
        assert_eq!(&bytes[..8], &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
        assert_eq!(&bytes[16..24], &[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            &bytes[24..40],
            &[7, 0, 0, 0, 0x90, 0xd0, 3, 0, 3, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(&bytes[40..], &[0xab; 3]);
    }

    fn tcpdump(path: &std::path::Path, extra: &[&str]) -> Vec<Vec<String>> {
        let out = Command::new("tcpdump")
            .args(["-t", "-v", "-n"])
            .args(extra)
            .arg("-r")
            .arg(path)
            .output()
            .expect("this test needs tcpdump (Debian package `tcpdump`)");
        assert!(
            out.status.success(),
            "tcpdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut packets: Vec<Vec<String>> = Vec::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if line.starts_with([' ', '\t']) {
                packets
                    .last_mut()
                    .expect("a packet's first line")
                    .push(line.to_owned());
            } else {
                packets.push(vec![line.to_owned()]);
            }
        }
        packets
    }

    /// Writes the vectors with PcapWriter and checks tcpdump reads the same
    /// text that describe() gives.
    #[test]
    fn tcpdump_reads_our_pcap_as_describe_does() {
        let vectors = vectors();
        let path =
            std::env::temp_dir().join(format!("grelab-capture-test-{}.pcap", std::process::id()));
        // Also the seed cut short, as a small snap length would.
        let mut frames: Vec<Vec<u8>> = vectors.iter().map(|v| v.0.clone()).collect();
        let cuts = [36, 40, 50, 80];
        frames.extend(cuts.iter().map(|&n| seed()[..n].to_vec()));
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for (i, data) in frames.iter().enumerate() {
            let mut f = frame(data.clone(), i as u64);
            f.wire_len = f
                .wire_len
                .max(if i >= vectors.len() { seed().len() } else { 0 });
            w.write(&f).unwrap();
        }
        drop(w);
        let plain = tcpdump(&path, &[]);
        let with_e = tcpdump(&path, &["-e"]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(plain.len(), frames.len());
        assert!(plain[0][1].contains("GREv0"));
        for (i, data) in frames.iter().enumerate() {
            let mut want = plain[i].clone();
            if decode(data).is_some_and(|e| e.gre.protocol == gre::ETHERTYPE_TEB) {
                // The inner Ethernet header only shows with -e: take the
                // lines after the GRE line from there.
                let after = want.iter().position(|l| l.contains("GREv0")).unwrap() + 1;
                want.truncate(after);
                want.extend(with_e[i][after..].iter().cloned());
            }
            assert_eq!(describe(data), want, "frame {i}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = describe(&bytes);
        }

        #[test]
        fn arbitrary_gre_after_real_headers_never_panics(
            v6 in any::<bool>(),
            mut gre in proptest::collection::vec(any::<u8>(), 0..120),
            flags in prop::sample::select(vec![0x00u8, 0x80, 0x20, 0x10, 0xb0]),
            protocol in prop::sample::select(vec![0x0800u16, 0x86dd, 0x6558, 0x0806]),
        ) {
            if gre.len() >= 4 {
                gre[0] = flags;
                gre[1] = 0;
                gre[2..4].copy_from_slice(&protocol.to_be_bytes());
            }
            let frame = if v6 {
                eth(M2, M1, 0x86dd, &ipv6(super::tests::v6(1, 0), super::tests::v6(2, 0), 47, &gre))
            } else {
                eth(M2, M1, 0x0800, &ipv4(HOST1, HOST2, 47, V4_DEFAULT, &gre))
            };
            let _ = decode(&frame);
            prop_assert!(!describe(&frame).is_empty());
        }
    }

    /// Two namespaces of this test's own, joined by a veth; removed on drop.
    struct Lab {
        a: String,
        b: String,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            // Deleting a namespace destroys the veth pair with it.
            let _ = crate::sys::netns::delete(&self.a);
            let _ = crate::sys::netns::delete(&self.b);
        }
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("running `ip` (iproute2)");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn captures_gre_sent_between_namespaces() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and needs root: run the tests as root (CI does)"
        );
        let pid = std::process::id();
        let lab = Lab {
            a: format!("gl-cap-{pid}-a"),
            b: format!("gl-cap-{pid}-b"),
        };
        let (va, vb) = (format!("glc{pid}a"), format!("glc{pid}b"));
        crate::sys::netns::create(&lab.a).unwrap();
        crate::sys::netns::create(&lab.b).unwrap();
        ip(&[
            "-n", &lab.a, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", &lab.b,
        ]);
        // Capturing on an interface that is down says so.
        let va2 = va.clone();
        let down = crate::sys::netns::run_in(&lab.a, move || {
            Capture::open(&va2)?.next(Instant::now() + Duration::from_millis(500))
        });
        let err = format!("{:#}", down.expect_err("capturing on a down interface"));
        assert!(err.contains("is down"), "{err}");
        ip(&["-n", &lab.a, "addr", "add", "10.255.0.1/30", "dev", &va]);
        ip(&["-n", &lab.b, "addr", "add", "10.255.0.2/30", "dev", &vb]);
        for (ns, dev) in [(&lab.a, &va), (&lab.b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }

        // A quiet interface: next() gives None at the deadline, not before.
        let quiet = crate::sys::netns::run_in(&lab.a, || {
            let mut cap = Capture::open("lo")?;
            let start = Instant::now();
            let got = cap.next(start + Duration::from_millis(200))?;
            Ok((got, start.elapsed()))
        })
        .unwrap();
        assert_eq!(quiet.0, None);
        assert!(
            quiet.1 >= Duration::from_millis(200),
            "returned after {:?}",
            quiet.1
        );

        let g = repr(gre::ETHERTYPE_IPV4, true, Some(0x0102_0304), Some(42));
        let wire = gre_packet(g, &inner_ping());
        let deadline = Instant::now() + Duration::from_secs(10);
        let find = move |cap: &mut Capture| -> Result<Frame> {
            while let Some(f) = cap.next(deadline)? {
                if decode(&f.data).is_some_and(|e| e.gre.key == Some(0x0102_0304)) {
                    return Ok(f);
                }
            }
            anyhow::bail!("no GRE frame captured within 10 s")
        };

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let b = lab.b.clone();
        let receiver = std::thread::spawn(move || {
            crate::sys::netns::run_in(&b, move || {
                let mut cap = Capture::open(&vb)?;
                ready_tx.send(()).unwrap();
                find(&mut cap)
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiving capture opened");
        let sent = crate::sys::netns::run_in(&lab.a, move || {
            let mut cap = Capture::open(&va)?;
            send_gre(&wire)?;
            find(&mut cap)
        })
        .unwrap();
        let received = receiver.join().unwrap().unwrap();

        assert!(sent.outgoing && !received.outgoing);
        let age = SystemTime::now().duration_since(sent.timestamp).unwrap();
        assert!(age < Duration::from_secs(30), "timestamp {age:?} old");
        for f in [&sent, &received] {
            let e = decode(&f.data).unwrap();
            assert_eq!(e.outer_src, IpAddr::from([10, 255, 0, 1]));
            assert_eq!(e.outer_dst, IpAddr::from([10, 255, 0, 2]));
            assert_eq!(
                (e.ttl, e.tos, e.df, e.outer_len),
                (77, 0x20, true, 20 + 16 + 84)
            );
            assert_eq!(e.gre, g);
            assert!(e.checksum_ok);
            assert_eq!(
                e.inner,
                Inner::Ip {
                    src: TUN1.into(),
                    dst: TUN2.into(),
                    proto: 1,
                    ttl: 64,
                    df: true,
                    len: 84,
                    echo_id: Some(ECHO_ID),
                }
            );
            let text = describe(&f.data);
            assert!(
                text[1].contains("GREv0, Flags [checksum present, key present, sequence# present]"),
                "{text:?}"
            );
        }
        assert_eq!(
            decode(&sent.data).unwrap().ip_id,
            decode(&received.data).unwrap().ip_id
        );
        drop(lab);
    }

    /// Sends `gre` to 10.255.0.2 from a raw protocol-47 socket: TTL 77, TOS 0x20, DF.
    fn send_gre(gre: &[u8]) -> Result<()> {
        use nix::sys::socket::{SockaddrIn, sendto};
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 47) };
        anyhow::ensure!(raw >= 0, "raw GRE socket: {}", io::Error::last_os_error());
        // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(&fd, sockopt::Ipv4Ttl, &77)?;
        setsockopt(&fd, sockopt::Ipv4Tos, &0x20)?;
        let dont_fragment: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: the pointer and length describe a c_int that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw const dont_fragment).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(rc == 0, "IP_MTU_DISCOVER: {}", io::Error::last_os_error());
        sendto(
            fd.as_raw_fd(),
            gre,
            &SockaddrIn::new(10, 255, 0, 2, 0),
            MsgFlags::empty(),
        )?;
        Ok(())
    }
}
