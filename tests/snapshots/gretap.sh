#!/bin/sh
# Lab `gretap`: the iproute2 commands equivalent to `grelab up`.
# Run as root on a kernel with GRE (ip_gre). Remove the lab with:
#   ip netns del host1; ip netns del internet; ip netns del host2
set -e

# Namespaces: one per node (bind-mounted at /run/netns/NAME).
ip netns add host1
ip netns add internet
ip netns add host2

# Links: veth pairs, the peer created directly in its namespace.
ip -n host1 link add veth0 address 02:07:5c:90:bc:7d type veth peer name veth1 address 02:44:de:d4:52:5e netns internet
ip -n internet link add veth2 address 02:3a:ac:d4:52:56 type veth peer name veth3 address 02:20:a1:9c:49:e6 netns host2

# Tunnels: each end points at the other end's underlay address.
# gtap0 on host1: MTU 1462 = underlay - (IPv4 20 + GRE 4 + inner Ethernet 14)
ip -n host1 link add gtap0 mtu 1462 type gretap local 172.16.10.2 remote 152.16.10.2 ttl 255
ip -n host1 link set gtap0 addrgenmode none
ip -n host1 link set gtap0 multicast on
# gtap0 on host2: MTU 1462 = underlay - (IPv4 20 + GRE 4 + inner Ethernet 14)
ip -n host2 link add gtap0 mtu 1462 type gretap local 152.16.10.2 remote 172.16.10.2 ttl 255
ip -n host2 link set gtap0 addrgenmode none
ip -n host2 link set gtap0 multicast on

# Sysctls, inside the namespace (forwarding makes a router).
ip netns exec internet sysctl -qw net.ipv4.ip_forward=1

# Addresses.
ip -n host1 addr add 172.16.10.2/24 dev veth0
ip -n internet addr add 172.16.10.1/24 dev veth1
ip -n internet addr add 152.16.10.1/24 dev veth2
ip -n host2 addr add 152.16.10.2/24 dev veth3
ip -n host1 addr add 192.168.60.1/24 dev gtap0
ip -n host2 addr add 192.168.60.2/24 dev gtap0

# Interfaces up.
ip -n host1 link set lo up
ip -n internet link set lo up
ip -n host2 link set lo up
ip -n host1 link set veth0 up
ip -n internet link set veth1 up
ip -n internet link set veth2 up
ip -n host2 link set veth3 up
ip -n host1 link set gtap0 up
ip -n host2 link set gtap0 up

# Routes.
ip -n host1 route add default via 172.16.10.1
ip -n host2 route add default via 152.16.10.1
