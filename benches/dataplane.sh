#!/usr/bin/env bash
# The userspace GRE dataplane against the kernel, on the basic lab, in one
# run: TCP throughput (iperf3) through grelab's userspace GRE tunnel (as
# `up` makes it, with the in-kernel eBPF fast path; and in a second lab with
# GRELAB_DP_FASTPATH=0, every packet through userspace), through a kernel
# VXLAN tunnel of the same MTU between the same hosts, and over the plain
# routed veth path; ping latency over each; the dataplanes' memory;
# and the raw-socket floor (examples/grefloor.rs): the most any userspace
# GRE dataplane of this design (raw sockets, MTU-sized packets on the
# underlay) can move here, full-size GRE packets host1 -> router -> host2
# with no per-packet work but the kernel's, on the same three namespaces
# built without tunnels, so no dataplane runs (its raw socket would get a
# copy of each packet): one thread sending and one receiving, and one
# thread doing both in turn, as the dataplane does.
# Usage: benches/dataplane.sh [SECONDS_PER_RUN] [RUNS]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
runs=${2:-3}
prefix="dpb$$-"
lab="${prefix}basic"
uprefix="dpu$$-"
ulab="${uprefix}basic"
floor_prefix="dpf$$-"
floor_lab="${floor_prefix}basic"
load0=$(cut -d' ' -f1-3 /proc/loadavg)

for pair in iperf3:iperf3 ping:iputils-ping; do
    command -v "${pair%%:*}" >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*:}" >/dev/null
    }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q --bin grelab --example grefloor
# .cargo/config.toml builds for the host tuple: target/<tuple>/release.
out=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release
g=$out/grelab
floor=$out/examples/grefloor
topo=$(mktemp --suffix .yaml)

cleanup() {
    for l in "$lab" "$ulab" "$floor_lab"; do "$g" down --lab "$l" >/dev/null 2>&1 || true; done
    rm -f "$topo"
}
trap cleanup EXIT
"$g" up topologies/basic.yaml --prefix "$prefix" --backend userspace --no-check >/dev/null
GRELAB_DP_FASTPATH=0 "$g" up topologies/basic.yaml --prefix "$uprefix" --backend userspace --no-check >/dev/null
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

dp_pid() { "$g" status --format json | python3 -c "import json,sys; print([l for l in json.load(sys.stdin) if l['lab']=='$1'][0]['dataplane_pid'])"; }
pid=$(dp_pid "$lab") upid=$(dp_pid "$ulab")
# The userspace-only dataplane's CPU time (s) and the data packets its
# router forwarded to host2: their ratio over its runs compares with the
# floor's, whatever else loads the machine.
dp_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$upid/stat"; }
to_h2() { ip netns exec "${uprefix}internet" cat /sys/class/net/veth2/statistics/tx_packets; }

