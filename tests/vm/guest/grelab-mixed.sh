#!/bin/sh
# Wire compatibility: one end of each tunnel is the kernel's GRE, the other
# grelab's userspace dataplane; pings both ways for gre, gretap and keyed gre.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }

# mixed LAB: the example with host1's ends on the kernel, host2's in userspace.
mixed() {
    sed -e 's/{node: host1, \(.*\)}/{node: host1, \1, backend: kernel}/' \
        -e 's/{node: host2, \(.*\)}/{node: host2, \1, backend: userspace}/' \
        "/guest/$1.yaml" > "/tmp/$1-mixed.yaml"
}

# both LAB DEV ADDR1 ADDR2: the lab up, ends as asked, pings both ways.
both() {
    mixed "$1"
    check "$1-up" $g up "/tmp/$1-mixed.yaml"
    expect_contains "$1-$2-kernel" "tunnel $2 on host1: kernel" $g status
    expect_contains "$1-$2-userspace" "tunnel $2 on host2: userspace" $g status
    expect_contains "$1-$2-kernel-link" "remote 152.16.10.2" ip -n host1 -d link show "$2"
    expect_contains "$1-$2-tun-device" "tun type" ip -n host2 -d link show "$2"
    expect_contains "$1-$2-ping-k2u" "3 packets received" ping3 host1 "$4"
    expect_contains "$1-$2-ping-u2k" "3 packets received" ping3 host2 "$3"
}

both basic tun0 192.168.50.1 192.168.50.2
check basic-verify $g verify -v
check basic-down $g down
check basic-nothing-left no_netns

both gretap gtap0 192.168.60.1 192.168.60.2
check gretap-verify $g verify -v
check gretap-down $g down
check gretap-nothing-left no_netns

both keyed tun0 192.168.50.1 192.168.50.2
expect_contains keyed-tun1-ping-k2u "3 packets received" ping3 host1 192.168.51.2
expect_contains keyed-tun1-ping-u2k "3 packets received" ping3 host2 192.168.51.1
expect_contains keyed-stats-rx '"rx_packets"' cat /run/grelab/keyed/dataplane-stats.json
check keyed-verify $g verify -v
check keyed-down $g down
check keyed-nothing-left no_netns

summary
