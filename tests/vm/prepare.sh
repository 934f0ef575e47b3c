#!/bin/bash
# Prepares what tests/vm/run.sh boots: QEMU, a Debian kernel (it has GRE,
# unlike many CI kernels) as an uncompressed vmlinux, and a base initramfs with
# busybox, iproute2 and the tunnel modules. The kernel is the release's own
# (`stock`, the default) or the newer one of its backports (`backports`).
# Idempotent, cached per kernel, safe to race. Needs root on a Debian
# machine: it installs packages.
set -euo pipefail

usage() {
    echo "usage: prepare.sh [--kernel stock|backports]" >&2
    exit 2
}
kernel=stock
case $# in
0) ;;
2) [ "$1" = --kernel ] || usage; kernel=$2 ;;
*) usage ;;
esac
case $kernel in stock | backports) ;; *) usage ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GRELAB_VM_CACHE:-/var/cache/grelab-vm}
# Modules the VM needs; their dependencies are added from the .ko files.
wanted=(veth tun gre ip_tunnel ip_gre tunnel6 ip6_tunnel ip6_gre af_packet ipv6 bridge sch_netem sch_tbf)
key=$(cat "$here/prepare.sh" "$here/init" | sha256sum | cut -c1-16)

say() { echo "prepare.sh: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$cache" || die "cannot create the cache directory $cache (run as root or set GRELAB_VM_CACHE)"
# One lock for both kernels: apt-get would not share the machine either.
exec 9>>"$cache/lock" || die "cannot open $cache/lock (run as root or set GRELAB_VM_CACHE)"
flock 9
out=$cache/$kernel

ready() {
    [ "$(cat "$out/ready" 2>/dev/null)" = "$key" ] && [ -s "$out/vmlinux" ] &&
        [ -s "$out/base.cpio.gz" ] && command -v qemu-system-x86_64 >/dev/null &&
        command -v busybox >/dev/null
}
ready && exit 0
[ "$(id -u)" = 0 ] || die "needs root to install packages and build the VM cache in $cache"
start=$(date +%s)

# --- Debian packages -------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
updated=
apt_update() {
    [ -n "$updated" ] && return 0
    "${apt[@]}" update >&2 || die "apt-get update failed; check the machine's Debian sources"
    updated=1
}
# Runs apt-get; when it fails with lists not refreshed yet (stale lists name
# files the mirror no longer has), refreshes them and tries once more.
apt_retry() {
    "${apt[@]}" "$@" >&2 && return 0
    [ -z "$updated" ] || return 1
    apt_update
    "${apt[@]}" "$@" >&2
}
installed() { [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# Prints the first URI of an enabled deb source serving suite $1 (one-line and deb822 files).
source_uri() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && awk -v s="$1" '/^[[:space:]]*deb[[:space:]]/ {
            sub(/\[[^]]*\]/, ""); if ($3 == s) { print $2; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk -v s="$1" 'BEGIN { RS = "" } {
            types = uris = suites = ""; enabled = "yes"
            n = split($0, line, "\n")
            for (i = 1; i <= n; i++) {
                if (line[i] ~ /^#/ || !match(line[i], /^[A-Za-z-]+:/)) continue
                k = tolower(substr(line[i], 1, RLENGTH - 1)); v = substr(line[i], RLENGTH + 1)
                if (k == "types") types = v; else if (k == "uris") uris = v
                else if (k == "suites") suites = v; else if (k == "enabled") enabled = v
            }
            if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " s " ") && enabled !~ /no/) {
                split(uris, u, " "); print u[1]; exit
            }
        }' "$f"
    done
    return 0
}

# shellcheck source=/dev/null
. /etc/os-release
codename=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release: not a Debian release}
backports=$codename-backports
# Adds $backports from the machine's own mirror if no source serves it.
add_backports() {
    [ -z "$(source_uri "$backports")" ] || return 0
    mirror=$(source_uri "$codename" | head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "adding $backports from $mirror"
    {
        echo "Types: deb"
        echo "URIs: $mirror"
        echo "Suites: $backports"
        echo "Components: main"
        [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ] ||
            echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    } >/etc/apt/sources.list.d/grelab-backports.sources
    apt_update
}
if ! installed qemu-system-x86; then
    # bookworm's QEMU would replace a newer qemu-utils from backports (the CI
    # image has one): take both from backports.
    add_backports
    apt_retry install --no-install-recommends -t "$backports" qemu-system-x86 qemu-utils ||
        die "cannot install qemu-system-x86 and qemu-utils from $backports"
fi
missing=()
for p in busybox-static iproute2 xz-utils zstd; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt_retry install --no-install-recommends "${missing[@]}" || die "cannot install ${missing[*]}"
fi

# --- the kernel --------------------------------------------------------------
release=()
[ "$kernel" = stock ] || { add_backports && release=(-t "$backports"); }
kernel_package() {
    apt-cache "${release[@]}" depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
kpkg=$(kernel_package)
[ -n "$kpkg" ] || { apt_update && kpkg=$(kernel_package); }
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-cache ${release[*]} depends linux-image-amd64)"
kver=${kpkg#linux-image-}
deb=$("${apt[@]}" download --print-uris "$kpkg" | awk '{ print $2; exit }')
[ -n "$deb" ] || die "apt-get cannot locate $kpkg"
# Named after this script's hash too: a change in how it extracts redoes it.
kdir=$out/kernel/${deb%.deb}-$(sha256sum <"$here/prepare.sh" | cut -c1-8)
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -f "$kdir/done" ]; then
    say "fetching $deb"
    # _apt must be able to write where apt-get download saves, else it warns.
    chown _apt "$work" 2>/dev/null || true
    (cd "$work" && apt_retry download "$kpkg") || die "cannot download $kpkg"
    [ -f "$work/$deb" ] || die "apt-get download did not produce $deb"
    mkdir "$work/x"
    # Tunnel modules live in kernel/net and kernel/drivers/net; anything else
    # needed is fetched by name below. -i: read past the archive's end blocks,
    # else dpkg-deb dies of SIGPIPE.
    extract() { dpkg-deb --fsys-tarfile "$work/$deb" | tar -xi -C "$work/x" --wildcards "$@"; }
    extract --no-wildcards-match-slash "./boot/vmlinuz-$kver" "./lib/modules/$kver/modules.builtin" \
        "./lib/modules/$kver/kernel/net/*" "./lib/modules/$kver/kernel/drivers/net/*.ko*" ||
        die "cannot extract $deb"
    mods=$work/x/lib/modules/$kver
    for f in "$work/x/boot/vmlinuz-$kver" "$mods/modules.builtin"; do
        [ -f "$f" ] || die "$deb lacks ${f#"$work"/x/}"
    done

    # Prints the path of module $1 (name with _ or -) under $mods, if extracted.
    ko_path() { find "$mods/kernel" -name "$1.ko*" -o -name "$(echo "$1" | tr _ -).ko*" | head -n 1; }
    builtin() { grep -Eq "/($1|$(echo "$1" | tr _ -))\.ko" "$mods/modules.builtin"; }
    # Transitive closure of the wanted modules over the "depends=" field.
    todo=("${wanted[@]}") chosen=()
    while [ ${#todo[@]} -gt 0 ]; do
        m=${todo[0]} todo=("${todo[@]:1}")
        case " ${chosen[*]} " in *" $m "*) continue ;; esac
        builtin "$m" && continue
        f=$(ko_path "$m")
        if [ -z "$f" ]; then
            extract "./lib/modules/$kver/kernel/*/$m.ko*" || true
            f=$(ko_path "$m")
        fi
        [ -n "$f" ] || die "module $m is neither in $deb nor built in"
        case $f in
        *.ko) ;;
        *.ko.xz) xz -d "$f" && f=${f%.xz} ;;
        *) die "$f: unsupported module compression" ;;
        esac
        chosen+=("$m")
        echo "${f#"$mods"/}" >>"$work/modules.list"
        deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n 1)
        IFS=, read -r -a more <<<"$deps"
        todo+=("${more[@]}")
    done

    mkdir -p "$work/k/lib/modules/$kver"
    cp "$mods/modules.builtin" "$work/k/lib/modules/$kver/"
    while read -r f; do
        mkdir -p "$work/k/lib/modules/$kver/$(dirname "$f")"
        cp "$mods/$f" "$work/k/lib/modules/$kver/$f"
    done <"$work/modules.list"

    # vmlinux: under TCG the bzImage spends seconds decompressing itself.
    # Payload offset and length are in the setup header (boot protocol 2.08+).
    bz=$work/x/boot/vmlinuz-$kver
    u() { od -An -t"u$1" -j "$2" -N "$1" "$bz" | tr -d ' '; }
    off=$((($(u 1 0x1f1) + 1) * 512 + $(u 4 0x248))) len=$(u 4 0x24c)
    payload() { dd if="$bz" iflag=skip_bytes,count_bytes skip="$off" count="$1" status=none; }
    # A zstd payload ends in the 4-byte size the kernel's build appends.
    case $(payload 6 | od -An -tx1 | tr -d ' ') in
    fd377a585a00) unpack() { payload "$len" | xz -dc --single-stream; } ;;
    28b52ffd*) unpack() { payload $((len - 4)) | zstd -dcq; } ;;
    *) unpack() { false; } ;;
    esac
    if unpack >"$work/k/vmlinux" &&
        [ "$(head -c 4 "$work/k/vmlinux" | od -An -c | tr -d ' ')" = 177ELF ]; then
        :
    else
        say "kernel payload is neither xz nor zstd: booting the bzImage (slower)"
        cp "$bz" "$work/k/vmlinux"
    fi
    echo "$kver" >"$work/k/version"
    touch "$work/k/done"
    rm -rf "$out/kernel"
    mkdir -p "$out/kernel"
    mv "$work/k" "$kdir"
