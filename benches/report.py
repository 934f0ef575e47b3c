#!/usr/bin/env python3
"""benches/results.md from a run's raw directory (hyperfine JSON, RSS and
GRELAB_TIMINGS files, facts.json): `report.py RAW_DIR > results.md`."""
import glob
import json
import os
import re
import sys

raw = sys.argv[1]
facts = json.load(open(f"{raw}/facts.json"))
MEASURES = ["updown", "up", "down", "verify"]
MEASURE_NAMES = {"updown": "up+down", "up": "up", "down": "down", "verify": "verify --no-derived"}


def scenario_key(name):
    kind, n = re.fullmatch(r"([a-z]+?)(\d*)", name).groups()
    return (["basic", "hs", "tun"].index(kind), int(n or 0))


def scenario_title(name):
    kind, n = re.fullmatch(r"([a-z]+?)(\d*)", name).groups()
    return {
        "basic": "basic, underlay only",
        "hs": f"hub-spoke {n}, no tunnels",
        "tun": f"hub-spoke {n}, userspace GRE",
    }[kind]


KIND_TITLES = {"hs": "hub-spoke, no tunnels", "tun": "hub-spoke, userspace GRE"}
results = {}  # (scenario, measure) -> {tool: result}
for f in glob.glob(f"{raw}/*.json"):
    m = re.fullmatch(r"(\w+?)-(updown|up|down|verify)\.json", os.path.basename(f))
    if m:
        results[m.groups()] = {r["command"]: r for r in json.load(open(f))["results"]}


def ms(seconds):
    v = seconds * 1e3
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def median(scenario, measure, tool):
    r = results.get((scenario, measure), {}).get(tool)
    return r and r["median"]


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "n/a"


out = []
p = out.append
mode = facts["mode"]
p(f"# grelab benchmarks ({mode} run)\n")
p("Produced by `benches/run.sh" + (" --quick" if mode == "quick" else "") + "` (as root); "
  "do not edit by hand. Whole commands, timed side by side by hyperfine in the same run.\n")
p("| machine | |\n| --- | --- |")
for k in ["date", "nproc", "cpu", "memory", "kernel", "load_start", "load_end",
          "hyperfine", "iproute2", "grelab"]:
    label = {"load_start": "load average at start (1, 5, 15 min)",
             "load_end": "load average at end", "grelab": "grelab commit"}.get(k, k)
    p(f"| {label} | {facts[k]} |")
loads = [float(x) for x in open(f"{raw}/load.txt").read().split()]
p(f"| 1-minute load average as each measurement started | {min(loads)}–{max(loads)} |")
p("")
p("Tools: **grelab** (`grelab up --no-check`, `grelab down`); **ip-per-step** (the script "
  "`grelab plan FILE` prints, one `ip` process per step, generated beforehand; down: one "
  "`ip netns del` per namespace); **ip-batch** (one root `ip -batch` for namespaces and "
  "veths, one `ip -n NS -batch` per namespace for addresses, links up, neighbours and "
  "routes, `ip netns exec NS sysctl -w`; down: one `ip -batch` of `netns del`); **floor** "
  "(`examples/floor.rs`: the namespace syscalls and one netlink message per step, many "
  "per write, one thread, no marks, no state; down: umount + unlink); **floor-1q** "
  "(the floor with `FLOOR_ONE_QUEUE=1`: veths created with one queue each way, which "
  "spares the kernel an RCU grace period per veth end; a change grelab could make, "
  "only `ip -d link`'s numtxqueues differs). Before timing, "
  "every tool's lab is compared with grelab's (`benches/labstate.py`: links, MACs, MTUs, "
  "addresses, routes, permanent neighbours, forwarding) and must be equal.\n")
p("The run works in a private mount namespace with tmpfs at /run/netns and /run/grelab "
  "(as on a standard host, where /run is tmpfs): its namespaces are invisible to other users "
  "of the machine and nothing stays mounted after it.\n")
