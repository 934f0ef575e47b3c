#!/bin/sh
# Lab `ospf`: the iproute2 commands equivalent to `grelab up`.
# Run as root on a kernel with GRE (ip_gre). Remove the lab with:
#   ip netns del h1; ip netns del r1; ip netns del internet; ip netns del r2; ip netns del h2
set -e

# Namespaces: one per node (bind-mounted at /run/netns/NAME).
ip netns add h1
ip netns add r1
ip netns add internet
ip netns add r2
ip netns add h2

# Links: veth pairs, the peer created directly in its namespace.
ip -n h1 link add eth0 address 02:f0:ac:a6:cd:8f type veth peer name eth1 address 02:c8:1f:63:9d:33 netns r1
ip -n r1 link add eth0 address 02:cb:85:63:9d:36 type veth peer name eth1 address 02:6a:0b:e8:87:d8 netns internet
ip -n internet link add eth2 address 02:74:3d:e8:87:e1 type veth peer name eth0 address 02:a9:d3:5b:fa:90 netns r2
ip -n r2 link add eth1 address 02:ad:39:5b:fa:92 type veth peer name eth0 address 02:b5:ef:76:e4:e6 netns h2

# Tunnels: each end points at the other end's underlay address.
# tun0 on r1: MTU 1476 = underlay - (IPv4 20 + GRE 4)
ip -n r1 link add tun0 mtu 1476 type gre local 172.16.10.2 remote 152.16.10.2 ttl 255
ip -n r1 link set tun0 addrgenmode none
ip -n r1 link set tun0 multicast on
# tun0 on r2: MTU 1476 = underlay - (IPv4 20 + GRE 4)
ip -n r2 link add tun0 mtu 1476 type gre local 152.16.10.2 remote 172.16.10.2 ttl 255
ip -n r2 link set tun0 addrgenmode none
ip -n r2 link set tun0 multicast on

# Sysctls, inside the namespace (forwarding makes a router).
ip netns exec r1 sysctl -qw net.ipv4.ip_forward=1
ip netns exec internet sysctl -qw net.ipv4.ip_forward=1
ip netns exec r2 sysctl -qw net.ipv4.ip_forward=1

# Addresses.
ip -n h1 addr add 10.1.0.10/24 dev eth0
ip -n r1 addr add 10.1.0.1/24 dev eth1
ip -n r1 addr add 172.16.10.2/24 dev eth0
ip -n internet addr add 172.16.10.1/24 dev eth1
ip -n internet addr add 152.16.10.1/24 dev eth2
ip -n r2 addr add 152.16.10.2/24 dev eth0
ip -n r2 addr add 10.2.0.1/24 dev eth1
ip -n h2 addr add 10.2.0.10/24 dev eth0
ip -n r1 addr add 192.168.50.1/30 dev tun0
ip -n r2 addr add 192.168.50.2/30 dev tun0

# Interfaces up.
ip -n h1 link set lo up
ip -n r1 link set lo up
ip -n internet link set lo up
ip -n r2 link set lo up
ip -n h2 link set lo up
ip -n h1 link set eth0 up
ip -n r1 link set eth1 up
ip -n r1 link set eth0 up
ip -n internet link set eth1 up
ip -n internet link set eth2 up
ip -n r2 link set eth0 up
ip -n r2 link set eth1 up
ip -n h2 link set eth0 up
ip -n r1 link set tun0 up
ip -n r2 link set tun0 up

# Routes.
ip -n h1 route add default via 10.1.0.1
ip -n r1 route add default via 172.16.10.1
ip -n r2 route add default via 152.16.10.1
ip -n h2 route add default via 10.2.0.1

# Software: grelab runs each node's programs in the node's own view (its
# /sys, a private /run, its files at their paths), supervised, after the network.
# r1: /etc/bird/bird.conf (306 bytes), seen in this node only
ip netns exec r1 sh -c 'mkdir -p /run/bird && exec bird -f -c /etc/bird/bird.conf' &
# r2: /etc/bird/bird.conf (306 bytes), seen in this node only
ip netns exec r2 sh -c 'mkdir -p /run/bird && exec bird -f -c /etc/bird/bird.conf' &