fi

# --- the base initramfs ------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,var,etc,root,guest}
ln -s ../run "$root/var/run" # iproute2 keeps named namespaces in /var/run/netns
cp "$(command -v busybox)" "$root/bin/busybox"
ldd "$root/bin/busybox" >/dev/null 2>&1 && die "busybox is not static: install busybox-static"
for a in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
# iproute2's ip (busybox's lacks netns and veth), with its libraries.
ipbin=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v ip)
rm -f "$root/usr/sbin/ip" "$root/sbin/ip" "$root/bin/ip"
cp -L "$ipbin" "$root/usr/sbin/ip"
ln -s /usr/sbin/ip "$root/sbin/ip"
for lib in $(ldd "$ipbin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp -a "$kdir/lib/modules" "$root/lib/"
kver=$(cat "$kdir/version")
"$root/bin/busybox" depmod -b "$root" "$kver" || die "busybox depmod failed for $kver"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . -mindepth 1 | sed 's|^\./||' | busybox cpio -o -H newc -R 0:0 2>/dev/null) |
    gzip -6 >"$work/base.cpio.gz"

cp "$kdir/vmlinux" "$work/vmlinux"
mv "$work/vmlinux" "$out/vmlinux"
mv "$work/base.cpio.gz" "$out/base.cpio.gz"
echo "$key" >"$out/ready"
say "ready: kernel $kver in $out ($(($(date +%s) - start)) s)"