p(f"Between runs (hyperfine `--prepare`): the previous lab is removed, then "
  f"`benches/settle.sh {facts['settle_min']}`: sleep {facts['settle_min']} s, then wait "
  "until the kernel is idle (system time at most 3 ticks per 100 ms), because an `up` "
  "started while the kernel still frees the previous lab's namespaces runs slower. "
  "`down` runs get a fresh `up` and the same settle before each. hyperfine subtracts its "
  "shell's start-up time.\n")

p("Reading `down`: the command returns once the namespaces are unmounted; the kernel frees "
  "them (and their veths) afterwards in a worker thread that, on a small machine, competes "
  "with the command itself, so small differences between tools' `down` are scheduling noise. "
  "The machine is shared: see the load averages above.\n")
p("## Results\n")
p("| scenario | measure | tool | median | min–max | runs | ÷ floor |")
p("| --- | --- | --- | ---: | ---: | ---: | ---: |")
for (scenario, measure) in sorted(results, key=lambda k: (scenario_key(k[0]), MEASURES.index(k[1]))):
    tools = results[(scenario, measure)]
    floor = tools.get("floor")
    for tool, r in tools.items():
        p(f"| {scenario_title(scenario)} | {MEASURE_NAMES[measure]} | {tool} | {ms(r['median'])} "
          f"| {ms(r['min'])}–{ms(r['max'])} | {len(r['times'])} "
          f"| {ratio(r['median'], floor['median']) if floor else ''} |")
p("")

p("## Ratios (medians)\n")
p("| | up+down | up | down |\n| --- | ---: | ---: | ---: |")
for other in ["ip-per-step", "ip-batch", "floor"]:
    cells = [ratio(median("basic", m, "grelab"), median("basic", m, other))
             for m in ["updown", "up", "down"]]
    p(f"| basic: grelab / {other} | " + " | ".join(cells) + " |")
sizes = [int(n) for n in facts["sizes"].split()]
small, big = (100, sizes[-1]) if 100 in sizes and sizes[-1] != 100 else (sizes[0], sizes[-1])
p("")
p(f"Per-node cost of `up` (median / namespaces, a hub-spoke of N spokes has N+1), "
  f"N={big} against N={small}: 1.0× is linear.\n")
p(f"| lab | tool | per node at N={small} | per node at N={big} | ratio |")
p("| --- | --- | ---: | ---: | ---: |")
for kind, tools in [("hs", ["grelab", "ip-batch", "floor", "floor-1q"]), ("tun", ["grelab"])]:
    for tool in tools:
        a, b = median(f"{kind}{small}", "up", tool), median(f"{kind}{big}", "up", tool)
        if a and b:
            pa, pb = a / (small + 1), b / (big + 1)
            p(f"| {KIND_TITLES[kind]} | {tool} | {pa * 1e3:.2f} ms "
              f"| {pb * 1e3:.2f} ms | {pb / pa:.2f}× |")
p("")

p("## Memory\n")
p("Peak RSS of `grelab up` (`/usr/bin/time -f %M`), and the dataplane's VmHWM "
  "(/proc/PID/status) once up and after `verify --no-derived` has pinged every tunnel.\n")
p("| lab | grelab up | dataplane, up | dataplane, after verify |\n| --- | ---: | ---: | ---: |")
for f in sorted(glob.glob(f"{raw}/*-rss.txt"), key=lambda f: scenario_key(os.path.basename(f)[:-8])):
    kv = dict(line.split(None, 1) for line in open(f).read().split("\n") if line.strip())
    mib = lambda k: f"{int(kv[k]) / 1024:.1f} MiB" if k in kv else "—"
    p(f"| {scenario_title(kv['name'])} | {mib('up-max-rss-kb')} | {mib('dataplane-hwm-up-kb')} "
      f"| {mib('dataplane-hwm-verify-kb')} |")
p("")

p("## Where `grelab up` spends its time (GRELAB_TIMINGS=1, one run)\n")
for f in sorted(glob.glob(f"{raw}/*-timings.txt"), key=lambda f: scenario_key(os.path.basename(f)[:-12])):
    name = os.path.basename(f)[: -len("-timings.txt")]
    lines = [l for l in open(f).read().splitlines() if l.startswith("timing:")]
    p(f"{scenario_title(name)}:\n\n```text\n" + "\n".join(lines) + "\n```\n")

sys.stdout.write("\n".join(out))
