#!/usr/bin/env bash
# Fast checks, as a user would time them, as root:  benches/checks.sh [RUNS]
#
# Whole commands on the basic lab (its userspace tunnel included), the
# pairs side by side in each round, medians of RUNS rounds (default 15):
#   up            `grelab up basic.yaml`      vs  `grelab up --no-check`  (target: <= 4x)
#   verify        `grelab verify` of basic                                (target: <= 100 ms)
#   down          `grelab down` with the tunnel vs the same lab without it (target: <= 2x)
#   up+down       `grelab up --no-check` + `grelab down` of basic, tunnel included, vs the
#                 tutorial's steps as a script of one `ip` per step and `ip netns del` each
#                 (benches/seed-steps.sh; VXLAN stands in for GRE where the kernel has no
#                 ip_gre)                                                 (target: <= 0.3x)
# Runs in a private mount namespace with tmpfs /run/netns and /run/grelab,
# as benches/run.sh does: its labs are invisible to everyone else's.
set -euo pipefail
runs=${1-15}
if [ "$(id -u)" != 0 ]; then
    echo "benches/checks.sh: needs root (it creates network namespaces): sudo $0 $*" >&2
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
work=$(mktemp -d /tmp/grelab-bench-checks.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$repo/topologies/basic.yaml" "$work/basic.yaml"
# The same lab without its tunnel (and so without a dataplane) or checks.
sed '/^tunnels:/,$d' "$repo/topologies/basic.yaml" >"$work/untunnelled.yaml"
python3 - "$G" "$work" "$runs" "$here/seed-steps.sh" <<'EOF'
import statistics, subprocess, sys, time
G, work, runs, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
P = "cb%d-" % __import__("os").getpid()

def run(*args, timed=True):
    t = time.perf_counter()
    r = subprocess.run([G, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"grelab {' '.join(args)} failed: {r.stderr.decode()}")
    return took

def up(file, prefix, *extra):
    return run("up", f"{work}/{file}", "--prefix", prefix, *extra)

def down(prefix, name="basic"):
    return run("down", "--lab", prefix + name)

def script(*args):
    t = time.perf_counter()
    r = subprocess.run(["sh", steps, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"{steps} {' '.join(args)} failed: {r.stderr.decode()}")
    return time.perf_counter() - t

times = {k: [] for k in ["up", "up --no-check", "verify", "down (tunnel)", "down (no tunnel)",
                         "grelab up+down", "ip steps up+down"]}
try:
    up("basic.yaml", P + "v")
    for _ in range(runs):
        times["up"].append(up("basic.yaml", P + "a"))
        down(P + "a")
        times["up --no-check"].append(up("basic.yaml", P + "b", "--no-check"))
        times["down (tunnel)"].append(down(P + "b"))
        up("untunnelled.yaml", P + "c", "--no-check")
        times["down (no tunnel)"].append(down(P + "c"))
        times["verify"].append(run("verify", "--lab", P + "vbasic"))
        times["grelab up+down"].append(up("basic.yaml", P + "d", "--no-check") + down(P + "d"))
        times["ip steps up+down"].append(script("up", P + "s") + script("down", P + "s"))
finally:
    subprocess.run(["sh", steps, "down", P + "s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([G, "down", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
for k, v in times.items():
    print(f"{k:18} median {med[k]:7.1f} ms  (min {min(v)*1e3:.1f}, max {max(v)*1e3:.1f}, {len(v)} runs)")
print(f"up / up --no-check        {med['up'] / med['up --no-check']:.2f}x  (target <= 4x)")
print(f"verify                    {med['verify']:.1f} ms  (target <= 100 ms)")
print(f"down tunnel / no tunnel   {med['down (tunnel)'] / med['down (no tunnel)']:.2f}x  (target <= 2x)")
print(f"grelab / ip steps         {med['grelab up+down'] / med['ip steps up+down']:.2f}x  (up --no-check + down; target <= 0.3x)")
EOF
