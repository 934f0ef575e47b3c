#!/bin/sh
# Wire compatibility: one end of each tunnel is the kernel's GRE, the other
# grelab's userspace dataplane; pings both ways for gre, gretap and keyed gre,
# and a 4 MiB TCP copy both ways for gre, gretap and keyed gre. The copies
# cross the dataplane's cutting of TCP super-packets (TSO) one way; the
# other, it takes the kernel end's super-packets and unfinished checksums, as
# a veth passes them on. Its counters must show no drop or error.
#
# The copies take the gre and gretap tunnels past the 64 packets that earn them the
# dataplane's eBPF fast path. On kernels with TCX (6.6+) the stats must show
# it on, and pings and copies both ways again must pass through it; on older
# kernels the tunnels stay in userspace and the dataplane's log says why.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }
centis() { read -r up _ </proc/uptime && echo $((${up%.*} * 100 + 1${up#*.} - 100)); }

kv=$(uname -r)
major=${kv%%.*} minor=${kv#*.}
minor=${minor%%[!0-9]*}
tcx=0
[ "$major" -gt 6 ] || { [ "$major" = 6 ] && [ "$minor" -ge 6 ]; } && tcx=1
echo "kernel $kv: TCX (fast path): $tcx"

blob=/tmp/blob
head -c 4194304 /dev/urandom >"$blob"
port=5000

# tcp FROM TO ADDR: copies $blob over TCP from namespace FROM to a listener
# in TO at ADDR with busybox nc; passes if all of it arrives, unchanged,
# within 30 s.
tcp() {
    port=$((port + 1))
    rm -f /tmp/rx
    # The listener hands the data to cat (-e): with its stdin at EOF, nc
    # would half-close at once, and the sender's nc quits on seeing that.
    ip netns exec "$2" timeout 30 nc -l -p "$port" -e sh -c 'cat >/tmp/rx' </dev/null &
    listener=$!
    i=0
    until ip netns exec "$2" netstat -ltn | grep -q ":$port "; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || { echo "nothing listens on port $port in $2"; kill "$listener"; return 1; }
        sleep 0.1
    done
    t0=$(centis)
    ip netns exec "$1" timeout 30 nc "$3" "$port" <"$blob"
    sent=$?
    wait "$listener"
    heard=$?
    t=$(($(centis) - t0))
    echo "$(wc -c </tmp/rx) bytes in $((t / 100)).$((t % 100 / 10)) s; exit status: sender $sent, listener $heard"
    [ "$sent" = 0 ] && [ "$heard" = 0 ] && cmp "$blob" /tmp/rx
}

# settle LAB: waits until the lab's dataplane counters stay (they are
# written within 250 ms of a change).
settle() {
    i=0
    until [ "$(cat "/run/grelab/$1/dataplane-stats.json")" = \
        "$(sleep 0.3 && cat "/run/grelab/$1/dataplane-stats.json")" ]; do
        i=$((i + 1))
        [ "$i" -lt 10 ] || { echo "the counters never settled"; return 1; }
    done
}

# field LAB DEV NAME: the value of NAME for tunnel DEV in LAB's stats.
field() {
    awk -v dev="\"$2\"," -v f="\"$3\":" '$1 == "\"name\":" { on = $2 == dev }
        on && $1 == f { sub(/,$/, "", $2); print $2; exit }' "/run/grelab/$1/dataplane-stats.json"
}

# show LAB DEV: tunnel DEV's counters in LAB's stats.
show() {
    awk -v dev="\"$2\"," '$1 == "\"name\":" { on = $2 == dev } on { print } on && /}/ { exit }' \
        "/run/grelab/$1/dataplane-stats.json"
}

# clean LAB: the lab's dataplane counted no drop or error, and cut TCP
# super-packets (tx_gso). It joins no received segment (rx_gro): the kernel
# end sends super-packets, and segments with unfinished checksums.
clean() {
    f=/run/grelab/$1/dataplane-stats.json
    settle "$1" || return 1
    grep -E '"(name|tx_gso|unmatched|malformed|drop_[a-z]+|[rt]x_errors)":' "$f"
    ! grep -Eq '"(unmatched|malformed|drop_[a-z]+|[rt]x_errors)": [1-9]' "$f" &&
        grep -Eq '"tx_gso": [1-9]' "$f"
}

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

# copies LAB DEV ADDR1 ADDR2: TCP copies both ways, then the counters. The
# userspace end sends first: it cuts super-packets before it has carried
# the 64 packets that earn the fast path.
copies() {
    check "$1-$2-tcp-u2k" tcp host2 host1 "$3"
    check "$1-$2-tcp-k2u" tcp host1 host2 "$4"
    check "$1-dataplane-clean" clean "$1"
}

# fast_on LAB DEV: within 5 s, the stats say the fast path carries DEV and
# counted packets both ways.
fast_on() {
    i=0
    until [ "$(field "$1" "$2" fast_path)" = true ] || [ "$i" -ge 50 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    settle "$1"
    show "$1" "$2"
    [ "$(field "$1" "$2" fast_path)" = true ] &&
        [ "$(field "$1" "$2" fast_tx_packets)" -gt 0 ] &&
        [ "$(field "$1" "$2" fast_rx_packets)" -gt 0 ]
}

# stays LAB DEV: within 5 s, the dataplane's log says DEV stays in
# userspace, and the stats say the fast path is off.
stays() {
    line="dataplane: tunnel \`$2\` in \`host2\` stays in userspace"
    i=0
    until grep -F "$line" "/run/grelab/$1/dataplane.log"; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || { echo "no '$line' in the log:"; cat "/run/grelab/$1/dataplane.log"; return 1; }
        sleep 0.1
    done
    settle "$1"
    show "$1" "$2"
    [ "$(field "$1" "$2" fast_path)" = false ]
}

# grew LAB DEV: since $fast_tx and $fast_rx (inner bytes) and $fast_txp and
# $fast_rxp (packets), DEV's fast path carried at least a copy's bytes each
# way; userspace carried nothing since $us_tx and $us_rx (packets).
grew() {
    settle "$1"
    show "$1" "$2"
    [ "$(field "$1" "$2" tx_packets)" = "$us_tx" ] &&
        [ "$(field "$1" "$2" rx_packets)" = "$us_rx" ] &&
        [ "$(field "$1" "$2" fast_tx_bytes)" -ge $((fast_tx + 4194304)) ] &&
        [ "$(field "$1" "$2" fast_rx_bytes)" -ge $((fast_rx + 4194304)) ] &&
        [ "$(field "$1" "$2" fast_tx_packets)" -gt "$fast_txp" ] &&
        [ "$(field "$1" "$2" fast_rx_packets)" -gt "$fast_rxp" ]
}

# fast LAB DEV ADDR1 ADDR2: after the copies, host2's DEV has the fast path
# where the kernel has TCX; then pings and copies both ways must pass
# through it. Elsewhere DEV stays in userspace, and says so.
fast() {
    if [ "$tcx" = 0 ]; then
        check "$1-$2-stays-in-userspace" stays "$1" "$2"
        return
    fi
    check "$1-$2-fast-path" fast_on "$1" "$2"
    fast_tx=$(field "$1" "$2" fast_tx_bytes) fast_rx=$(field "$1" "$2" fast_rx_bytes)
    fast_txp=$(field "$1" "$2" fast_tx_packets) fast_rxp=$(field "$1" "$2" fast_rx_packets)
    us_tx=$(field "$1" "$2" tx_packets) us_rx=$(field "$1" "$2" rx_packets)
    expect_contains "$1-$2-fast-ping-k2u" "3 packets received" ping3 host1 "$4"
    expect_contains "$1-$2-fast-ping-u2k" "3 packets received" ping3 host2 "$3"
    check "$1-$2-fast-tcp-k2u" tcp host1 host2 "$4"
    check "$1-$2-fast-tcp-u2k" tcp host2 host1 "$3"
    check "$1-$2-fast-carried-it" grew "$1" "$2"
    check "$1-fast-dataplane-clean" clean "$1"
}

# not_fast LAB DEV: the stats say the fast path does not carry DEV.
not_fast() { show "$1" "$2" && [ "$(field "$1" "$2" fast_path)" = false ]; }

both basic tun0 192.168.50.1 192.168.50.2
copies basic tun0 192.168.50.1 192.168.50.2
fast basic tun0 192.168.50.1 192.168.50.2
check basic-verify $g verify -v
check basic-down $g down
check basic-nothing-left no_netns

both gretap gtap0 192.168.60.1 192.168.60.2
copies gretap gtap0 192.168.60.1 192.168.60.2
fast gretap gtap0 192.168.60.1 192.168.60.2
check gretap-verify $g verify -v
check gretap-down $g down
check gretap-nothing-left no_netns

both keyed tun0 192.168.50.1 192.168.50.2
expect_contains keyed-tun1-ping-k2u "3 packets received" ping3 host1 192.168.51.2
expect_contains keyed-tun1-ping-u2k "3 packets received" ping3 host2 192.168.51.1
copies keyed tun0 192.168.50.1 192.168.50.2
fast keyed tun0 192.168.50.1 192.168.50.2
# tun1 (key 2) carried too little for the fast path; beside tun0's, its
# packets still find the userspace path.
expect_contains keyed-tun1-ping-k2u-again "3 packets received" ping3 host1 192.168.51.2
expect_contains keyed-tun1-ping-u2k-again "3 packets received" ping3 host2 192.168.51.1
check keyed-tun1-not-fast not_fast keyed tun1
check keyed-verify $g verify -v
check keyed-down $g down
check keyed-nothing-left no_netns

summary
