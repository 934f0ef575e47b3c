#!/bin/sh
# Impairments on Debian's kernel, which has sch_netem and sch_tbf: netem's
# delay on a veth end and on a kernel GRE tunnel end (the median round
# trip, against the same path cleared), netem's loss of 1, 10
# and 30% each way over 2,000 pings within the binomial 99.9% interval (the figures go in the check names), tbf's
# 10mbit by a 5 MB download, all read back by `grelab impair --show` and
# gone after `down`. Check names carry the figures measured.
# shellcheck source=SCRIPTDIR/../lib.sh
. /guest/lib.sh

g=/guest/grelab
no_netns() { [ -z "$(ip netns list)" ]; }
# median_rtt NS TO: the median round trip of 21 pings, in ms (the average
# would follow the slow ones of an emulated CPU).
median_rtt() {
    ip netns exec "$1" busybox ping -c 21 -i 0.05 -W 2 "$2" |
        sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -n |
        awk '{ t[NR] = $1 } END { if (NR) print t[int((NR + 1) / 2)] }'
}
# in_range LOW VALUE HIGH: true if LOW <= VALUE <= HIGH (decimals).
in_range() { awk -v l="$1" -v v="$2" -v h="$3" 'BEGIN { exit !(v != "" && l <= v + 0 && v + 0 <= h) }'; }

check up $g up /guest/impair.yaml --no-check
expect_contains plan-netem "tc -n va qdisc add dev e0 root handle 1: netem delay 20ms" $g plan /guest/impair.yaml
expect_contains show-veth "va:e0: delay 20ms (by netem (delay))" $g impair --show
expect_contains show-tunnel "va:t0: delay 20ms (by netem (delay))" $g impair --show
expect_contains show-rate "va:e2: rate 10mbit (by tbf (rate))" $g impair --show

# Delay on a veth end: 20 ms more than the same path cleared.
with=$(median_rtt va 10.80.0.2)
check veth-cleared $g impair va e0 --clear
without=$(median_rtt va 10.80.0.2)
added=$(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.2f", a - b }')
check "veth-delay-20ms-adds-${added}ms" in_range 18 "$added" 22

# Delay on a kernel GRE tunnel end (its underlay now unimpaired).
with=$(median_rtt va 192.168.80.2)
check tunnel-cleared $g impair va t0 --clear
without=$(median_rtt va 192.168.80.2)
added=$(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.2f", a - b }')
check "gre-delay-20ms-adds-${added}ms" in_range 18 "$added" 22

# Loss on both ends of a link: a ping is lost if its request or its reply is.
for p in 1 10 30; do
    if [ "$p" != 1 ]; then
        step $g impair va e1 --loss "$p%"
        step $g impair vb e1 --loss "$p%"
    fi
    ip netns exec va busybox ping -c 1 -W 2 10.81.0.2 >/dev/null 2>&1 ||
        ip netns exec va busybox ping -c 3 -W 2 10.81.0.2 >/dev/null 2>&1 || true
    got=$(ip netns exec va busybox ping -q -c 2000 -i 0.005 -W 2 10.81.0.2 |
        sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    # busybox's awk has no ^ nor sqrt: Newton's method for the square root.
    verdict=$(awk -v p="$p" -v got="$got" 'BEGIN {
        n = 2000; k = 1 - p / 100; q = 1 - k * k; lost = (n - got) / n
        v = q * (1 - q) / n; r = v; for (i = 0; i < 60; i++) r = (r + v / r) / 2
        # The 99.9% interval: a correct lab fails by chance once in a thousand runs per rate.
        half = 3.291 * r
        d = lost - q; if (d < 0) d = -d
        printf "%.2f%%-of-2000-lost-expected-%.2f+-%.2f%% %d", lost * 100, q * 100, half * 100, d <= half
    }')
    check "loss-$p%-each-way-${verdict% *}" test "${verdict##* }" = 1
done

# Rate: a 5 MB download leaving va by e2.
step mkdir -p /tmp/www
step dd if=/dev/zero of=/tmp/www/f bs=100000 count=50
step ip netns exec va busybox httpd -p 8080 -h /tmp/www
t=$(ip netns exec vb busybox time busybox wget -q -O /dev/null http://10.82.0.1:8080/f 2>&1 |
    sed -n 's/^real[^0-9]*\([0-9]*\)m \([0-9.]*\)s.*/\1 \2/p' | awk '{ print $1 * 60 + $2 }')
mbit=$(awk -v t="$t" 'BEGIN { if (t > 0) printf "%.2f", 40 / t }')
check "rate-10mbit-gives-${mbit}mbit" in_range 9 "$mbit" 11

check down $g down
check nothing-left no_netns
summary
