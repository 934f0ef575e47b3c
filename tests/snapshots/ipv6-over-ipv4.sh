#!/bin/sh
# Lab `ipv6-over-ipv4`: the iproute2 commands equivalent to `grelab up`.
# Run as root on a kernel with GRE (ip_gre). Remove the lab with:
#   ip netns del host1; ip netns del internet; ip netns del host2
set -e

# Namespaces: one per node (bind-mounted at /run/netns/NAME).
ip netns add host1
ip netns add internet
ip netns add host2

# Links: veth pairs, the peer created directly in its namespace.
ip -n host1 link add veth0 address 02:b7:4d:cf:53:a3 type veth peer name veth1 address 02:f2:82:2d:e7:40 netns internet
ip -n internet link add veth2 address 02:fc:b4:2d:e7:49 type veth peer name veth3 address 02:01:67:78:6c:d1 netns host2

# Tunnels: each end points at the other end's underlay address.
# tun6 on host1: MTU 1476 = underlay - (IPv4 20 + GRE 4)
ip -n host1 link add tun6 mtu 1476 type gre local 172.16.10.2 remote 152.16.10.2 ttl 255
ip -n host1 link set tun6 addrgenmode none
ip -n host1 link set tun6 multicast on
# tun6 on host2: MTU 1476 = underlay - (IPv4 20 + GRE 4)
ip -n host2 link add tun6 mtu 1476 type gre local 152.16.10.2 remote 172.16.10.2 ttl 255
ip -n host2 link set tun6 addrgenmode none
ip -n host2 link set tun6 multicast on

# Sysctls, inside the namespace (forwarding makes a router).
ip netns exec internet sysctl -qw net.ipv4.ip_forward=1

# Addresses.
ip -n host1 addr add 172.16.10.2/24 dev veth0
ip -n internet addr add 172.16.10.1/24 dev veth1
ip -n internet addr add 152.16.10.1/24 dev veth2
ip -n host2 addr add 152.16.10.2/24 dev veth3
ip -n host1 addr add fd00:50::1/64 dev tun6 nodad
ip -n host2 addr add fd00:50::2/64 dev tun6 nodad

# Interfaces up.
ip -n host1 link set lo up
ip -n internet link set lo up
ip -n host2 link set lo up
ip -n host1 link set veth0 up
ip -n internet link set veth1 up
ip -n internet link set veth2 up
ip -n host2 link set veth3 up
ip -n host1 link set tun6 up
ip -n host2 link set tun6 up

# Routes.
ip -n host1 route add default via 172.16.10.1
ip -n host2 route add default via 152.16.10.1
