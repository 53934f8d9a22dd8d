#!/bin/bash
# emulators/build.sh: builds qemu-system-x86_64 from Debian's source package of the host's
# installed qemu-system-x86, with a recipe's patches on top, or finds it in the cache.
#
# Usage:
#   emulators/build.sh NAME            build recipe emulators/NAME/ (or find it in the cache)
#   emulators/build.sh --check [NAME…] apply each recipe's patches to a scratch copy of the
#                                      files they touch in the current Debian source (no
#                                      build); every recipe when no NAME is given
#   emulators/build.sh --list          the recipe names, one a line
#   emulators/build.sh --deps          install the build dependencies that do not run (root)
#   emulators/build.sh --print-deps    the build dependencies' Debian packages, one a line
#
# Contract (emulators/README.md): the recipe is emulators/NAME/ (README.md, patches/*.patch).
# Its key — a hash of the recipe's files (README.md left out), of this script (it holds the
# configure options) and of the Debian source version — names $CACHE/emulators/NAME-<hash12>/,
# which holds bin/qemu-system-x86_64, manifest.json, the applied patches and the build log.
# The LAST line of stdout is that directory; all progress goes to stderr. A build happens in
# a temp dir beside it and is renamed into place, so a directory with that name is complete.
# "system" is not a recipe: it names the host's own /usr/bin/qemu-system-x86_64.
#
# Environment: NICSTORM_CACHE (else $XDG_CACHE_HOME/nicstorm, else ~/.cache/nicstorm);
# NICSTORM_EMULATOR_LOCK_WAIT_S (how long to wait for a concurrent build, default 3600);
# NICSTORM_BUILD_JOBS (ninja -j, default: the number of CPUs).
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
repo=$(cd "$here/.." && pwd)
# Debian's ROM directories (qemu-system-data, seabios, ipxe-qemu): the source tarball has no
# ROMs, so the binary looks them up where Debian's own qemu-system-x86_64 does.
firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu

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
ecache=$cache/emulators

# ---------------------------------------------------------------------------------------------
# Build dependencies: tool | Debian package | a command that proves it works. Found by starting
# from nothing on Debian 12 and adding what configure asked for (emulators/README.md).
deps=(
	"cc|gcc|cc --version"
	"make|make|make --version"
	"python3|python3|python3 --version"
	"meson|meson|meson --version"
	"ninja|ninja-build|ninja --version"
	"pkg-config|pkg-config|pkg-config --version"
	"glib-2.0|libglib2.0-dev|pkg-config --exists 'glib-2.0 >= 2.56' gthread-2.0 gmodule-2.0"
	"pixman-1|libpixman-1-dev|pkg-config --exists pixman-1"
	"slirp|libslirp-dev|pkg-config --exists slirp"
	"zlib|zlib1g-dev|pkg-config --exists zlib"
	"libfdt|libfdt-dev|printf '#include <libfdt.h>\\nint main(void) { return fdt_check_header(0); }\\n' | cc -x c - -lfdt -o {tmp}/fdt"
	"dpkg-source|dpkg-dev|dpkg-source --version"
	"patch|patch|patch --version"
	"xz|xz-utils|xz --version"
	"flock|util-linux|flock -V"
)

