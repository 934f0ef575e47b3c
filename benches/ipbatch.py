#!/usr/bin/env python3
"""The smallest iproute2 form of a plan (`grelab plan --format json`): one
root `ip -batch` (namespaces, veths created in place), one `ip -n NS -batch`
per namespace (addresses, links up, neighbours, routes), and `ip netns exec
NS sysctl -w` per sysctl. Writes OUT/up.sh and OUT/down.batch.

Addresses get `brd +` and routes `proto static` so that the lab is the
one grelab builds (benches/labstate.py compares them)."""
import json
import os
import shlex
import sys


def main():
    plan_file, out = sys.argv[1], sys.argv[2]
    with open(plan_file) as f:
        plan = json.load(f)
    os.makedirs(out, exist_ok=True)
    root, per_ns, sysctls = [], {}, []
    for s in plan["steps"]:
        kind, ns = s["step"], s.get("ns")
        lines = per_ns.setdefault(ns, []) if ns else None
        if kind == "namespace":
            root.append(f"netns add {ns}")
        elif kind == "veth":
            mtu = s["mtu"]
            root.append(
                f"link add {s['name']} netns {ns} mtu {mtu} address {s['mac']} type veth "
                f"peer name {s['peer']} mtu {mtu} address {s['peer_mac']} netns {s['peer_ns']}"
            )
        elif kind == "sysctl":
            sysctls.append(
                f"ip netns exec {ns} sysctl -qw {shlex.quote(s['key'] + '=' + s['value'])}"
            )
        elif kind == "address":
            extra = " nodad" if ":" in s["addr"] else " brd +"
            lines.append(f"addr add {s['addr']}{extra} dev {s['dev']}")
        elif kind == "up":
            lines.append(f"link set {s['dev']} up")
        elif kind == "neighbor":
            lines.append(
                f"neigh replace {s['addr']} lladdr {s['mac']} dev {s['dev']} nud permanent"
            )
        elif kind == "route":
            to = {"default": "default", "default6": "::/0"}.get(s["to"], s["to"])
            lines.append(f"route add {to} via {s['via']} proto static")
        else:
            sys.exit(f"ipbatch: step `{kind}` is not supported (underlay labs only)")
    with open(f"{out}/root.batch", "w") as f:
        f.write("\n".join(root) + "\n")
    script = ["#!/bin/sh", "set -e", f"ip -batch {out}/root.batch"]
    for i, node in enumerate(plan["nodes"]):
        ns = node["ns"]
        if per_ns.get(ns):
            with open(f"{out}/ns{i}.batch", "w") as f:
                f.write("\n".join(per_ns[ns]) + "\n")
            script.append(f"ip -n {ns} -batch {out}/ns{i}.batch")
    script += sysctls
    with open(f"{out}/up.sh", "w") as f:
        f.write("\n".join(script) + "\n")
    with open(f"{out}/down.batch", "w") as f:
        f.write("".join(f"netns del {n['ns']}\n" for n in plan["nodes"]))


main()
