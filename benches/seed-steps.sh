#!/bin/sh
# The tutorial's lab (../shared/seed: host1 - internet - host2, a tunnel
# 192.168.50.1/30 <-> 192.168.50.2/30 with MTU 1476) as a user types it: one
# `ip` per step. VXLAN stands in for GRE on kernels without ip_gre.
#   seed-steps.sh up PREFIX | seed-steps.sh down PREFIX
set -e
p=$2
h1=${p}host1 r=${p}internet h2=${p}host2
if [ "$1" = down ]; then
    for n in "$h1" "$r" "$h2"; do ip netns del "$n" 2>/dev/null || true; done
    exit 0
fi
ip netns add "$h1"
ip netns add "$r"
ip netns add "$h2"
ip link add veth0 type veth peer name veth1
ip link set veth0 netns "$h1"
ip link set veth1 netns "$r"
ip link add veth2 type veth peer name veth3
ip link set veth2 netns "$r"
ip link set veth3 netns "$h2"
ip -n "$h1" addr add 172.16.10.2/24 dev veth0
ip -n "$r" addr add 172.16.10.1/24 dev veth1
ip -n "$r" addr add 152.16.10.1/24 dev veth2
ip -n "$h2" addr add 152.16.10.2/24 dev veth3
ip -n "$h1" link set veth0 up
ip -n "$r" link set veth1 up
ip -n "$r" link set veth2 up
ip -n "$h2" link set veth3 up
ip -n "$h1" link set lo up
ip -n "$r" link set lo up
ip -n "$h2" link set lo up
ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
ip -n "$h1" route add default via 172.16.10.1
ip -n "$h2" route add default via 152.16.10.1
if ip -n "$h1" link add tun0 type gre local 172.16.10.2 remote 152.16.10.2 ttl 255 2>/dev/null; then
    ip -n "$h2" link add tun0 type gre local 152.16.10.2 remote 172.16.10.2 ttl 255
else
    ip -n "$h1" link add tun0 mtu 1476 type vxlan id 1 local 172.16.10.2 remote 152.16.10.2 dstport 4789 ttl 255
    ip -n "$h2" link add tun0 mtu 1476 type vxlan id 1 local 152.16.10.2 remote 172.16.10.2 dstport 4789 ttl 255
fi
ip -n "$h1" addr add 192.168.50.1/30 dev tun0
ip -n "$h2" addr add 192.168.50.2/30 dev tun0
ip -n "$h1" link set tun0 up
ip -n "$h2" link set tun0 up
