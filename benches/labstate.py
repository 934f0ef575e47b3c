#!/usr/bin/env python3
"""Compares the labs two tools build.

`labstate.py dump PLAN.json > state.json`: the state of the plan's
namespaces (links, addresses, routes, permanent neighbours, forwarding),
one `ip` process per namespace. Left out: interface indexes, grelab's
ownership marks (aliases), queue counts, and what the kernel derives on its
own timing (IPv6 link-local addresses and their routes, which appear as
carriers come up and DAD ends).

`labstate.py diff A.json B.json [--loose]`: exit 1 and print the first
differences if the states differ. --loose leaves out IPv4 broadcast
addresses and counts `proto boot` routes as `proto static` (where the
script `grelab plan` prints differs from grelab)."""
import json
import subprocess
import sys


def docs(text):
    """The JSON arrays `ip -j -batch` prints one after another."""
    dec, at, out = json.JSONDecoder(), 0, []
    text = text.strip()
    while at < len(text):
        doc, at = dec.raw_decode(text, at)
        out.append(doc)
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def pick(d, keys):
    return {k: d[k] for k in keys if k in d}


def kernel6(x):
    return str(x.get("local", x.get("dst", ""))).startswith(("fe80:", "ff00:"))


def srt(xs):
    return sorted(xs, key=lambda x: json.dumps(x, sort_keys=True))


def namespace(ns):
    links, addrs, routes, neigh, netconf = docs(
        subprocess.run(
            ["ip", "-j", "-d", "-n", ns, "-batch", "-"],
            input="link show\naddr show\nroute show table all\n"
            "neigh show nud permanent\nnetconf show\n",
            capture_output=True, text=True, check=True,
        ).stdout
    )
    route_keys = ["type", "dst", "gateway", "dev", "table", "protocol", "scope",
                  "prefsrc", "metric"]
    return {
        "links": srt(
            # Not the IPv6 address-generation mode: grelab also turns off
            # link-local addresses on IPv4-only veths (extra requests for it).
            {**pick(l, ["ifname", "mtu", "address", "link_type"]),
             "up": "UP" in l["flags"], "kind": l.get("linkinfo", {}).get("info_kind")}
            for l in links
        ),
        "addresses": srt(
            {"dev": a["ifname"], **pick(i, ["family", "local", "prefixlen", "broadcast", "scope"])}
            for a in addrs for i in a.get("addr_info", []) if not kernel6(i)
        ),
        "routes": srt(pick(r, route_keys) for r in routes if not kernel6(r)),
        "neighbours": srt(pick(n, ["dst", "lladdr", "dev", "state"]) for n in neigh),
        "forwarding": srt(
            pick(c, ["family", "forwarding"]) for c in netconf if c.get("interface") == "all"
        ),
    }


def loosen(state):
    for ns in state.values():
        for a in ns["addresses"]:
            a.pop("broadcast", None)
        for r in ns["routes"]:
            if r.get("protocol") == "boot":
                r["protocol"] = "static"
        for k in ["addresses", "routes"]:
            ns[k] = srt(ns[k])
    return state


def main():
    if sys.argv[1:2] == ["dump"]:
        plan = json.load(open(sys.argv[2]))
        json.dump({n["ns"]: namespace(n["ns"]) for n in plan["nodes"]}, sys.stdout,
                  indent=1, sort_keys=True)
        return
    a, b = (json.load(open(f)) for f in sys.argv[2:4])
    if "--loose" in sys.argv[4:]:
        a, b = loosen(a), loosen(b)
    if a == b:
        return
    shown = 0
    for ns in sorted(set(a) | set(b)):
        for k in ["links", "addresses", "routes", "neighbours", "forwarding"]:
            x, y = a.get(ns, {}).get(k), b.get(ns, {}).get(k)
            if x != y and shown < 10:
                shown += 1
                print(f"{ns} {k}:\n  {sys.argv[2]}: {x}\n  {sys.argv[3]}: {y}")
    sys.exit(1)


main()
