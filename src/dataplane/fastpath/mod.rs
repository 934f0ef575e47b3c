//! The userspace dataplane's in-kernel fast path: small eBPF programs at the
//! tc hooks (TCX, Linux 6.6 and later) that carry plain GRE without a trip
//! through userspace, for kernels with eBPF but no ip_gre.
//!
//! - Egress of a tunnel's TUN device (`gre`, `ip6gre`) or TAP device
//!   (`gretap`, `ip6gretap`): the packet (frame) gets its outer IPv4 or
//!   IPv6 and GRE headers (key if any) and leaves by the underlay device through the neighbour table
//!   (`bpf_redirect_neigh`). TCP super-packets stay whole; the kernel's GRE
//!   segmentation (not part of ip_gre) cuts them only where a device needs
//!   it.
//!   The outer IPv4 header is ip_gre's: DF always with pmtudisc, else
//!   copied from an IPv4 inner packet; the ID from a per-tunnel counter.
//! - Ingress of the underlay device: GRE for a known (local, remote, key)
//!   loses its outer headers and is handed to the tunnel's device as if
//!   received there, with ECN per RFC 6040 (outer CE onto the inner
//!   packet, as ip_gre).
//!
//! Only what ip_gre would accept is taken: frames for this host's MAC,
//! untagged, IPv4 with a valid header checksum. Everything else (that, GRE
//! checksums or sequence numbers, non-IP frames on gretap, IPv4 options,
//! IPv6 extension headers, fragments, CE over a Not-ECT packet, unknown
//! senders) is passed on untouched to the stack and so the userspace
//! path, which keeps the drop counters. The programs bypass netfilter's
//! hooks: the dataplane keeps the tunnel ends of a namespace with rules
//! off them (`netfilter`).
//!
//! The programs are assembled here from their instructions: no compiler
//! and no object files at build or run time. Pieces: `asm` (the
//! assembler), `programs` (encap and decap), `layout` (the table keys,
//! values, counters and the stack frame, as `#[repr(C)]` structs that the
//! programs and the maps both read), `maps` and `bpf` (the syscalls, with
//! `bpf_attr` as named structs). Closing the link descriptors detaches
//! them, so they go with the dataplane process.

mod asm;
mod bpf;
mod layout;
mod maps;
mod programs;

#[cfg(all(test, feature = "root-tests"))]
mod root_tests;

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result, anyhow};

use self::bpf::{ATTACH_TCX_EGRESS, ATTACH_TCX_INGRESS, link_create, load};
use self::layout::{CountersEntry, Route, TableKey};
use self::maps::{Map, MapKind};
use self::programs::{decap_program, encap_program};
use crate::model::TunnelEnd;

pub use self::asm::Insn;
pub use self::layout::Counters;

/// Whether the programs carry tunnel end `end`: not with GRE checksums or
/// sequence numbers, which userspace keeps.
pub fn carries(end: &TunnelEnd) -> bool {
    !end.checksum && !end.sequence
}

/// What an egress program writes in front of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// The tunnel's index in the counters.
    pub index: u32,
    /// Both IPv4 or both IPv6.
    pub local: IpAddr,
    pub remote: IpAddr,
    pub key: Option<u32>,
    /// 0 inherits the inner packet's TTL (hop limit).
    pub ttl: u8,
    /// An odd TOS (traffic class) inherits the inner packet's DSCP.
    pub tos: u8,
    /// pmtudisc: IPv4's DF always; without, DF copies an IPv4 inner DF.
    pub df: bool,
    /// gretap: Ethernet frames from a TAP device, not IP packets from TUN.
    pub l2: bool,
    /// The underlay device the packets leave by.
    pub out_ifindex: u32,
    /// Added to the tunnel's count of sent IPv4 segments to make the outer
    /// IPv4 ID, so that it goes on from the userspace path's.
    pub id_base: u16,
}

impl Encap {
    /// The egress program's work for tunnel end `end` (one `carries`),
    /// counted as tunnel `index`, leaving by `out_ifindex`, its IPv4 IDs
    /// going on from `id_base`.
    pub fn of(end: &TunnelEnd, index: u32, out_ifindex: u32, id_base: u16) -> Encap {
        Encap {
            index,
            local: end.local,
            remote: end.remote,
            key: end.okey,
            ttl: end.ttl,
            tos: end.tos,
            df: end.pmtudisc,
            l2: end.kind.is_l2(),
            out_ifindex,
            id_base,
        }
    }

    /// The outer IP and GRE headers' length, by the model's arithmetic
    /// (the fast path carries no checksums or sequence numbers).
    fn header_len(&self) -> i32 {
        use crate::model::{EndOptions, TunnelKind};
        let kind = match (self.local.is_ipv6(), self.l2) {
            (false, false) => TunnelKind::Gre,
            (false, true) => TunnelKind::Gretap,
            (true, false) => TunnelKind::Ip6gre,
            (true, true) => TunnelKind::Ip6gretap,
        };
        let opts = EndOptions {
            ikey: None,
            okey: self.key,
            checksum: false,
            sequence: false,
        };
        let o = crate::model::Overhead::of(kind, &opts);
        (o.outer + o.gre) as i32
    }
}

/// The maps the programs of one dataplane share.
pub struct FastPath {
    counters: Map<u32, CountersEntry>,
    /// (namespace slot, gretap and key flags, local, remote, key) ->
    /// (device, tunnel), for IPv4 and for IPv6 underlays.
    table: Map<TableKey<4>, Route>,
    table6: Map<TableKey<16>, Route>,
}

