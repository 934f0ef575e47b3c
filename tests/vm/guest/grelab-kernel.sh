#!/bin/sh
# grelab's kernel backend on Debian's kernel: `grelab up` of every example
# topology with --backend kernel, the links as `ip -d link` shows them, a
# ping across every tunnel, `grelab verify`, `grelab down` leaving nothing;
# and `grelab plan | sh` building the seed lab by itself.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
ping6_3() { ip netns exec "$1" busybox ping -6 -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }

# basic: the seed lab, exactly.
check basic-up $g up /guest/basic.yaml --backend kernel
expect_contains basic-link "link/gre 172.16.10.2 peer 152.16.10.2" ip -n host1 -d link show tun0
expect_contains basic-mtu "mtu 1476" ip -n host1 -d link show tun0
expect_contains basic-ttl "ttl 255" ip -n host1 -d link show tun0
expect_contains basic-peer-link "link/gre 152.16.10.2 peer 172.16.10.2" ip -n host2 -d link show tun0
expect_contains basic-mark "alias grelab:basic" ip -n host1 -d link show tun0
expect_contains basic-ping "3 packets received" ping3 host1 192.168.50.2
expect_contains basic-status "tunnel tun0 on host1: kernel" $g status
check basic-verify $g verify -v
check basic-up-again $g up /guest/basic.yaml --backend kernel --no-check
check basic-down $g down
check basic-nothing-left no_netns

# gretap
check gretap-up $g up /guest/gretap.yaml --backend kernel
expect_contains gretap-link "gretap remote 152.16.10.2 local 172.16.10.2 ttl 255" ip -n host1 -d link show gtap0
expect_contains gretap-mtu "mtu 1462" ip -n host1 -d link show gtap0
expect_contains gretap-ping "3 packets received" ping3 host1 192.168.60.2
expect_contains gretap-arp "lladdr" ip -n host1 neigh show 192.168.60.2
check gretap-verify $g verify
check gretap-down $g down
check gretap-nothing-left no_netns

# ipv6 over ipv4
check v6-up $g up /guest/ipv6-over-ipv4.yaml --backend kernel
expect_contains v6-link "link/gre 172.16.10.2 peer 152.16.10.2" ip -n host1 -d link show tun6
expect_contains v6-ping "3 packets received" ping6_3 host1 fd00:50::2
check v6-verify $g verify
check v6-down $g down
check v6-nothing-left no_netns

# keyed: two tunnels between one pair of hosts, told apart by key
check keyed-up $g up /guest/keyed.yaml --backend kernel
expect_contains keyed-key1 "key 0.0.0.1" ip -n host1 -d link show tun0
expect_contains keyed-key2 "key 0.0.0.2" ip -n host1 -d link show tun1
expect_contains keyed-mtu "mtu 1472" ip -n host1 -d link show tun0
expect_contains keyed-ping1 "3 packets received" ping3 host1 192.168.50.2
expect_contains keyed-ping2 "3 packets received" ping3 host1 192.168.51.2
check keyed-verify $g verify
check keyed-down $g down
check keyed-nothing-left no_netns

# `grelab plan | sh` builds the seed lab with iproute2 alone.
# busybox sh would run its own `ip` applet: point the script at iproute2's.
{ echo 'ip() { /usr/sbin/ip "$@"; }'; $g plan /guest/basic.yaml; } > /tmp/basic.sh
check plan-sh sh -e /tmp/basic.sh
expect_contains plan-sh-link "link/gre 172.16.10.2 peer 152.16.10.2" ip -n host1 -d link show tun0
expect_contains plan-sh-mtu "mtu 1476" ip -n host1 -d link show tun0
expect_contains plan-sh-ping "3 packets received" ping3 host1 192.168.50.2
for ns in host1 internet host2; do ip netns del "$ns"; done
check plan-sh-nothing-left no_netns

summary
