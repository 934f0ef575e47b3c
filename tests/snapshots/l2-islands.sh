#!/bin/sh
# Lab `l2-islands`: the iproute2 commands equivalent to `grelab up`.
# Run as root on a kernel with GRE (ip_gre). Remove the lab with:
#   ip netns del h1; ip netns del sw1; ip netns del internet; ip netns del sw2; ip netns del h2
set -e

# Namespaces: one per node (bind-mounted at /run/netns/NAME).
ip netns add h1
ip netns add sw1
ip netns add internet
ip netns add sw2
ip netns add h2

# Links: veth pairs, the peer created directly in its namespace.
ip -n h1 link add eth0 address 02:35:71:f6:cd:18 type veth peer name lan0 address 02:fd:7d:c0:67:fc netns sw1
ip -n sw1 link add wan0 mtu 1538 address 02:e6:eb:27:7e:83 type veth peer name eth1 mtu 1538 address 02:5f:f1:d8:2c:1b netns internet
ip -n internet link add eth2 mtu 1538 address 02:55:bf:d8:2c:12 type veth peer name wan0 mtu 1538 address 02:87:fc:3c:c3:9b netns sw2
ip -n sw2 link add lan0 address 02:78:61:4d:a5:d8 type veth peer name eth0 address 02:7e:2c:59:8d:7a netns h2

# Tunnels: each end points at the other end's underlay address.
# gt0 on sw1: MTU 1500 = underlay - (IPv4 20 + GRE 4 + inner Ethernet 14)
ip -n sw1 link add gt0 mtu 1500 type gretap local 172.16.1.2 remote 172.16.2.2 ttl 255
ip -n sw1 link set gt0 addrgenmode none
ip -n sw1 link set gt0 multicast on
# gt0 on sw2: MTU 1500 = underlay - (IPv4 20 + GRE 4 + inner Ethernet 14)
ip -n sw2 link add gt0 mtu 1500 type gretap local 172.16.2.2 remote 172.16.1.2 ttl 255
ip -n sw2 link set gt0 addrgenmode none
ip -n sw2 link set gt0 multicast on

# Bridges: L2 switches inside a node, over its veth and gretap ends.
ip -n sw1 link add br0 address 02:55:76:e1:55:79 type bridge mcast_snooping 0
ip -n sw1 link set lan0 master br0
ip -n sw1 link set gt0 master br0
ip -n sw2 link add br0 address 02:7c:18:53:ba:c5 type bridge mcast_snooping 0
ip -n sw2 link set lan0 master br0
ip -n sw2 link set gt0 master br0

# Sysctls, inside the namespace (forwarding makes a router).
ip netns exec internet sysctl -qw net.ipv4.ip_forward=1

# Addresses.
ip -n h1 addr add 10.1.0.11/24 dev eth0
ip -n sw1 addr add 172.16.1.2/24 dev wan0
ip -n internet addr add 172.16.1.1/24 dev eth1
ip -n internet addr add 172.16.2.1/24 dev eth2
ip -n sw2 addr add 172.16.2.2/24 dev wan0
ip -n h2 addr add 10.1.0.12/24 dev eth0
ip -n sw1 addr add 10.1.0.1/24 dev br0
ip -n sw2 addr add 10.1.0.2/24 dev br0

# Interfaces up.
ip -n h1 link set lo up
ip -n sw1 link set lo up
ip -n internet link set lo up
ip -n sw2 link set lo up
ip -n h2 link set lo up
ip -n h1 link set eth0 up
ip -n sw1 link set lan0 up
ip -n sw1 link set wan0 up
ip -n internet link set eth1 up
ip -n internet link set eth2 up
ip -n sw2 link set wan0 up
ip -n sw2 link set lan0 up
ip -n h2 link set eth0 up
ip -n sw1 link set gt0 up
ip -n sw2 link set gt0 up
ip -n sw1 link set br0 up
ip -n sw2 link set br0 up

# Routes.
ip -n sw1 route add default via 172.16.1.1
ip -n sw2 route add default via 172.16.2.1
