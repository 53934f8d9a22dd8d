#!/bin/bash
# images/build.sh: builds the nicstorm Debian bookworm guest image, or finds it in the cache.
#
# Contract (docs/ARCHITECTURE.md "Guest image"): the recipe is every file under images/; its
# hash names $CACHE/images/bookworm-<hash12>/, which holds vmlinuz, initrd.img, rootfs.qcow2
# and manifest.json. The LAST line of stdout is that directory; all progress goes to stderr.
# A build happens in a temp dir beside it and is renamed into place, so a directory with
# that name is always complete.
#
# Environment: NICSTORM_CACHE (else $XDG_CACHE_HOME/nicstorm, else ~/.cache/nicstorm);
# NICSTORM_ROOTFS_SIZE (ext4 size, default 2G; the qcow2 stays sparse);
# NICSTORM_IMAGE_LOCK_WAIT_S (how long to wait for a concurrent build, default 3600).
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
suite=bookworm
rootfs_size=${NICSTORM_ROOTFS_SIZE:-2G}

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

if [[ -n ${NICSTORM_CACHE:-} ]]; then
	cache=$NICSTORM_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/nicstorm
else
	cache=${HOME:?neither NICSTORM_CACHE, XDG_CACHE_HOME nor HOME is set}/.cache/nicstorm
fi

# The recipe's hash (scripts/recipe-hash.sh: names, contents and executable bits, as git
# records them, so every checkout of one commit agrees whatever its umask) of every file under
# images/ that goes into the image, so that any change to the recipe (including an executable
# bit) produces a new image directory. Documentation, the boot test and the boot benchmark do
# not shape the image and are left out, so editing them does not cost a rebuild.
recipe_hash() {
	"$repo/scripts/recipe-hash.sh" "$1" '*.md' boot-test.sh bench-boot.sh
}

is_complete() {
	local f
	for f in vmlinuz initrd.img initrd-debian.img rootfs.qcow2 manifest.json; do
		[[ -s $1/$f ]] || return 1
	done
}

hash=$(recipe_hash "$here")
out=$cache/images/$suite-${hash:0:12}
if is_complete "$out"; then
	log "cache hit"
	echo "$out"
	exit 0
fi

((EUID == 0)) || die "building the image needs root (mmdebstrap --mode=root keeps file ownership for mkfs.ext4 -d)"
for tool in mmdebstrap mkfs.ext4 qemu-img apt-get dpkg-query flock; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap e2fsprogs qemu-utils)"
done

mkdir -p "$cache/images"
exec 9>"$cache/images/.build.lock"
lock_wait=${NICSTORM_IMAGE_LOCK_WAIT_S:-3600}
flock -w "$lock_wait" 9 || die "another build holds $cache/images/.build.lock for more than ${lock_wait}s"
# A concurrent build may have produced it while we waited.
if is_complete "$out"; then
	log "cache hit (built concurrently)"
	echo "$out"
	exit 0
fi

# --one-file-system: if mmdebstrap died with /proc, /sys or /dev still mounted in the chroot,
# never descend into them.
remove_tree() { rm -rf --one-file-system -- "$1"; }
# Temp dirs are only created under the lock, so any found now belong to a dead build.
for stale in "$cache/images/.tmp-"*; do
	[[ -e $stale ]] || continue
	log "removing leftover $stale"
	remove_tree "$stale" || die "cannot remove $stale; a killed mmdebstrap may have left mounts in it (see /proc/mounts)"
done
[[ -e $out ]] && remove_tree "$out"

tmp=$(mktemp -d "$cache/images/.tmp-$suite-${hash:0:12}.XXXXXX")
trap 'remove_tree "$tmp"' EXIT
root=$tmp/root
dest=$tmp/image
mkdir -p "$dest"
started=$(date +%s.%N)

# Build from a snapshot, so that an edit to images/ during the build cannot end up in an
# image named after the old hash.
recipe=$tmp/recipe
cp -a "$here/." "$recipe"
# The hash sees only the owner's x bit, so neither may the image: the hooks copy rootfs/ with
# its modes, which would otherwise follow this checkout's umask (664 here, 644 there).
find "$recipe" -type d -exec chmod 0755 {} +
find "$recipe" -type f -perm -u=x -exec chmod 0755 {} +
find "$recipe" -type f ! -perm -u=x -exec chmod 0644 {} +
[[ $(recipe_hash "$recipe") == "$hash" ]] || die "images/ changed while the build started; run it again"

# The mirrors this host's apt already uses for the suite: no other host is contacted.
# shellcheck disable=SC2016 # $(...) are apt's format fields, not shell.
mapfile -t mirrors < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
	'Created-By: Packages' | awk -v s="$suite" '$2 ~ "^" s "(-updates|-security)?$" && $3 == "main" {
		print "deb " $1 " " $2 " main" }' | sort -u)
