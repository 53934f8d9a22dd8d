#!/bin/bash
# scripts/recipe-hash.sh DIR [NAME...]: prints the hash of a recipe directory, 64 hex digits
# (names of cached builds use the first 12: images/build.sh, emulators/build.sh).
#
# The hash covers what git records of each regular file under DIR: its path relative to DIR,
# its content, and whether it is executable (the owner's x bit, written 755 or 644 like git's
# 100755/100644). Not the rest of the mode, the owner or the times: two checkouts of one commit
# hash the same under any umask (664/775 files hash like 644/755), extracted by tar as any
# user, or touched. Files whose name matches one of the NAME patterns (find -name, e.g.
# '*.md') are left out: they do not shape the build.
set -euo pipefail
export LC_ALL=C

if (($# < 1)); then
	echo "usage: $0 DIR [NAME-PATTERN...]" >&2
	exit 2
fi
dir=$1
shift
[[ -d $dir ]] || {
	echo "recipe-hash.sh: $dir is not a directory" >&2
	exit 1
}
files=(-type f)
for name in "$@"; do
	files+=(! -name "$name")
done

cd "$dir"
{
	find . "${files[@]}" \( -perm -u=x -printf '755 %p\n' -o -printf '644 %p\n' \) | sort
	find . "${files[@]}" -print0 | sort -z | xargs -0 -r sha256sum
} | sha256sum | cut -c1-64
