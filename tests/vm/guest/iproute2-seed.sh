#!/bin/sh
# The seed lab (host1 - internet - host2, GRE tun0 192.168.50.1/30 <-> .2/30)
# built with plain iproute2 on Debian's kernel, plus gretap, keyed GRE and
# ip6gre tunnels over the same hosts: proves the harness and the kernel path.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

# ping3 NS ADDR: three echo requests from namespace NS, each sent on reply.
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }

for ns in host1 internet host2; do
    step ip netns add "$ns"
    step ip -n "$ns" link set lo up
done
step ip link add veth0 netns host1 type veth peer name veth1 netns internet
step ip link add veth2 netns internet type veth peer name veth3 netns host2
step ip -n host1 addr add 172.16.10.2/24 dev veth0
step ip -n internet addr add 172.16.10.1/24 dev veth1
step ip -n internet addr add 152.16.10.1/24 dev veth2
step ip -n host2 addr add 152.16.10.2/24 dev veth3
step ip -n host1 -6 addr add fd00:16:10::2/64 dev veth0 nodad
step ip -n internet -6 addr add fd00:16:10::1/64 dev veth1 nodad
step ip -n internet -6 addr add fd00:152:10::1/64 dev veth2 nodad
step ip -n host2 -6 addr add fd00:152:10::2/64 dev veth3 nodad
step ip -n host1 link set veth0 up
step ip -n internet link set veth1 up
step ip -n internet link set veth2 up
step ip -n host2 link set veth3 up
step ip netns exec internet sysctl -w net.ipv4.ip_forward=1
step ip netns exec internet sysctl -w net.ipv6.conf.all.forwarding=1
step ip -n host1 route add default via 172.16.10.1
step ip -n host2 route add default via 152.16.10.1
step ip -n host1 -6 route add default via fd00:16:10::1
step ip -n host2 -6 route add default via fd00:152:10::1
check underlay-ping ping3 host1 152.16.10.2

# tunnel NS DEV ADDRESS TYPE ARGS...: adds, addresses and raises a tunnel.
tunnel() {
    _ns=$1 _dev=$2 _addr=$3
    shift 3
    step ip -n "$_ns" link add "$_dev" type "$@" &&
        step ip -n "$_ns" addr add "$_addr" dev "$_dev" &&
        step ip -n "$_ns" link set "$_dev" up
}
v4="local 172.16.10.2 remote 152.16.10.2 ttl 255"
v4back="local 152.16.10.2 remote 172.16.10.2 ttl 255"
# The kernel matches a received packet to a tunnel by endpoints, kind and key,
# so all of these share one underlay.
# shellcheck disable=SC2086 # $v4 and $v4back are lists of words
{
    tunnel host1 tun0 192.168.50.1/30 gre $v4
    tunnel host2 tun0 192.168.50.2/30 gre $v4back
    tunnel host1 tap0 192.168.51.1/30 gretap $v4
    tunnel host2 tap0 192.168.51.2/30 gretap $v4back
    tunnel host1 tun1 192.168.52.1/30 gre $v4 key 1
    tunnel host2 tun1 192.168.52.2/30 gre $v4back key 1
    tunnel host1 tun2 192.168.54.1/30 gre $v4 key 2
    tunnel host2 tun2 192.168.54.2/30 gre $v4back key 3
}
tunnel host1 tun6 192.168.53.1/30 ip6gre local fd00:16:10::2 remote fd00:152:10::2 ttl 255
tunnel host2 tun6 192.168.53.2/30 ip6gre local fd00:152:10::2 remote fd00:16:10::2 ttl 255

# The seed lab's tunnel, as the seed shows it.
expect_contains gre-endpoints "link/gre 172.16.10.2 peer 152.16.10.2" ip -n host1 -d link show tun0
expect_contains gre-mtu "mtu 1476" ip -n host1 -d link show tun0
expect_contains gre-ttl "ttl 255" ip -n host1 -d link show tun0
expect_contains gre-peer-endpoints "link/gre 152.16.10.2 peer 172.16.10.2" ip -n host2 -d link show tun0
expect_contains gre-ping "3 packets transmitted, 3 packets received" ping3 host1 192.168.50.2

# gretap carries Ethernet: 14 more bytes of overhead.
expect_contains gretap-kind "gretap remote 152.16.10.2 local 172.16.10.2" ip -n host1 -d link show tap0
expect_contains gretap-mtu "mtu 1462" ip -n host1 -d link show tap0
expect_contains gretap-ping "3 packets transmitted, 3 packets received" ping3 host1 192.168.51.2

# A key adds 4 bytes; iproute2 prints it as a dotted quad.
expect_contains gre-key "ikey 0.0.0.1 okey 0.0.0.1" ip -n host1 -d link show tun1
expect_contains gre-key-mtu "mtu 1472" ip -n host1 -d link show tun1
expect_contains gre-key-ping "3 packets transmitted, 3 packets received" ping3 host1 192.168.52.2
# Keys 2 and 3 do not match: the key is really on the wire and checked.
expect_status gre-key-mismatch-drops 1 ip netns exec host1 busybox ping -c 1 -W 1 192.168.54.2

# ip6gre: IPv4 inside GRE inside IPv6.
expect_contains ip6gre-endpoints "link/gre6 fd00:16:10::2 peer fd00:152:10::2" ip -n host1 -d link show tun6
# 40 (IPv6) + 4 (GRE) + 8 (the default encapsulation limit option) = 48.
expect_contains ip6gre-mtu "mtu 1448" ip -n host1 -d link show tun6
expect_contains ip6gre-ping "3 packets transmitted, 3 packets received" ping3 host1 192.168.53.2

# grelab's userspace backend needs TUN/TAP: init loaded tun.
check tap-in-namespace ip -n host1 tuntap add gltap0 mode tap

summary
