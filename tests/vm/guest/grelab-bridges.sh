#!/bin/sh
# Bridges and multicast on kernel GRE: l2-islands (two LANs in one subnet,
# each switch node bridging its LAN veth with a gretap end) on the kernel
# backend, then mixed (sw1's end kernel, sw2's userspace), then built by
# `grelab plan | sh` alone: ARP and ping across every time. Kernel GRE
# devices lack the MULTICAST flag by default: grelab's carry it, and
# `multicast: false` takes it off.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }
# lacks TEXT CMD...: CMD's output does not contain TEXT.
lacks() {
    _t=$1
    shift
    _o=$("$@" 2>&1) || return 1
    printf '%s\n' "$_o"
    case $_o in *"$_t"*) return 1 ;; esac
}
# flags NS DEV: the flags of DEV, as `<A,B,...>`.
flags() { ip -n "$1" link show "$2" | sed -n 's/^[0-9]*: [^ ]* \(<[^>]*>\).*/\1/p'; }

# islands NAME: the lab is up: bridges, ports, ARP and pings across.
islands() {
    expect_contains "$1-bridge" "bridge forward_delay" ip -n sw1 -d link show br0
    expect_contains "$1-lan-port" "master br0" ip -n sw1 link show lan0
    expect_contains "$1-tunnel-port" "master br0" ip -n sw2 link show gt0
    expect_contains "$1-ping-h1-h2" "3 packets received" ping3 h1 10.1.0.12
    expect_contains "$1-ping-h2-h1" "3 packets received" ping3 h2 10.1.0.11
    expect_contains "$1-ping-h1-sw2" "3 packets received" ping3 h1 10.1.0.2
    h2mac=$(ip -n h2 link show eth0 | awk '/link\/ether/ { print $2 }')
    expect_contains "$1-arp-across" "lladdr $h2mac" ip -n h1 neigh show 10.1.0.12
}

# Kernel gretap on both ends.
check kernel-up $g up /guest/l2-islands.yaml --backend kernel
expect_contains kernel-gretap "gretap remote 172.16.2.2 local 172.16.1.2 ttl 255" ip -n sw1 -d link show gt0
expect_contains kernel-multicast ",MULTICAST," flags sw1 gt0
expect_contains kernel-status "tunnel gt0 on sw1: kernel" $g status
islands kernel
check kernel-verify $g verify -v
check kernel-down $g down
check kernel-nothing-left no_netns

# Mixed: sw1's end the kernel's gretap, sw2's a TAP of the userspace dataplane.
sed -e 's/{node: sw1, \(.*\)}/{node: sw1, \1, backend: kernel}/' \
    -e 's/{node: sw2, \(.*\)}/{node: sw2, \1, backend: userspace}/' \
    /guest/l2-islands.yaml >/tmp/l2-mixed.yaml
check mixed-up $g up /tmp/l2-mixed.yaml
expect_contains mixed-kernel "tunnel gt0 on sw1: kernel" $g status
expect_contains mixed-userspace "tunnel gt0 on sw2: userspace" $g status
expect_contains mixed-tap "tun type tap" ip -n sw2 -d link show gt0
expect_contains mixed-kernel-multicast ",MULTICAST," flags sw1 gt0
expect_contains mixed-tap-multicast ",MULTICAST," flags sw2 gt0
islands mixed
check mixed-verify $g verify -v
check mixed-down $g down
check mixed-nothing-left no_netns

# The plan's script alone builds the same lab.
{ echo 'ip() { /usr/sbin/ip "$@"; }'; $g plan /guest/l2-islands.yaml; } >/tmp/l2.sh
check plan-sh sh -e /tmp/l2.sh
expect_contains plan-sh-snooping "mcast_snooping 0" ip -n sw1 -d link show br0
islands plan-sh
for ns in h1 sw1 internet sw2 h2; do ip netns del "$ns"; done
check plan-sh-nothing-left no_netns

# gre (a point-to-point device, NOARP, no MULTICAST of its own): grelab
# sets the flag; `multicast: false` leaves it off.
step ip netns add witness
step ip -n witness link add g0 type gre local 192.0.2.1 remote 192.0.2.2
check gre-bare-lacks-multicast lacks MULTICAST flags witness g0
step ip netns del witness
check gre-up $g up /guest/basic.yaml --backend kernel --no-check
expect_contains gre-multicast ",MULTICAST," flags host1 tun0
expect_contains gre-multicast-far ",MULTICAST," flags host2 tun0
check gre-down $g down
sed 's/^    ttl: 255$/    ttl: 255\n    multicast: false/' /guest/basic.yaml >/tmp/basic-nomc.yaml
expect_contains gre-nomc-file "multicast: false" cat /tmp/basic-nomc.yaml
check gre-nomc-up $g up /tmp/basic-nomc.yaml --backend kernel --no-check
check gre-nomc-flag lacks MULTICAST flags host1 tun0
expect_contains gre-nomc-ping "3 packets received" ping3 host1 192.168.50.2
check gre-nomc-down $g down
check gre-nomc-nothing-left no_netns

summary