declare -A gbps lat
fast="userspace GRE, eBPF fast path" slow="userspace GRE, userspace only"
paths=("plain veth:$prefix:152.16.10.2" "kernel VXLAN:$prefix:192.168.70.2" "$fast:$prefix:192.168.50.2" "$slow:$uprefix:192.168.50.2")
for path in "${paths[@]}"; do
    IFS=: read -r name p addr <<<"$path"
    ip netns exec "${p}host1" ping -c 3 -i 0.2 -W 1 "$addr" >/dev/null
    rates=()
    c0=$(dp_cpu) p0=$(to_h2)
    for _ in $(seq "$runs"); do
        ip netns exec "${p}host2" sh -c 'iperf3 -s -D -1 >/dev/null 2>&1'
        sleep 0.2
        r=$(ip netns exec "${p}host1" iperf3 -c "$addr" -t "$secs" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
        rates+=("$r")
    done
    [ "$name" != "$slow" ] || dp_us=$(awk "BEGIN {printf \"%.2f\", ($(dp_cpu) - $c0) / ($(to_h2) - $p0) * 1e6}")
    gbps[$name]=$(printf '%s\n' "${rates[@]}" | median)
done
# Latency: the paths in turn, 5 rounds of 40 pings, so that drift in the
# machine's speed (a shared VM) does not favour one path.
declare -A rtts
for _ in 1 2 3 4 5; do
    for path in "${paths[@]}"; do
        IFS=: read -r name p addr <<<"$path"
        rtts[$name]+=$(ip netns exec "${p}host1" ping -c 40 -i 0.005 "$addr" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p')$'\n'
    done
done
for path in "${paths[@]}"; do
    IFS=: read -r name _ _ <<<"$path"
    lat[$name]=$(printf '%s' "${rtts[$name]}" | grep . | median)
done

mem() { awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {print "RSS " r " KiB, peak " h " KiB"}' "/proc/$1/status"; }
fast_mem=$(mem "$pid") slow_mem=$(mem "$upid")
"$g" down --lab "$lab" >/dev/null
"$g" down --lab "$ulab" >/dev/null

# The floor: the same lab without its tunnel and checks, so no dataplane.
sed '/^tunnels:/,$d' topologies/basic.yaml >"$topo"
"$g" up "$topo" --prefix "$floor_prefix" --no-check >/dev/null
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
declare -A pps cpu floor_out
modes=(split single)
for _ in $(seq "$runs"); do
    for m in "${modes[@]}"; do
        floor_out[$m]+=$("$floor" --secs "$secs" --mode "$m" "${floor_prefix}host1" "${floor_prefix}host2" 172.16.10.2 152.16.10.2)$'\n'
    done
done
for m in "${modes[@]}"; do
    gbps[floor-$m]=$(printf '%s' "${floor_out[$m]}" | field gbps | median)
    pps[$m]=$(printf '%s' "${floor_out[$m]}" | field rx_pps | median)
    cpu[$m]=$(printf '%s' "${floor_out[$m]}" | field cpu_us_per_pkt | tr '+' ' ' | awk '{m=$1; for (i=2;i<=NF;i++) if ($i>m) m=$i; print m}' | median)
done

pct() { python3 -c "print(f'{$1 / $2 * 100:.0f}')"; }
printf '\n| path | throughput (median of %s x %ss) | %% of kernel VXLAN | ping RTT (median of 5 x 40, paths in turn) |\n|---|---|---|---|\n' "$runs" "$secs"
for path in "${paths[@]}"; do
    IFS=: read -r name _ _ <<<"$path"
    printf '| %s | %.2f Gbit/s | %s%% | %s ms |\n' "$name" "${gbps[$name]}" "$(pct "${gbps[$name]}" "${gbps[kernel VXLAN]}")" "${lat[$name]}"
done
declare -A label=([split]="2 threads (send / receive)" [single]="1 thread (send, receive in turn)")
for m in "${modes[@]}"; do
    printf '| raw-socket floor, %s | %.2f Gbit/s (%s kpps) | %s%% | |\n' "${label[$m]}" "${gbps[floor-$m]}" \
        "$(awk "BEGIN {printf \"%.0f\", ${pps[$m]} / 1e3}")" "$(pct "${gbps[floor-$m]}" "${gbps[kernel VXLAN]}")"
done
best=$(printf '%s\n' "${gbps[floor-split]}" "${gbps[floor-single]}" | sort -g | tail -1)
added() { python3 -c "print(f'{(${lat[$1]} - ${lat[plain veth]}) * 1000:.0f}')"; }
printf '\nuserspace GRE / kernel VXLAN throughput: %s%% with the fast path, %s%% userspace only\n' \
    "$(pct "${gbps[$fast]}" "${gbps[kernel VXLAN]}")" "$(pct "${gbps[$slow]}" "${gbps[kernel VXLAN]}")"
printf 'userspace GRE, userspace only / best raw-socket floor: %s%%\n' "$(pct "${gbps[$slow]}" "$best")"
printf '(floor rows: inner TCP payload of 1500-byte GRE packets, 1436 bytes each, as received)\n'
# CPU per packet of the busiest thread, and the rate it allows on a core of its own.
core() { awk "BEGIN {printf \"%.2f\", 1436 * 8 / $1 / 1e3}"; }
printf 'CPU time per packet (busiest thread) -> Gbit/s with a core to itself:\n'
printf '  floor, 1 thread %s us -> %s; floor, 2 threads %s us -> %s; grelab dataplane (userspace only) %s us -> %s (%s%% of the 1-thread floor)\n' \
    "${cpu[single]}" "$(core "${cpu[single]}")" "${cpu[split]}" "$(core "${cpu[split]}")" "$dp_us" "$(core "$dp_us")" "$(pct "${cpu[single]}" "$dp_us")"
printf 'latency added over the plain path (median): %s us with the fast path, %s us userspace only\n' "$(added "$fast")" "$(added "$slow")"
printf 'dataplane memory: %s with the fast path; %s userspace only\n' "$fast_mem" "$slow_mem"
printf 'machine: %s cores, kernel %s, load %s at start, %s at end\n' "$(nproc)" "$(uname -r)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