((${#mirrors[@]})) || die "host apt has no '$suite' main source (see /etc/apt/sources.list*)"
log "mirrors: ${mirrors[*]}"

mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$recipe/packages.txt")
include=$(IFS=,; echo "${pkgs[*]}")

log "mmdebstrap $suite minbase + ${#pkgs[@]} packages into $root"
mmdebstrap --mode=root --variant=minbase --include="$include" \
	--aptopt='Apt::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--essential-hook="$(printf '%q' "$recipe/hooks/essential.sh") \"\$1\"" \
	--customize-hook="$(printf '%q' "$recipe/hooks/customize.sh") \"\$1\"" \
	"$suite" "$root" "${mirrors[@]}" >&2

mapfile -t kernels < <(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n')
((${#kernels[@]} == 1)) || die "expected one kernel in $root/boot, found: ${kernels[*]:-none}"
kver=${kernels[0]#vmlinuz-}
install -m 0644 "$root/boot/vmlinuz-$kver" "$dest/vmlinuz"
# Debian's initramfs-tools initrd: kept for comparing boot times (images/README.md), not booted.
install -m 0644 "$root/boot/initrd.img-$kver" "$dest/initrd-debian.img"

# nicstorm's initrd: busybox, the modules root on virtio-blk + ext4 needs (each after its
# dependencies, from modules.dep), and images/initrd/init. Uncompressed: under TCG the guest
# kernel unpacks a 4 MB cpio faster than it decompresses a 2 MB one.
initrd_modules=(virtio_pci virtio_blk crc32c_generic ext4)
moddir=$root/lib/modules/$kver
ird=$root/tmp/nicstorm-initrd
mkdir -p "$ird"/{bin,proc,sys,dev,newroot,modules}
install -m 0755 "$root/bin/busybox" "$ird/bin/busybox"
for applet in sh mount umount insmod switch_root sleep cat echo poweroff cp; do
	ln -s busybox "$ird/bin/$applet"
done
install -m 0755 "$recipe/initrd/init" "$ird/init"
declare -A loaded=()
# add_module PATH (relative to $moddir): its dependencies first, then itself, each once.
add_module() {
	local rel=$1 dep
	[[ -n ${loaded[$rel]:-} ]] && return
	loaded[$rel]=1
	for dep in $(awk -v m="$rel:" '$1 == m { $1 = ""; print }' "$moddir/modules.dep"); do
		add_module "$dep"
	done
	install -m 0644 "$moddir/$rel" "$ird/modules/"
	basename "$rel" >>"$ird/modules/order"
}
for m in "${initrd_modules[@]}"; do
	rel=$(awk -v m="/$m.ko:" 'index($1, m) { sub(":$", "", $1); print $1 }' "$moddir/modules.dep")
	[[ -n $rel ]] || die "kernel $kver has no module $m for the initrd"
	add_module "$rel"
done
log "initrd modules: $(tr '\n' ' ' <"$ird/modules/order")"
# cpio from the chroot (initramfs-tools depends on it), so the host needs no cpio.
chroot "$root" sh -c 'cd /tmp/nicstorm-initrd && find . | LC_ALL=C sort | cpio -o -H newc --quiet' >"$dest/initrd.img"
rm -rf "$ird"
# The guest boots them from outside; inside they would only take space.
rm -f "$root/boot/vmlinuz-$kver" "$root/boot/initrd.img-$kver" "$root/vmlinuz" "$root/initrd.img" \
	"$root/vmlinuz.old" "$root/initrd.img.old"

packages_json=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Abbrev} ${Package}=${Version}\n' |
	awk '$1 == "ii" { printf "%s\"%s\"", (n++ ? "," : ""), $2 }')

log "mkfs.ext4 ($rootfs_size, $(du -sh "$root" | cut -f1) used) and qemu-img convert"
mkfs.ext4 -q -F -L nicstorm -m 0 -d "$root" "$tmp/root.raw" "$rootfs_size" >&2
remove_tree "$root"
qemu-img convert -f raw -O qcow2 "$tmp/root.raw" "$dest/rootfs.qcow2" >&2
rm -f "$tmp/root.raw"
chmod 0644 "$dest/rootfs.qcow2"

finished=$(date +%s.%N)
build_seconds=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
printf '{"recipe_hash":"%s","kernel":"%s","built_at":"%s","build_seconds":%s,"packages":[%s]}\n' \
	"$hash" "$kver" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$build_seconds" "$packages_json" \
	>"$dest/manifest.json"
chmod 0755 "$dest"

mv -T "$dest" "$out"
log "built $out in ${build_seconds}s (kernel $kver)"
echo "$out"
