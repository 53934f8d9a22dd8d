#!/bin/bash
# passt/build.sh: builds passt from a Debian source package per a recipe (passt/README.md),
# or finds it in the cache.
#
# Usage:
#   passt/build.sh NAME    build recipe passt/NAME/ (or find it in the cache); the LAST line
#                          of stdout is the directory holding bin/passt
#   passt/build.sh --list  the recipe names, one a line
#
# Environment: NICSTORM_CACHE (else $XDG_CACHE_HOME/nicstorm, else ~/.cache/nicstorm);
# NICSTORM_DEBIAN_MIRROR (default http://deb.debian.org/debian);
# NICSTORM_PASST_LOCK_WAIT_S (how long to wait for a concurrent build, default 600).
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
repo=$(cd "$here/.." && pwd)
mirror=${NICSTORM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'passt/build.sh: %s\n' "$*" >&2; }
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

recipes() {
	local d
	for d in "$here"/*/; do
		[[ -f $d/recipe.env ]] && basename "$d"
	done
}

if [[ ${1:-} == --list ]]; then
	recipes
	exit 0
fi
[[ $# -eq 1 ]] || die "usage: passt/build.sh NAME | --list"
name=$1
[[ $name == system ]] && die "'system' is not a recipe: it means the host's own passt (nothing to build)"
[[ $name =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "recipe name '$name': use lower-case letters, digits, '.' and '-'"
dir=$here/$name
[[ -f $dir/recipe.env ]] || die "recipe '$name' not found: no passt/$name/recipe.env (recipes: $(recipes | paste -sd' '))"
[[ -f $dir/README.md ]] || die "recipe '$name' has no README.md (say what it is and why)"

# recipe.env holds plain KEY=value lines; read them, never source them.
declare -A r=()
while IFS= read -r line; do
	[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
	[[ $line =~ ^([A-Z0-9_]+)=([^[:space:]]+)$ ]] || die "passt/$name/recipe.env: not KEY=value: $line"
	r[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
done <"$dir/recipe.env"
for k in VERSION ORIG ORIG_SHA256 DEBIAN DEBIAN_SHA256; do
	[[ -n ${r[$k]:-} ]] || die "passt/$name/recipe.env has no $k"
done
for k in ORIG_SHA256 DEBIAN_SHA256; do
	[[ ${r[$k]} =~ ^[0-9a-f]{64}$ ]] || die "passt/$name/recipe.env: $k is not a SHA-256"
done

hash=$({
	printf 'recipe %s\n' "$("$repo/scripts/recipe-hash.sh" "$dir" '*.md')"
	printf 'build.sh %s\n' "$(sha256sum <"$self" | cut -c1-64)"
} | sha256sum | cut -c1-64)
out=$cache/passt/$name-${hash:0:12}
if [[ -x $out/bin/passt && -s $out/manifest.json ]]; then
	log "cache hit"
	echo "$out"
	exit 0
fi

((EUID == 0)) || die "building passt needs root: nicstorm runs it as root, so only root may write it"
for tool in curl tar xz make cc patch flock sha256sum; do
	command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup-host.sh installs the build tools)"
done
[[ -d $cache/passt ]] || mkdir -p -m 0755 "$cache/passt"
exec 9>"$cache/passt/.$name.lock"
flock -w "${NICSTORM_PASST_LOCK_WAIT_S:-600}" 9 || die "another build of '$name' holds $cache/passt/.$name.lock"
if [[ -x $out/bin/passt && -s $out/manifest.json ]]; then
	log "built by a concurrent run"
	echo "$out"
	exit 0
fi
# Under the lock: what a killed build of this recipe left.
rm -rf "$cache/passt/.build-$name."*

tmp=$(mktemp -d "$cache/passt/.build-$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fetch() { # fetch PATH SHA256 -> $tmp/<file>
	local url=$mirror/$1 file=$tmp/$(basename "$1")
	log "fetching $url"
	curl -fsSL --retry 3 -o "$file" "$url" || die "fetching $url failed"
	local got
	got=$(sha256sum <"$file" | cut -c1-64)
	[[ $got == "$2" ]] || die "$url: SHA-256 $got, the recipe says $2"
}
fetch "${r[ORIG]}" "${r[ORIG_SHA256]}"
fetch "${r[DEBIAN]}" "${r[DEBIAN_SHA256]}"
mkdir "$tmp/src"
tar -xf "$tmp/$(basename "${r[ORIG]}")" -C "$tmp/src" --strip-components=1
tar -xf "$tmp/$(basename "${r[DEBIAN]}")" -C "$tmp/src"
(
	# Each step checked: set -e does not apply on the left of `||`.
	cd "$tmp/src" || exit 1
	if [[ -f debian/patches/series ]]; then
		while read -r p _ || [[ -n $p ]]; do
			[[ -z $p || $p == \#* ]] && continue
			echo "applying debian/patches/$p"
			patch -p1 --batch --quiet <"debian/patches/$p" || exit 1
		done <debian/patches/series
	fi
	echo "building passt ${r[VERSION]}"
	make VERSION="${r[VERSION]}" passt passt.avx2 || exit 1
) >"$tmp/build.log" 2>&1 || {
	tail -n 20 "$tmp/build.log" >&2
	die "build failed; the log's last lines are above"
}
mkdir "$tmp/out" "$tmp/out/bin"
install -m 0755 "$tmp/src/passt" "$tmp/src/passt.avx2" "$tmp/out/bin/"
cp "$tmp/build.log" "$tmp/out/build.log"
printf '{"recipe":"%s","recipe_hash":"%s","version":"%s"}\n' "$name" "$hash" "${r[VERSION]}" >"$tmp/out/manifest.json"
chmod 0755 "$tmp/out"
rm -rf "$out"
mv -T "$tmp/out" "$out"
log "built $out"
echo "$out"
