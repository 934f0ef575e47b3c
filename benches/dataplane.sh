#!/usr/bin/env bash
# The userspace GRE dataplane against the kernel, on the basic lab, in one
# run: TCP throughput (iperf3) through grelab's userspace GRE tunnel, through
# a kernel VXLAN tunnel of the same MTU between the same hosts, and over the
# plain routed veth path; ping latency over each; the dataplane's memory.
# Usage: benches/dataplane.sh [SECONDS_PER_RUN] [RUNS]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
runs=${2:-3}
prefix="dpb$$-"
lab="${prefix}basic"

for pair in iperf3:iperf3 ping:iputils-ping; do
    command -v "${pair%%:*}" >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*:}" >/dev/null
    }
done
cargo build --release -q
g=target/release/grelab

cleanup() { "$g" down --lab "$lab" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$g" up topologies/basic.yaml --prefix "$prefix" --backend userspace --no-check >/dev/null
h1="${prefix}host1" h2="${prefix}host2"

# A kernel VXLAN tunnel beside the GRE one, with the GRE tunnel's MTU.
mtu=$(ip -n "$h1" -o link show tun0 | sed 's/.* mtu \([0-9]*\).*/\1/')
ip -n "$h1" link add vx0 mtu "$mtu" type vxlan id 42 local 172.16.10.2 remote 152.16.10.2 dstport 4789 dev veth0
ip -n "$h2" link add vx0 mtu "$mtu" type vxlan id 42 local 152.16.10.2 remote 172.16.10.2 dstport 4789 dev veth3
ip -n "$h1" addr add 192.168.70.1/30 dev vx0
ip -n "$h2" addr add 192.168.70.2/30 dev vx0
ip -n "$h1" link set vx0 up
ip -n "$h2" link set vx0 up

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A gbps lat
paths=("userspace GRE:192.168.50.2" "kernel VXLAN:192.168.70.2" "plain veth:152.16.10.2")
for path in "${paths[@]}"; do
    name=${path%%:*} addr=${path#*:}
    ip netns exec "$h1" ping -c 3 -i 0.2 -W 1 "$addr" >/dev/null
    rates=()
    for _ in $(seq "$runs"); do
        ip netns exec "$h2" sh -c 'iperf3 -s -D -1 >/dev/null 2>&1'
        sleep 0.2
        r=$(ip netns exec "$h1" iperf3 -c "$addr" -t "$secs" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
        rates+=("$r")
    done
    gbps[$name]=$(printf '%s\n' "${rates[@]}" | median)
    lat[$name]=$(ip netns exec "$h1" ping -c 200 -i 0.005 "$addr" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | median)
done

pid=$("$g" status --format json | python3 -c "import json,sys; print([l for l in json.load(sys.stdin) if l['lab']=='$lab'][0]['dataplane_pid'])")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

printf '\n| path | TCP throughput (median of %s x %ss) | ping RTT (median of 200) |\n|---|---|---|\n' "$runs" "$secs"
for path in "${paths[@]}"; do
    name=${path%%:*}
    printf '| %s | %.2f Gbit/s | %s ms |\n' "$name" "${gbps[$name]}" "${lat[$name]}"
done
ratio=$(python3 -c "print(f'{${gbps[userspace GRE]} / ${gbps[kernel VXLAN]} * 100:.0f}')")
added=$(python3 -c "print(f'{(${lat[userspace GRE]} - ${lat[plain veth]}) * 1000:.0f}')")
printf '\nuserspace GRE / kernel VXLAN throughput: %s%%\n' "$ratio"
printf 'latency added by userspace GRE over the plain path: %s us (median)\n' "$added"
printf 'dataplane memory: RSS %s KiB, peak %s KiB\n' "$rss" "$hwm"
printf 'machine: %s cores, kernel %s, load %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
