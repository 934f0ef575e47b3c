#!/usr/bin/env bash
# Bounded fuzzing for CI: builds the cargo-fuzz targets, runs each for
# SECONDS_PER_TARGET (default 60) from the committed corpus, one process at
# a time, and fails if any target crashes, hangs or runs out of memory.
# Prints the executions of each target and the total.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]
#
# FUZZ_TOOLCHAIN picks the toolchain (default nightly: sanitizers need it).
# New inputs go to a temporary directory: the committed corpus stays as it
# is. A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
# `cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] (a whole number of seconds, not \`$seconds\`)" >&2
    exit 2
fi
toolchain=${FUZZ_TOOLCHAIN:-nightly}
cd "$(dirname "$0")/.."
start=$(date +%s)

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: no \`$toolchain\` toolchain: install it with \`rustup toolchain install $toolchain\`" >&2
    exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# -a: debug assertions and overflow checks, so arithmetic that would wrap in
# a release build fails here. The sanitizer (address, cargo-fuzz's default)
# needs a dynamically linked binary: cargo-fuzz passes its flags in
# RUSTFLAGS, which replaces the +crt-static rustflags of .cargo/config.toml,
# and it names the host target itself.
flags=(-a)
targets=$(cargo "+$toolchain" fuzz list)
echo "fuzz/run.sh: building $(echo $targets)"
cargo "+$toolchain" fuzz build "${flags[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total=0
failed=()
for t in $targets; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    extra=()
    if [[ -f fuzz/dict/$t.dict ]]; then
        extra+=("-dict=fuzz/dict/$t.dict")
    fi
    log=$work/$t.log
    # The first corpus directory takes new inputs; the committed one is only read.
    status=0
    cargo "+$toolchain" fuzz run "${flags[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [[ $status -ne 0 || -z $runs ]]; then
        echo "fuzz/run.sh: $t FAILED (exit $status); the end of its log:" >&2
        tail -40 "$log" >&2
        failed+=("$t")
        runs=${runs:-0}
    fi
    printf '%-10s %12d executions in %ss\n' "$t" "$runs" "$seconds"
    total=$((total + runs))
done
printf '%-10s %12d executions, %ss in all (build included)\n' total "$total" $(($(date +%s) - start))
if ((${#failed[@]})); then
    echo "fuzz/run.sh: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
