#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), then
# runs every test, the root and kernel-GRE VM tests included. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the suite builds network namespaces and boots a VM: run it as root" >&2
    exit 3
fi

need=()
for pair in ip:iproute2 dot:graphviz tcpdump:tcpdump ping:iputils-ping iperf3:iperf3 busybox:busybox-static nft:nftables iptables-legacy:iptables bird:bird2 node:nodejs npm:npm man:man-db; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Mermaid's own parser, for the graph test (tests/mermaid, from npm).
if [ ! -d tests/mermaid/node_modules ] || [ tests/mermaid/package-lock.json -nt tests/mermaid/node_modules ]; then
    (cd tests/mermaid && npm ci --silent --no-audit --no-fund)
fi

cargo test --all-targets --features root-tests --no-fail-fast "$@"
