#!/bin/sh
# Wire compatibility: one end of each tunnel is the kernel's GRE, the other
# grelab's userspace dataplane; pings both ways for gre, gretap and keyed gre,
# and a 4 MiB TCP copy both ways for gre and gretap. The copies cross the
# dataplane's cutting of TCP super-packets (TSO) one way; the other, it takes
# the kernel end's super-packets and unfinished checksums, as a veth passes
# them on. Its counters must show no drop or error.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
ping3() { ip netns exec "$1" busybox ping -c 3 -A -W 2 "$2"; }
no_netns() { [ -z "$(ip netns list)" ]; }
centis() { read -r up _ </proc/uptime && echo $((${up%.*} * 100 + 1${up#*.} - 100)); }

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

# clean LAB: the lab's dataplane counted no drop or error, and cut TCP
# super-packets (tx_gso). It joins no received segment (rx_gro): the kernel
# end sends super-packets, and segments with unfinished checksums.
clean() {
    f=/run/grelab/$1/dataplane-stats.json
    # Counters are written within 250 ms of a change: wait until they stay.
    i=0
    until [ "$(cat "$f")" = "$(sleep 0.3 && cat "$f")" ]; do
        i=$((i + 1))
        [ "$i" -lt 10 ] || { echo "the counters never settled"; return 1; }
    done
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

# copies LAB DEV ADDR1 ADDR2: TCP copies both ways, then the counters.
copies() {
    check "$1-$2-tcp-k2u" tcp host1 host2 "$4"
    check "$1-$2-tcp-u2k" tcp host2 host1 "$3"
    check "$1-dataplane-clean" clean "$1"
}

both basic tun0 192.168.50.1 192.168.50.2
copies basic tun0 192.168.50.1 192.168.50.2
check basic-verify $g verify -v
check basic-down $g down
check basic-nothing-left no_netns

both gretap gtap0 192.168.60.1 192.168.60.2
copies gretap gtap0 192.168.60.1 192.168.60.2
check gretap-verify $g verify -v
check gretap-down $g down
check gretap-nothing-left no_netns

both keyed tun0 192.168.50.1 192.168.50.2
expect_contains keyed-tun1-ping-k2u "3 packets received" ping3 host1 192.168.51.2
expect_contains keyed-tun1-ping-u2k "3 packets received" ping3 host2 192.168.51.1
expect_contains keyed-stats-rx '"rx_packets"' cat /run/grelab/keyed/dataplane-stats.json
check keyed-verify $g verify -v
check keyed-down $g down
check keyed-nothing-left no_netns

summary
