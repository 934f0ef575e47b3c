#!/bin/sh
# Lab `keyed`: the iproute2 commands equivalent to `grelab up`.
# Run as root on a kernel with GRE (ip_gre). Remove the lab with:
#   ip netns del host1; ip netns del internet; ip netns del host2
set -e

# Namespaces: one per node (bind-mounted at /run/netns/NAME).
ip netns add host1
ip netns add internet
ip netns add host2

# Links: veth pairs, the peer created directly in its namespace.
ip -n host1 link add veth0 address 02:22:e1:88:9b:bd type veth peer name veth1 address 02:85:c5:70:dd:d1 netns internet
ip -n internet link add veth2 address 02:82:5f:70:dd:ce type veth peer name veth3 address 02:bb:63:6b:50:15 netns host2

# Tunnels: each end points at the other end's underlay address.
# tun0 on host1: MTU 1472 = underlay - (IPv4 20 + GRE 8 with key)
ip -n host1 link add tun0 mtu 1472 type gre local 172.16.10.2 remote 152.16.10.2 ttl 255 ikey 1 okey 1
ip -n host1 link set tun0 addrgenmode none
ip -n host1 link set tun0 multicast on
# tun0 on host2: MTU 1472 = underlay - (IPv4 20 + GRE 8 with key)
ip -n host2 link add tun0 mtu 1472 type gre local 152.16.10.2 remote 172.16.10.2 ttl 255 ikey 1 okey 1
ip -n host2 link set tun0 addrgenmode none
ip -n host2 link set tun0 multicast on
# tun1 on host1: MTU 1472 = underlay - (IPv4 20 + GRE 8 with key)
ip -n host1 link add tun1 mtu 1472 type gre local 172.16.10.2 remote 152.16.10.2 ttl 255 ikey 2 okey 2
ip -n host1 link set tun1 addrgenmode none
ip -n host1 link set tun1 multicast on
# tun1 on host2: MTU 1472 = underlay - (IPv4 20 + GRE 8 with key)
ip -n host2 link add tun1 mtu 1472 type gre local 152.16.10.2 remote 172.16.10.2 ttl 255 ikey 2 okey 2
ip -n host2 link set tun1 addrgenmode none
ip -n host2 link set tun1 multicast on

# Sysctls, inside the namespace (forwarding makes a router).
ip netns exec internet sysctl -qw net.ipv4.ip_forward=1

# Addresses.
ip -n host1 addr add 172.16.10.2/24 dev veth0
ip -n internet addr add 172.16.10.1/24 dev veth1
ip -n internet addr add 152.16.10.1/24 dev veth2
ip -n host2 addr add 152.16.10.2/24 dev veth3
ip -n host1 addr add 192.168.50.1/30 dev tun0
ip -n host2 addr add 192.168.50.2/30 dev tun0
ip -n host1 addr add 192.168.51.1/30 dev tun1
ip -n host2 addr add 192.168.51.2/30 dev tun1

# Interfaces up.
ip -n host1 link set lo up
ip -n internet link set lo up
ip -n host2 link set lo up
ip -n host1 link set veth0 up
ip -n internet link set veth1 up
ip -n internet link set veth2 up
ip -n host2 link set veth3 up
ip -n host1 link set tun0 up
ip -n host2 link set tun0 up
ip -n host1 link set tun1 up
ip -n host2 link set tun1 up

# Routes.
ip -n host1 route add default via 172.16.10.1
ip -n host2 route add default via 152.16.10.1
