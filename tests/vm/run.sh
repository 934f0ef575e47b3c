#!/bin/bash
# Boots a Debian kernel in QEMU (the release's own, or with --kernel backports
# the newer one of its backports) with GUEST_SCRIPT as /guest/test.sh
# (tests/vm/lib.sh as /guest/lib.sh, each FILE under /guest/), prints the
# guest's RESULT lines and exits 0 only if every check passed.
set -euo pipefail

usage() {
    echo "usage: run.sh [--timeout SECONDS] [--kernel stock|backports] GUEST_SCRIPT [FILE...]" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GRELAB_VM_CACHE:-/var/cache/grelab-vm}
limit=${GRELAB_VM_TIMEOUT:-180}
kernel=stock
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) [ $# -ge 2 ] || usage; limit=$2; shift 2 ;;
    --timeout=*) limit=${1#*=}; shift ;;
    --kernel) [ $# -ge 2 ] || usage; kernel=$2; shift 2 ;;
    --kernel=*) kernel=${1#*=}; shift ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
case $kernel in stock | backports) ;; *) usage ;; esac
script=$1
shift
[[ $limit =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --timeout wants whole seconds, got '$limit'" >&2; exit 2; }
for f in "$script" "$@"; do
    [ -e "$f" ] || { echo "run.sh: $f does not exist" >&2; exit 2; }
done
name=$(basename "$script" .sh)
[ "$kernel" = stock ] || name=$name-$kernel

"$here/prepare.sh" --kernel "$kernel"
vm=$cache/$kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/grelab-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/guest"
cp -- "$script" "$work/guest/test.sh"
cp -- "$here/lib.sh" "$work/guest/lib.sh"
[ $# -eq 0 ] || cp -r -- "$@" "$work/guest/"
# A second archive appended to the cached one: the kernel unpacks both.
(cd "$work" && find guest | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$work/guest.cpio.gz"
cat "$vm/base.cpio.gz" "$work/guest.cpio.gz" >"$work/initrd"

# KVM only where a real one is loaded: nested paravirtual ones hang or abort.
accel=tcg
if { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -w /dev/kvm ]; then accel=kvm; fi

t0=$(date +%s%N)
status=0
timeout -k 5 "$limit" qemu-system-x86_64 -accel "$accel" -m 512 -smp 1 \
    -kernel "$vm/vmlinux" -initrd "$work/initrd" \
    -append 'console=ttyS0 quiet panic=-1' \
    -nographic -no-reboot -nic none </dev/null >"$work/serial" 2>&1 || status=$?
took=$((($(date +%s%N) - t0) / 1000000))

log=$work/log
# The serial console writes \r\n and SeaBIOS writes terminal escape codes.
tr -d '\r' <"$work/serial" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >"$log"

grep -E '^RESULT (ok|fail) ' "$log" || true
why=
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    why="timed out after $limit s"
elif grep -q 'RESULT fail ' "$log"; then
    why="a check failed"
elif ! grep -qx 'GRELAB-VM-EXIT 0' "$log"; then
    why="no 'GRELAB-VM-EXIT 0' line (qemu exit status $status)"
elif ! grep -q '^RESULT ok ' "$log"; then
    why="no check ran"
fi
logs=${GRELAB_VM_LOGS:-$cache/logs}
mkdir -p "$logs"
saved=$logs/$name.log
cp "$log" "$saved.$$" && mv "$saved.$$" "$saved"
if [ -n "$why" ]; then
    echo "==== guest log (saved as $saved) ===="
    cat "$log"
    echo "==== $name: FAILED: $why ($accel, $((took / 1000)).$((took % 1000 / 100)) s) ===="
    exit 1
fi
echo "==== $name: passed ($accel, $((took / 1000)).$((took % 1000 / 100)) s; log $saved) ===="
