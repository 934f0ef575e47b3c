#!/usr/bin/env bash
# grelab's benchmarks, one command, as root:  benches/run.sh [--quick]
#
# Times whole commands side by side with hyperfine (median, min-max):
#   grelab          grelab up --no-check / grelab down
#   ip-per-step     `grelab plan` as a script, one `ip` process per step; down: `ip netns del` each
#   ip-batch        one root `ip -batch`, one `ip -n NS -batch` per namespace (benches/ipbatch.py)
#   floor           examples/floor.rs: only the syscalls and netlink messages the lab needs
#   floor-1q        the same, veths with one queue each (a change grelab could make)
# on the basic lab (underlay only), hub-and-spoke labs without tunnels, and
# hub-and-spoke labs with userspace GRE tunnels (grelab up, verify, down).
# Before timing, each tool's lab is checked to be grelab's (benches/labstate.py).
# Writes benches/results.md; raw hyperfine JSON goes to $CARGO_TARGET_DIR/bench/.
# --quick: 3 runs, N up to 100 (ip-per-step up to 10), a shorter settle: a
# smoke test of about 2 minutes.
set -euo pipefail

quick=0
case "${1-}" in
--quick) quick=1 ;;
"") ;;
*)
    echo "usage: $0 [--quick]" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "benches/run.sh: needs root (it creates network namespaces): sudo $0 $*" >&2
    exit 3
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

# The run works in a private mount namespace with tmpfs at /run/netns and
# /run/grelab: its namespaces and labs are invisible to everyone else (and
# theirs to it), nothing is left mounted when it ends, and namespace files
# cost what they cost on a standard host, where /run is tmpfs. (On a host
# whose /run is ext4 without a journal, creating a file in a directory
# where thousands were deleted in the last minutes scans the recently freed
# inodes: every tool's namespaces get slower with each run.)
if [ -z "${GRELAB_BENCH_PRIVATE-}" ]; then
    GRELAB_BENCH_PRIVATE=1 exec unshare --mount --propagation private "$0" "$@"
fi
mkdir -p /run/netns /run/grelab
mount -t tmpfs -o mode=0755 grelab-bench-netns /run/netns
mount -t tmpfs -o mode=0755 grelab-bench-state /run/grelab
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v ip >/dev/null || missing+=(iproute2)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

(cd "$repo" && cargo build --release --bin grelab --example floor)
# .cargo/config.toml builds for the host tuple (static): target/<tuple>/release.
out=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release
G=$out/grelab
F=$out/examples/floor

if [ $quick = 1 ]; then
    runs=3 basic_runs=3 big_runs=3 sizes="10 100" settle_min=0.2 per_step_max=10
else
    # The basic lab takes milliseconds: more runs steady its medians.
    runs=10 basic_runs=20 big_runs=5 sizes="10 100 500 1000" settle_min=1 per_step_max=100
