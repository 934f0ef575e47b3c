#!/bin/sh
# Waits until the kernel is idle: at least MIN seconds (default 1), then
# until the host's system+irq+softirq time over 100 ms is at most 3 ticks
# (of 10 ms), at most 5 s more. A namespace removed by `down` is freed later
# by a kernel worker; an `up` started meanwhile runs slower.
sleep "${1:-1}"
busy() { awk '/^cpu /{print $4 + $7 + $8}' /proc/stat; }
i=0
while [ $i -lt 50 ]; do
    a=$(busy); sleep 0.1; b=$(busy)
    [ $((b - a)) -le 3 ] && exit 0
    i=$((i + 1))
done
echo "settle: the kernel stayed busy for 5 s; going on" >&2
