#!/usr/bin/env bash
# Changing a running lab vs building it: benches/reconcile.sh [RUNS] [SPOKES]
# (as root; default 5 runs of a 1000-spoke lab).
#
# Whole commands, interleaved run by run so that each measure sees the same
# machine: in each run
#   fresh   `grelab up` of the SPOKES-spoke lab from nothing (after `down`
#           and benches/settle.sh), the lab's file from `grelab generate
#           hub-spoke --spokes SPOKES`
#   add     `grelab up` of the file with one spoke more, on the running lab
#   remove  `grelab up` of the first file again: the spoke goes
# each checked afterwards (the lab's namespaces are the plan's). Prints the
# medians and writes benches/reconcile.md. Works, like benches/run.sh, in a
# private mount namespace with tmpfs at /run/netns and /run/grelab.
set -euo pipefail
runs=${1:-5}
spokes=${2:-1000}
if [ "$(id -u)" != 0 ]; then
    echo "benches/reconcile.sh: needs root (it creates network namespaces)" >&2
    exit 3
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ -z "${GRELAB_BENCH_PRIVATE-}" ]; then
    GRELAB_BENCH_PRIVATE=1 exec unshare --mount --propagation private "$0" "$@"
fi
mkdir -p /run/netns /run/grelab
mount -t tmpfs -o mode=0755 grelab-bench-netns /run/netns
mount -t tmpfs -o mode=0755 grelab-bench-state /run/grelab
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
(cd "$repo" && cargo build --release --bin grelab)
G=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release/grelab
P=rb$$-
work=$(mktemp -d /tmp/grelab-reconcile.XXXXXX)
trap '"$G" down --lab ${P}hub >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$G" generate hub-spoke --spokes "$spokes" >"$work/base.yaml"
"$G" generate hub-spoke --spokes $((spokes + 1)) >"$work/more.yaml"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# `up FILE`, timed; then the lab must have exactly the plan's namespaces.
timed_up() {
    local t0 out
    t0=$(date +%s%N)
    out=$("$G" up "$1" --prefix "$P" --no-check)
    local t=$(ms "$t0")
    local want have
    want=$("$G" plan "$1" --prefix "$P" | grep -c '^ip netns add')
    have=$(ls /run/netns | grep -c "^$P")
    if [ "$want" != "$have" ]; then
        echo "after up $1: $have namespaces, the plan has $want" >&2
        exit 1
    fi
    echo "$t"
    printf '%s\n' "$out" | grep -q "applied\|is up" || { echo "$out" >&2; exit 1; }
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$work/fresh"; : >"$work/add"; : >"$work/remove"
for r in $(seq "$runs"); do
    "$G" down --lab "${P}hub" >/dev/null 2>&1 || true
    "$here/settle.sh" 1
    timed_up "$work/base.yaml" >>"$work/fresh"
    "$here/settle.sh" 0.5
    timed_up "$work/more.yaml" >>"$work/add"
    "$here/settle.sh" 0.5
    timed_up "$work/base.yaml" >>"$work/remove"
    echo "run $r: fresh $(tail -1 "$work/fresh") ms, add $(tail -1 "$work/add") ms, remove $(tail -1 "$work/remove") ms" >&2
done
f=$(median <"$work/fresh"); a=$(median <"$work/add"); d=$(median <"$work/remove")
pct() { awk -v x="$1" -v y="$f" 'BEGIN {printf "%.1f%%", 100 * x / y}'; }
{
    echo "# Changing a running lab vs building it"
    echo
    echo "Produced by \`benches/reconcile.sh $runs $spokes\` (as root); whole commands, $runs runs interleaved, medians."
    echo "Machine: $(nproc) cores, kernel $(uname -r), load at end $(cut -d' ' -f1-3 /proc/loadavg); grelab $(cd "$repo" && git rev-parse --short HEAD)."
    echo
    echo "| $spokes-spoke hub-and-spoke lab | median ms | runs (ms) | of a fresh up |"
    echo "| --- | ---: | --- | ---: |"
    echo "| fresh \`up\` | $f | $(paste -sd' ' "$work/fresh") | 100% |"
    echo "| \`up\` adding one spoke | $a | $(paste -sd' ' "$work/add") | $(pct "$a") |"
    echo "| \`up\` removing it | $d | $(paste -sd' ' "$work/remove") | $(pct "$d") |"
} | tee "$here/reconcile.md"