fi
settle="$here/settle.sh $settle_min"
P=gb$$-                         # every namespace and lab of this run starts with it
work=$(mktemp -d /tmp/grelab-bench.XXXXXX)
raw=$CARGO_TARGET_DIR/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$raw"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Removes whatever this run created: grelab labs (and their dataplanes),
# then any namespace with this run's prefix.
cleanup() {
    set +e
    for d in /run/grelab/"$P"*; do
        [ -d "$d" ] && "$G" down --lab "${d##*/}" >/dev/null 2>&1
    done
    for ns in /run/netns/"$P"*; do
        [ -e "$ns" ] && ip netns del "${ns##*/}" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
# hyperfine runs as a background job in its own process group (set -m), so
# that an interrupt stops it and all it started at once, then cleans up.
set -m
job=
interrupted() {
    trap - INT TERM
    [ -n "$job" ] && kill -TERM -- "-$job" 2>/dev/null
    wait
    exit 130
}
trap interrupted INT TERM

# lab NAME YAML [tunnels]: plan JSON, per-step script, batch files (not
# for tunnels) and a teardown that works whichever tool built the lab,
# under $work/NAME.
lab() {
    local d=$work/$1
    mkdir -p "$d"
    cp "$2" "$d/lab.yaml"
    "$G" plan "$d/lab.yaml" --prefix "$P" --format json >"$d/plan.json"
    "$G" plan "$d/lab.yaml" --prefix "$P" >"$d/perstep.sh"
    python3 - "$d/plan.json" "$d" <<'EOF'
import json, sys
nss = [n["ns"] for n in json.load(open(sys.argv[1]))["nodes"]]
open(sys.argv[2] + "/perstep-down.sh", "w").writelines(f"ip netns del {n}\n" for n in nss)
open(sys.argv[2] + "/down.batch", "w").writelines(f"netns del {n}\n" for n in nss)
EOF
    [ "${3-}" = tunnels ] || python3 "$here/ipbatch.py" "$d/plan.json" "$d/batch"
    printf '%s\n' "$G down --lab $(labname "$1") >/dev/null 2>&1" \
        "ip -force -batch $d/down.batch >/dev/null 2>&1" "exit 0" >"$d/teardown.sh"
}
labname() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lab"])' "$work/$1/plan.json"; }

# The up and down commands of TOOL for lab NAME.
up_cmd() {
    local d=$work/$2
    case $1 in
    grelab) echo "$G up $d/lab.yaml --prefix $P --no-check" ;;
    grelab-userspace) echo "$G up $d/lab.yaml --prefix $P --no-check --backend userspace" ;;
    ip-per-step) echo "sh $d/perstep.sh" ;;
    ip-batch) echo "sh $d/batch/up.sh" ;;
    floor) echo "$F up $d/plan.json" ;;
    floor-1q) echo "env FLOOR_ONE_QUEUE=1 $F up $d/plan.json" ;;
    esac
}
down_cmd() {
    local d=$work/$2
    case $1 in
    grelab*) echo "$G down --lab $(labname "$2")" ;;
    ip-per-step) echo "sh $d/perstep-down.sh" ;;
    ip-batch) echo "ip -batch $d/batch/down.batch" ;;
    floor*) echo "$F down $d/plan.json" ;;
    esac
}

# check NAME TOOL...: each tool builds the lab once; its state must equal
# grelab's (ip-per-step: the printed script sets no broadcast address and
# its routes are proto boot, so only that may differ).
check() {
    local name=$1 tool loose
    shift
    for tool in "$@"; do
        sh -c "$(up_cmd "$tool" "$name")" >/dev/null
        python3 "$here/labstate.py" dump "$work/$name/plan.json" >"$work/$name/state-$tool.json"
        sh "$work/$name/teardown.sh"
        $settle
    done
    for tool in "$@"; do
        loose=
        [ "$tool" = ip-per-step ] && loose=--loose
        if ! python3 "$here/labstate.py" diff "$work/$name/state-grelab.json" \
            "$work/$name/state-$tool.json" $loose >&2; then
            echo "benches/run.sh: $tool does not build the same lab ($name) as grelab" >&2
            exit 1
        fi
    done
    echo "check: $name is the same lab with: $*"
}

# measure NAME RUNS TOOL...: up+down, up, down of each tool, side by side.
measure() {
    local name=$1 n=$2 tool
    shift 2
    local names=() updown=() up=() down=() downprep=()
    for tool in "$@"; do
        names+=(-n "$tool")
        updown+=("$(up_cmd "$tool" "$name") && $(down_cmd "$tool" "$name")")
        up+=("$(up_cmd "$tool" "$name")")
        down+=("$(down_cmd "$tool" "$name")")
        downprep+=(--prepare "sh -c '$(up_cmd "$tool" "$name") >/dev/null && $settle'")
    done
    local teardown="sh $work/$name/teardown.sh"
    hf "$name-updown" --runs "$n" "${names[@]}" --prepare "$settle" --cleanup "$teardown" "${updown[@]}"
    hf "$name-up" -N --runs "$n" "${names[@]}" --prepare "sh -c '$teardown; $settle'" --cleanup "$teardown" "${up[@]}"
    hf "$name-down" -N --runs "$n" "${names[@]}" "${downprep[@]}" --cleanup "$teardown" "${down[@]}"
}
hf() {
    local out=$1
    shift
    echo "== $out ($(date +%T))"
    cut -d' ' -f1 /proc/loadavg >>"$raw/load.txt"
    hyperfine --style basic --export-json "$raw/$out.json" "$@" &
    job=$!
    wait "$job"
    job=
}