# Prints "tool package" for every dependency that is missing or fails when run.
broken_deps() {
	local tmp line tool pkg cmd
	tmp=$(mktemp -d)
	for line in "${deps[@]}"; do
		IFS='|' read -r tool pkg cmd <<<"$line"
		cmd=${cmd//\{tmp\}/$tmp}
		if ! command -v "${cmd%% *}" >/dev/null 2>&1 || ! eval "$cmd" >/dev/null 2>&1 </dev/null; then
			printf '%s %s\n' "$tool" "$pkg"
		fi
	done
	rm -rf "$tmp"
}

# Installs the packages of the dependencies that do not run; quiet when all run. Also the
# entry point for scripts/setup-host.sh (`emulators/build.sh --deps`).
install_deps() {
	local broken pkgs
	broken=$(broken_deps)
	[[ -z $broken ]] && return 0
	((EUID == 0)) || die "build dependencies do not run: $(awk '{print $1 " (" $2 ")"}' <<<"$broken" | paste -sd' ');" \
		"install them as root: emulators/build.sh --deps"
	command -v apt-get >/dev/null || die "build dependencies do not run and there is no apt-get: $(tr '\n' ' ' <<<"$broken")"
	mapfile -t pkgs < <(awk '{print $2}' <<<"$broken" | sort -u)
	log "installing build dependencies: ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >&2
	broken=$(broken_deps)
	[[ -z $broken ]] || die "still do not run after installing: $(tr '\n' ' ' <<<"$broken")"
}

# ---------------------------------------------------------------------------------------------
# Recipes

recipes() {
	local d
	for d in "$here"/*/; do
		[[ -f $d/README.md ]] && basename "$d"
	done
}

# Dies unless $1 names a recipe directory; prints nothing.
check_recipe_name() {
	local name=$1
	[[ $name == system ]] && die "'system' is not a recipe: it means the host's own qemu-system-x86_64 (nothing to build)"
	[[ $name =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "recipe name '$name': use lower-case letters, digits, '.' and '-'"
	[[ -d $here/$name ]] || die "recipe '$name' not found: no directory emulators/$name/ (recipes: $(recipes | paste -sd' '))"
	[[ -f $here/$name/README.md ]] || die "recipe '$name' has no README.md (say what it changes and why)"
	local f
	for f in "$here/$name"/patches/*; do
		[[ -e $f ]] || continue
		[[ $f == *.patch && -f $f ]] || die "recipe '$name': patches/ holds only *.patch files, found $(basename "$f")"
	done
}

# The recipe's patches, in the order they are applied (by name), one path a line.
recipe_patches() {
	find "$1/patches" -maxdepth 1 -type f -name '*.patch' 2>/dev/null | sort
}

# Hash of the recipe's files (scripts/recipe-hash.sh: names, contents and executable bits, as
# git records them, so every checkout of one commit agrees whatever its umask; README.md and
# other *.md left out, they do not shape the binary), of this script (configure options and
# steps) and of the Debian source version.
recipe_hash() {
	local dir=$1 version=$2 files
	files=$("$repo/scripts/recipe-hash.sh" "$dir" '*.md')
	{
		printf 'recipe %s\n' "$files"
		printf 'build.sh %s\n' "$(sha256sum <"$self" | cut -c1-64)"
		printf 'debian-source qemu %s\n' "$version"
	} | sha256sum | cut -c1-64
}

# ---------------------------------------------------------------------------------------------
# Debian source

# The source version of the installed qemu-system-x86 (a binNMU "+bN" suffix belongs to the
# binary only), e.g. 1:7.2+dfsg-7+deb12u18.
debian_source_version() {
	local status version
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' qemu-system-x86 2>/dev/null || true)
	[[ $status == ii* ]] || die "qemu-system-x86 is not installed: the recipes patch the host's QEMU (apt-get install qemu-system-x86)"
	version=$(dpkg-query -W -f='${source:Version}' qemu-system-x86)
	[[ -n $version ]] || die "cannot read the source version of qemu-system-x86"
	printf '%s\n' "$version"
}

# Upstream version inside the Debian version: the VERSION file of the source tree.
src_dir_for() { printf '%s/src/qemu_%s\n' "$ecache" "${1//:/_}"; }

have_source_index() {
	apt-cache showsrc --only-source qemu 2>/dev/null | awk '/^Version:/ {print $2}' | grep -qxF -- "$1"
}

# Writes $sourceparts/nicstorm-deb-src.sources: a deb-src twin (same URIs, Suites, Components,
# Signed-By) of every apt sources entry that offers qemu-system-x86, then runs apt-get update.
enable_deb_src() {
	local version=$1 parts file entries
	((EUID == 0)) || die "the Debian source of qemu $version is not in apt's deb-src indexes; enabling deb-src needs root"
	# shellcheck disable=SC2016 # $(...) are apt's format fields, not shell.
	entries=$(apt-get indextargets --format '$(REPO_URI)|$(RELEASE)|$(COMPONENT)|$(SOURCESENTRY)' 'Created-By: Packages')
	[[ -n $entries ]] || die "apt has no 'deb' sources at all (see /etc/apt/sources.list*)"
	# "URI suite" pairs that carry the qemu-system-x86 binary package, from apt-cache policy.
	local carriers
	carriers=$(apt-cache policy qemu-system-x86 | awk '$1 ~ /^[0-9]+$/ && $2 ~ /:\/\// { sub(/\/$/, "", $2); split($3, a, "/"); print $2, a[1] }' | sort -u)
	[[ -n $carriers ]] || die "no apt source offers qemu-system-x86 (see apt-cache policy qemu-system-x86)"
	eval "$(apt-config shell parts Dir::Etc::sourceparts/d)"
	[[ -n ${parts:-} && -d $parts ]] || die "cannot find apt's sources.list.d (apt-config Dir::Etc::sourceparts)"
	file=${parts%/}/nicstorm-deb-src.sources
	python3 - "$file" "$entries" "$carriers" <<'EOF' || die "could not write $file"
import re, sys
out, entries, carriers = sys.argv[1], sys.argv[2], sys.argv[3]
carry = {tuple(l.split()) for l in carriers.splitlines() if l.strip()}
groups = {}  # sources entry -> {uris, suites, comps}
for line in entries.splitlines():
    uri, suite, comp, entry = line.split("|")
    g = groups.setdefault(entry, {"uris": [], "suites": [], "comps": [], "carries": False})
    for k, v in (("uris", uri), ("suites", suite), ("comps", comp)):
        if v not in g[k]:
            g[k].append(v)
    if (uri.rstrip("/"), suite) in carry:
        g["carries"] = True

def signed_by(entry):
    path, _, num = entry.rpartition(":")
    num = int(num)
    text = open(path).read()
    if path.endswith(".sources"):
        stanzas = [s for s in re.split(r"\n\s*\n", text) if re.search(r"^\w", s, re.M)]
        stanza = stanzas[num - 1]
        m = re.search(r"^Signed-By:(.*(?:\n[ \t].*)*)", stanza, re.M | re.I)
        return m.group(1).strip("\n") if m else None
    line = text.splitlines()[num - 1]
    m = re.search(r"\[([^]]*)\]", line)
    if m:
        for opt in m.group(1).split():
            k, _, v = opt.partition("=")
            if k.lower() == "signed-by":
                return " " + v
    return None

stanzas = []
for entry, g in groups.items():
    if not g["carries"]:
        continue
    s = ["# deb-src twin of %s, written by nicstorm emulators/build.sh" % entry,
         "Types: deb-src", "URIs: " + " ".join(g["uris"]),
         "Suites: " + " ".join(g["suites"]), "Components: " + " ".join(g["comps"])]
    sb = signed_by(entry)
    if sb:
        s.append("Signed-By:" + sb)
    stanzas.append("\n".join(s))
if not stanzas:
    sys.exit("no sources entry carries qemu-system-x86")
open(out, "w").write("\n\n".join(stanzas) + "\n")
EOF
	log "wrote $file (deb-src for the apt sources that offer qemu-system-x86); apt-get update"
	sed 's/^/build.sh:   /' "$file" >&2
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "apt-get update failed after writing $file"
}

# Makes sure the dpkg-source extracted tree of qemu=$1 is in the cache (call under the lock).
# apt-get source runs dpkg-source -x, which applies Debian's patches (debian/patches/series).
ensure_source() {
	local version=$1 dest stmp
	dest=$(src_dir_for "$version")
	[[ -f $dest/.nicstorm-source ]] && return 0
	if ! have_source_index "$version"; then
		enable_deb_src "$version"
		have_source_index "$version" || die "the Debian source qemu=$version is in no deb-src index" \
			"(the mirror may have moved to a newer point release; upgrade qemu-system-x86, or fetch it from snapshot.debian.org)"
	fi
	mkdir -p "$ecache/src"
	rm -rf "$ecache/src/.tmp-"*
	stmp=$(mktemp -d "$ecache/src/.tmp-qemu.XXXXXX")
	chmod 0755 "$stmp"
	log "apt-get source qemu=$version"
	if ! (cd "$stmp" && apt-get source --only-source -qq "qemu=$version") >"$stmp/apt-get-source.log" 2>&1; then
		tail -n 20 "$stmp/apt-get-source.log" | sed 's/^/build.sh:   /' >&2
		rm -rf "$stmp"
		die "apt-get source qemu=$version failed"
	fi
	local tree
	tree=$(find "$stmp" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' -print -quit)
	[[ -n $tree && -f $tree/VERSION && -f $tree/debian/changelog ]] || die "apt-get source qemu=$version left no source tree in $stmp"
	[[ $(cd "$tree" && dpkg-parsechangelog -SVersion) == "$version" ]] || die "the source tree in $tree is not qemu $version"
	{
		printf 'apt-get source --only-source qemu=%s\n' "$version"
		(cd "$stmp" && sha256sum -- *.dsc *.tar.*)
	} >"$tree/.nicstorm-source"
	rm -rf "$tree/.pc"
	mv -T "$tree" "$dest"
	rm -rf "$stmp"
	log "Debian source qemu $version (upstream $(<"$dest/VERSION")) in $dest"
}

# Applies the patches ($2...) in order in the tree $1 with patch -p1, refusing fuzz; the output
# goes to stdout. Returns non-zero at the first patch that does not apply (its name on stderr).
apply_patches() {
	local tree=$1 p
	shift
	for p in "$@"; do
		printf '== %s\n' "$(basename "$p")"
		if ! patch -d "$tree" -p1 --fuzz=0 --forward --batch --no-backup-if-mismatch -r - <"$p"; then
			printf '%s\n' "$(basename "$p")" >&2
			return 1
		fi
	done
}

lock_cache() {
	mkdir -p "$ecache"
	exec 9>"$ecache/.build.lock"
	local wait=${NICSTORM_EMULATOR_LOCK_WAIT_S:-3600}
	flock -w "$wait" 9 || die "another build holds $ecache/.build.lock for more than ${wait}s"
}

# ---------------------------------------------------------------------------------------------
# --check: do the recipes' patches still apply to the current Debian source?

check_recipes() {
	local names=("$@") version name failed=0
	((${#names[@]})) || mapfile -t names < <(recipes)
	for name in "${names[@]}"; do check_recipe_name "$name"; done
	version=$(debian_source_version)
	if [[ ! -f $(src_dir_for "$version")/.nicstorm-source ]]; then
		lock_cache
		ensure_source "$version"
		exec 9>&-
	fi
	local src
	src=$(src_dir_for "$version")
	scratch=$(mktemp -d) # global: the EXIT trap runs after this function returned
	trap 'rm -rf "$scratch"' EXIT
	for name in "${names[@]}"; do
		local patches=() files=() f out
		mapfile -t patches < <(recipe_patches "$here/$name")
		if ((${#patches[@]} == 0)); then
			log "recipe $name: no patches (Debian qemu $version as is): ok"
			continue
		fi
		# The files the patches touch, copied from the source: applying in sequence there is
		# patch --dry-run for a series, in milliseconds.
		mapfile -t files < <(sed -n -E 's#^(---|\+\+\+) [ab]/([^\t ]+).*#\2#p' "${patches[@]}" | sort -u)
		rm -rf "${scratch:?}/$name"
		mkdir -p "$scratch/$name"
		for f in "${files[@]}"; do
			[[ -e $src/$f ]] || continue
			mkdir -p "$scratch/$name/$(dirname "$f")"
			cp -p "$src/$f" "$scratch/$name/$f"
		done
		if out=$(apply_patches "$scratch/$name" "${patches[@]}" 2>&1); then
			log "recipe $name: ${#patches[@]} patch(es) apply to Debian qemu $version: ok"
		else
			failed=1
			log "ERROR: recipe $name: step check-patches: $(tail -n 1 <<<"$out") does not apply to Debian qemu $version:"
			# shellcheck disable=SC2001 # a prefix on every line
			sed 's/^/build.sh:   /' <<<"$out" >&2
		fi
	done
	return "$failed"
}

# ---------------------------------------------------------------------------------------------
# Build

is_complete() {
	[[ -x $1/bin/qemu-system-x86_64 && -s $1/manifest.json ]]
}

build_recipe() {
	local name=$1 version hash out
	check_recipe_name "$name"
	version=$(debian_source_version)
	hash=$(recipe_hash "$here/$name" "$version")
	out=$ecache/$name-${hash:0:12}
	if is_complete "$out"; then
		log "cache hit"
		echo "$out"
		return 0
	fi

	install_deps
	lock_cache
	if is_complete "$out"; then
		log "cache hit (built concurrently)"
		echo "$out"
		return 0
	fi
	local stale
	for stale in "$ecache/.tmp-"*; do
		[[ -e $stale ]] || continue
		log "removing leftover $stale"
		rm -rf "$stale"
	done
	[[ -e $out ]] && rm -rf "$out"

	local started
	started=$(date +%s.%N)
	# Globals, not locals: the EXIT trap runs after this function has returned.
	tmp=$(mktemp -d "$ecache/.tmp-$name-${hash:0:12}.XXXXXX")
	failedlog=$ecache/$name-${hash:0:12}.failed.log
	buildlog=$tmp/build.log
	# On failure keep the log beside the cache; always remove the temp dir.
	trap 'rc=$?; if ((rc)) && [[ -f $buildlog ]]; then cp "$buildlog" "$failedlog"; fi; rm -rf "$tmp"; exit $rc' EXIT
	: >"$buildlog"

	# step NAME CMD...: runs CMD with its output in the build log; on failure names the recipe
	# and the step, and shows the end of the log.
	step() {
		local what=$1 t0 rc=0
		shift
		t0=$(date +%s.%N)
		printf '\n==== step %s: %s\n' "$what" "$*" >>"$buildlog"
		"$@" >>"$buildlog" 2>&1 || rc=$?
		if ((rc)); then
			tail -n 25 "$buildlog" | sed 's/^/build.sh:   /' >&2
			die "recipe $name: step $what failed (exit $rc); full log: $failedlog"
		fi
		step_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
		log "recipe $name: $what done in ${step_seconds}s"
	}

	# Build from a snapshot of the recipe, so an edit during the build cannot end up in a
	# directory named after the old hash.
	cp -a "$here/$name/." "$tmp/recipe"
	[[ $(recipe_hash "$tmp/recipe" "$version") == "$hash" ]] || die "emulators/$name changed while the build started; run it again"
	local patches=()
	mapfile -t patches < <(recipe_patches "$tmp/recipe")

	ensure_source "$version"
	local src upstream
	src=$(src_dir_for "$version")
	upstream=$(<"$src/VERSION")

	log "recipe $name: Debian qemu $version (upstream $upstream), ${#patches[@]} patch(es); log: $buildlog"
	step copy-source cp -a --reflink=auto "$src" "$tmp/src"
	step apply-patches apply_patches "$tmp/src" "${patches[@]}"

	local configure_args=(
		--prefix=/opt/nicstorm-emulator # not /usr: see the firmware path note in README.md
		--meson=meson
		--with-git-submodules=ignore
		--target-list=x86_64-softmmu
		--without-default-features
		--enable-tcg --enable-kvm
		--enable-slirp
		--enable-vhost-net --enable-vhost-kernel
		--enable-fdt=system
		--disable-docs --disable-tools --disable-guest-agent
		--disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-spice --disable-virglrenderer
		--disable-capstone
		--disable-curl --disable-libiscsi --disable-libnfs --disable-rbd --disable-glusterfs --disable-libssh
		--disable-install-blobs
		--firmwarepath="$firmwarepath"
		--with-pkgversion="Debian $version, nicstorm $name"
	)
	mkdir -p "$tmp/build"
	# shellcheck disable=SC2016 # $1 and $@ belong to the inner bash
	step configure bash -c 'cd "$1" && shift && "$@"' _ "$tmp/build" "$tmp/src/configure" "${configure_args[@]}"
	local configure_seconds=$step_seconds
	local jobs=${NICSTORM_BUILD_JOBS:-$(nproc)}
	step ninja ninja -C "$tmp/build" -j "$jobs" qemu-system-x86_64
	local ninja_seconds=$step_seconds

	local dest=$tmp/out
	mkdir -p "$dest/bin" "$dest/patches"
	install -m 0755 "$tmp/build/qemu-system-x86_64" "$dest/bin/qemu-system-x86_64"
	local p
	for p in "${patches[@]}"; do install -m 0644 "$p" "$dest/patches/"; done
	step verify verify_binary "$dest/bin/qemu-system-x86_64" "$upstream" "$version" "$name" "$tmp/roms.txt"

	local finished build_seconds qemu_version
	finished=$(date +%s.%N)
	build_seconds=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
	qemu_version=$("$dest/bin/qemu-system-x86_64" --version | head -n 1)
	python3 - "$dest/manifest.json" "$name" "$hash" "$version" "$upstream" "$qemu_version" \
		"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$build_seconds" "$configure_seconds" "$ninja_seconds" \
		"$firmwarepath" "$src/.nicstorm-source" "$tmp/roms.txt" "${patches[@]}" <<'EOF'
import hashlib, json, os, sys
(out, name, rhash, deb, upstream, qver, built_at, total, conf, ninja, fwpath, srcfile,
 romsfile), patches = sys.argv[1:14], sys.argv[14:]
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
src = [l.split() for l in open(srcfile).read().splitlines()[1:] if l.strip()]
m = {
    "name": name,
    "recipe_hash": rhash,
    "debian_version": deb,
    "upstream_version": upstream,
    "qemu_version": qver,
    "built_at": built_at,
    "build_seconds": float(total),
    "configure_seconds": float(conf),
    "ninja_seconds": float(ninja),
    "patches": [{"file": os.path.basename(p), "sha256": sha(p)} for p in patches],
    "debian_source_files": [{"file": f, "sha256": h} for h, f in src],
    "firmware_path": fwpath.split(":"),
    "firmware": dict(l.split(" ", 1) for l in open(romsfile).read().splitlines() if l),
}
with open(out, "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
EOF
	cp "$buildlog" "$dest/build.log"
	chmod -R u=rwX,go=rX "$dest"
	mv -T "$dest" "$out"
	rm -f "$failedlog"
	log "built $out in ${build_seconds}s (configure ${configure_seconds}s, ninja ${ninja_seconds}s): $qemu_version"
	echo "$out"
}

# verify_binary BIN UPSTREAM DEBVERSION NAME ROMSFILE: the binary runs, says what it is, searches
# Debian's ROM directories, and starts with every NIC model nicstorm offers (a PCI option ROM
# that cannot be found is fatal when the device is realized, before -S takes effect). ROMSFILE
# gets "file path" for the firmware a nicstorm guest needs, resolved as QEMU does (the first
# data directory, in -L help order, that holds it).
verify_binary() {
	local bin=$1 upstream=$2 version=$3 name=$4 roms=$5 first dirs d f out
	first=$("$bin" --version | head -n 1)
	printf '%s\n' "$first"
	[[ $first == "QEMU emulator version $upstream (Debian $version, nicstorm $name)" ]] ||
		{ echo "unexpected --version: $first"; return 1; }
	dirs=$("$bin" -L help)
	printf 'data dirs (-L help):\n%s\n' "$dirs"
	for d in ${firmwarepath//:/ }; do
		grep -qxF "$d" <<<"$dirs" || { echo "firmware dir $d is not searched"; return 1; }
	done
	: >"$roms"
	for f in bios-256k.bin kvmvapic.bin linuxboot_dma.bin vgabios-stdvga.bin efi-virtio.rom \
		efi-e1000.rom efi-e1000e.rom efi-vmxnet3.rom efi-rtl8139.rom; do
		while read -r d; do
			[[ -f $d/$f ]] && { printf '%s %s\n' "$f" "$d/$f" >>"$roms"; continue 2; }
		done <<<"$dirs"
		echo "$f is in none of the data dirs (packages seabios, ipxe-qemu, qemu-system-data)"
		return 1
	done
	cat "$roms"
	local qmp=('{"execute":"qmp_capabilities"}' '{"execute":"quit"}')
	# shellcheck disable=SC2054 # the commas are QEMU's
	local run=(timeout 120 "$bin" -machine pc,accel=tcg -nodefaults -no-user-config -display none -S -qmp stdio)
	out=$(printf '%s\n' "${qmp[@]}" | "${run[@]}" -device virtio-net-pci -device e1000 -device e1000e \
		-device vmxnet3 -device rtl8139 -vga std 2>&1) ||
		{ printf '%s\n' "$out"; echo "QEMU did not start with virtio-net-pci, e1000, e1000e, vmxnet3, rtl8139"; return 1; }
	printf '%s\n' "$out"
	# Control: a ROM that does not exist must stop it, or the start above proved nothing.
	out=$(printf '%s\n' "${qmp[@]}" | "${run[@]}" -device e1000,romfile=nicstorm-no-such.rom 2>&1) &&
		{ printf '%s\n' "$out"; echo "QEMU started with a missing option ROM"; return 1; }
	printf '%s\n' "$out"
	grep -q 'failed to find romfile "nicstorm-no-such.rom"' <<<"$out" ||
		{ echo "the missing-ROM control failed for another reason"; return 1; }
}

# ---------------------------------------------------------------------------------------------

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self" >&2
	exit 2
}

(($#)) || usage
case $1 in
--list)
	recipes
	;;
--print-deps)
	for line in "${deps[@]}"; do IFS='|' read -r _ pkg _ <<<"$line"; echo "$pkg"; done | sort -u
	;;
--deps)
	install_deps
	log "build dependencies run"
	;;
--check)
	shift
	check_recipes "$@"
	;;
-h | --help)
	usage
	;;
-*)
	die "unknown option $1 (see emulators/build.sh --help)"
	;;
*)
	(($# == 1)) || die "one recipe name at a time (see emulators/build.sh --help)"
	build_recipe "$1"
	;;
esac
