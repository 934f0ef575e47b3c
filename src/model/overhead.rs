//! The MTU arithmetic: the bytes a tunnel puts in front of the inner packet.

use super::{EndOptions, TunnelKind};

/// The headers a tunnel adds in front of the inner packet, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overhead {
    /// The outer IP header: IPv4 20, IPv6 40 (no extension headers).
    pub outer: u32,
    /// The GRE header as sent.
    pub gre: u32,
    /// The inner Ethernet header of a gretap or ip6gretap (14), else 0.
    pub ethernet: u32,
}

impl Overhead {
    /// The headers of a `kind` tunnel end sending with `opts`.
    pub(crate) fn of(kind: TunnelKind, opts: &EndOptions) -> Overhead {
        // The sent header: the kernel sizes it by the output flags. 4 bytes
        // and 4 per option (RFC 2890), the rule `wire::gre::header_len`
        // applies to headers read; model imports nothing, so it is stated here.
        let options =
            u32::from(opts.checksum) + u32::from(opts.okey.is_some()) + u32::from(opts.sequence);
        Overhead {
            outer: if kind.is_ipv6() { 40 } else { 20 },
            gre: 4 + 4 * options,
            ethernet: if kind.is_l2() { 14 } else { 0 },
        }
    }

    /// All of it: what the tunnel's MTU is below the underlay's.
    pub(crate) fn total(self) -> u32 {
        self.outer + self.gre + self.ethernet
    }
}

/// Bytes a tunnel adds in front of the inner packet (outer IP + GRE [+ Ethernet]).
pub fn overhead(kind: TunnelKind, opts: &EndOptions) -> u32 {
    Overhead::of(kind, opts).total()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gre_option_adds_four_bytes() {
        for bits in 0..8u32 {
            let opts = EndOptions {
                ikey: None,
                okey: (bits & 2 != 0).then_some(7),
                checksum: bits & 1 != 0,
                sequence: bits & 4 != 0,
            };
            let o = Overhead::of(TunnelKind::Ip6gretap, &opts);
            assert_eq!(o.gre, 4 + 4 * bits.count_ones(), "{opts:?}");
            assert_eq!((o.outer, o.ethernet), (40, 14));
            assert_eq!(overhead(TunnelKind::Gre, &opts), 20 + o.gre);
        }
    }
}