# rss NAME TOOL: peak RSS of `up` (and of the dataplane, up and after verify).
rss() {
    local name=$1 tool=$2 lab pid
    lab=$(labname "$name")
    sh "$work/$name/teardown.sh"
    $settle
    # shellcheck disable=SC2046 # the command's words
    GRELAB_TIMINGS=1 /usr/bin/time -f 'up-max-rss-kb %M' -o "$raw/$name-uptime.txt" \
        $(up_cmd "$tool" "$name") >/dev/null 2>"$raw/$name-timings.txt"
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("dataplane_pid") or "")' "/run/grelab/$lab/state.json")
    {
        echo "name $name"
        cat "$raw/$name-uptime.txt"
        if [ -n "$pid" ]; then
            echo "dataplane-hwm-up-kb $(awk '/^VmHWM/{print $2}' "/proc/$pid/status")"
            "$G" verify --lab "$lab" --no-derived >/dev/null
            echo "dataplane-hwm-verify-kb $(awk '/^VmHWM/{print $2}' "/proc/$pid/status")"
        fi
    } >"$raw/$name-rss.txt"
    sh "$work/$name/teardown.sh"
}

# The basic lab without its tunnel and checks.
python3 - "$repo/topologies/basic.yaml" >"$work/basic.yaml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
print(text[: text.index("\ntunnels:")])
EOF
lab basic "$work/basic.yaml"
check basic grelab ip-per-step ip-batch floor
measure basic "$basic_runs" grelab ip-per-step ip-batch floor

# Hub and spoke without tunnels; 130 spokes is past the permanent-neighbour
# threshold (128 links), checked even in quick mode.
"$G" generate hub-spoke --spokes 130 --no-tunnels --name hs130 >"$work/hs130.yaml"
lab hs130 "$work/hs130.yaml"
check hs130 grelab ip-batch floor floor-1q
for n in $sizes; do
    "$G" generate hub-spoke --spokes "$n" --no-tunnels --name "hs$n" >"$work/hs$n.yaml"
    lab "hs$n" "$work/hs$n.yaml"
    tools=(grelab ip-batch floor floor-1q)
    [ "$n" -le $per_step_max ] && tools+=(ip-per-step)
    r=$runs
    [ "$n" -ge 500 ] && r=$big_runs
    [ "$n" = 10 ] && check "hs$n" "${tools[@]}"
    measure "hs$n" "$r" "${tools[@]}"
done
rss "hs${sizes##* }" grelab

# Hub and spoke with GRE tunnels on the userspace dataplane.
for n in $sizes; do
    name=tun$n
    "$G" generate hub-spoke --spokes "$n" --name "$name" >"$work/$name.yaml"
    lab "$name" "$work/$name.yaml" tunnels
    r=$runs
    [ "$n" -ge 500 ] && r=$big_runs
    up=$(up_cmd grelab-userspace "$name")
    down=$(down_cmd grelab-userspace "$name")
    teardown="sh $work/$name/teardown.sh"
    hf "$name-up" -N --runs "$r" -n grelab --prepare "sh -c '$teardown; $settle'" --cleanup "$teardown" "$up"
    $up >/dev/null
    $settle
    hf "$name-verify" -N --runs "$r" -n grelab "$G verify --lab $(labname "$name") --no-derived"
    hf "$name-down" -N --runs "$r" -n grelab --prepare "sh -c '$up >/dev/null && $settle'" "$down"
    rss "$name" grelab-userspace
done

cat >"$raw/facts.json" <<EOF
{"mode": "$([ $quick = 1 ] && echo quick || echo full)",
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "nproc": "$(nproc)",
 "cpu": "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)",
 "kernel": "$(uname -r)",
 "memory": "$(free -g | awk '/^Mem/{print $2}') GiB",
 "load_start": "$load_start",
 "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "hyperfine": "$(hyperfine --version)",
 "iproute2": "$(ip -V)",
 "grelab": "$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo unknown)",
 "settle_min": "$settle_min",
 "sizes": "$sizes"}
EOF
python3 "$here/report.py" "$raw" >"$here/results.md"
echo "wrote $here/results.md (raw results in $raw)"