impl FastPath {
    /// Creates the maps for up to `tunnels` tunnels; fails where the kernel
    /// has no eBPF (or forbids it).
    pub fn new(tunnels: usize) -> Result<FastPath> {
        let n = tunnels.max(1) as u32;
        Ok(FastPath {
            counters: Map::new(MapKind::Array, n).context("creating the counters map")?,
            table: Map::new(MapKind::Hash, n).context("creating the tunnel table")?,
            table6: Map::new(MapKind::Hash, n).context("creating the IPv6 tunnel table")?,
        })
    }

    /// Attaches an egress program for `e` to the device `ifindex` of the
    /// calling thread's namespace.
    pub fn attach_egress(&self, e: &Encap, ifindex: u32) -> Result<OwnedFd> {
        let prog = load(&encap_program(e, self.counters.fd()), "grelab_encap")?;
        link_create(&prog, ifindex, ATTACH_TCX_EGRESS)
    }

    /// Attaches the receive program of namespace `slot` to the device
    /// `ifindex` of the calling thread's namespace.
    pub fn attach_ingress(&self, slot: u32, ifindex: u32) -> Result<OwnedFd> {
        let code = decap_program(
            slot,
            [self.table.fd(), self.table6.fd()],
            self.counters.fd(),
        );
        let prog = load(&code, "grelab_decap")?;
        link_create(&prog, ifindex, ATTACH_TCX_INGRESS)
    }

    /// Lets namespace `slot`'s receive programs hand what tunnel end `end`
    /// accepts to its device `ifindex`, counted as tunnel `index`.
    pub fn add_route(&self, slot: u32, end: &TunnelEnd, ifindex: u32, index: u32) -> Result<()> {
        let v = Route {
            ifindex,
            tunnel: index,
        };
        match route_keys(slot, end) {
            (Some(k), _) => self.table.update(&k, &v),
            (_, Some(k)) => self.table6.update(&k, &v),
            _ => return Err(mixed(end)),
        }
        .context("adding a tunnel to the fast-path table")
    }

    /// Undoes `add_route`: namespace `slot`'s receive programs leave what
    /// `end` accepts to the stack again.
    pub fn remove_route(&self, slot: u32, end: &TunnelEnd) -> Result<()> {
        let removed = match route_keys(slot, end) {
            (Some(k), _) => self.table.delete(&k),
            (_, Some(k)) => self.table6.delete(&k),
            _ => return Err(mixed(end)),
        };
        match removed {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(e).context("removing a tunnel from the fast-path table")
            }
            _ => Ok(()),
        }
    }

    /// The fast-path counters of tunnel `index`.
    pub fn counters(&self, index: u32) -> Result<Counters> {
        let entry = self
            .counters
            .lookup(&index)
            .context("reading the fast-path counters")?;
        Ok(entry.counters)
    }
}

fn mixed(end: &TunnelEnd) -> anyhow::Error {
    anyhow!(
        "tunnel `{}`: local {} and remote {} are of different address families",
        end.name,
        end.local,
        end.remote
    )
}

/// `end`'s key in namespace `slot`, for the IPv4 table or the IPv6 one.
fn route_keys(slot: u32, end: &TunnelEnd) -> (Option<TableKey<4>>, Option<TableKey<16>>) {
    let l2 = end.kind.is_l2();
    (
        route_key(slot, end.local, end.remote, end.ikey, l2),
        route_key(slot, end.local, end.remote, end.ikey, l2),
    )
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The table key of a tunnel end: `N` = 4 for IPv4, 16 for IPv6; None
/// when the addresses are not both of `N` bytes.
fn route_key<const N: usize>(
    slot: u32,
    local: IpAddr,
    remote: IpAddr,
    key: Option<u32>,
    l2: bool,
) -> Option<TableKey<N>> {
    Some(TableKey {
        tag: TableKey::<N>::tag(slot, l2, key.is_some()),
        local: octets(local).try_into().ok()?,
        remote: octets(remote).try_into().ok()?,
        key: key.unwrap_or(0).to_be_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn keys_are_big_endian_and_tagged() {
        let k: TableKey<4> = route_key(
            5,
            v4([1, 2, 3, 4]),
            v4([5, 6, 7, 8]),
            Some(0x0102_0304),
            true,
        )
        .unwrap();
        assert_eq!(k.tag, 23);
        assert_eq!(
            (k.local, k.remote, k.key),
            ([1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4])
        );
        let unkeyed: TableKey<4> =
            route_key(5, v4([1, 2, 3, 4]), v4([5, 6, 7, 8]), None, false).unwrap();
        assert_eq!((unkeyed.tag, unkeyed.key), (20, [0; 4]));
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let k6: TableKey<16> = route_key(1, IpAddr::V6(a), IpAddr::V6(b), Some(9), false).unwrap();
        assert_eq!((k6.local, k6.remote), (a.octets(), b.octets()));
        assert_eq!(k6.key, 9u32.to_be_bytes());
        assert!(
            route_key::<4>(1, IpAddr::V6(a), IpAddr::V6(b), None, false).is_none(),
            "IPv6 addresses make no IPv4 table key"
        );
        assert!(
            route_key::<16>(1, IpAddr::V6(a), v4([1, 2, 3, 4]), None, false).is_none(),
            "nor mixed ones an IPv6 key"
        );
    }

    #[test]
    fn the_layouts_are_the_kernels_bytes() {
        use std::mem::{offset_of, size_of};
        // The kernel sees keys and values as bytes: these are the sizes
        // the maps are created with and the offsets the programs use.
        assert_eq!(size_of::<TableKey<4>>(), 16);
        assert_eq!(size_of::<TableKey<16>>(), 40);
        assert_eq!(offset_of!(TableKey<16>, key), 36);
        assert_eq!(size_of::<Route>(), 8);
        assert_eq!(size_of::<CountersEntry>(), 40);
        assert_eq!(offset_of!(CountersEntry, ipv4_ids), 32);
    }
}
