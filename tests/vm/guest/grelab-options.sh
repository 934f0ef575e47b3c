#!/bin/sh
# Every GRE option (key, checksum, sequence numbers, tos, nopmtudisc) and the
# IPv6-underlay kinds on the kernel backend, then the same lab with host2's
# ends in grelab's userspace dataplane: the two must agree on the wire.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }

check kernel-up $g up /guest/options.yaml --backend kernel
expect_contains opt4-flags "iseq oseq icsum ocsum" ip -n host1 -d link show opt4
expect_contains opt4-key "key 0.0.0.7" ip -n host1 -d link show opt4
expect_contains opt4-nopmtudisc "nopmtudisc" ip -n host1 -d link show opt4
expect_contains opt4-tos "tos 0x20" ip -n host1 -d link show opt4
expect_contains opt4-mtu "mtu 1464" ip -n host1 -d link show opt4
expect_contains opt6-kind "ip6gre remote fd00:152::2 local fd00:16::2" ip -n host1 -d link show opt6
expect_contains opt6-encaplimit "encaplimit none" ip -n host1 -d link show opt6
expect_contains opt6-mtu "mtu 1448" ip -n host1 -d link show opt6
expect_contains tap6-mtu "mtu 1442" ip -n host1 -d link show tap6
expect_contains kernel-opt4-ping "3 packets received" ping3 host1 10.7.0.2
expect_contains kernel-opt6-ping "3 packets received" ping3 host1 10.9.0.2
expect_contains kernel-tap6-ping "3 packets received" ping3 host1 10.10.0.2
check kernel-verify $g verify -v
check kernel-down $g down
check kernel-nothing-left no_netns

sed -e 's/{node: host2, \(.*\)}/{node: host2, \1, backend: userspace}/' /guest/options.yaml > /tmp/mixed.yaml
check mixed-up $g up /tmp/mixed.yaml --no-check
expect_contains mixed-userspace "tunnel opt4 on host2: userspace" $g status
for t in 10.7.0 10.9.0 10.10.0; do
    expect_contains "mixed-$t-k2u" "3 packets received" ping3 host1 "$t.2"
    expect_contains "mixed-$t-u2k" "3 packets received" ping3 host2 "$t.1"
done
check mixed-verify $g verify -v
check mixed-down $g down
check mixed-nothing-left no_netns

summary
