#!/bin/sh
# Copies what this measurement commits from a results directory of `nicstorm run`:
# cells.csv and summary.md, and per cell directory phases.csv, signatures.csv, verdict.txt
# and every VM's QEMU and console log (gzip). Usage: ./collect.sh RESULTS_DIR PART
# e.g. ./collect.sh /root/study/coarse/coarse coarse
set -eu
src=$1 part=$2
here=$(dirname "$0")
mkdir -p "$here/$part"
cp "$src/cells.csv" "$here/$part/cells.csv"
[ -f "$src/summary.md" ] && cp "$src/summary.md" "$here/$part/summary.md"
for d in "$src"/*/*-r*/; do
	run=$(basename "$(dirname "$d")") cell=$(basename "$d")
	out="$here/$part/$run/$cell"
	mkdir -p "$out"
	for f in phases.csv signatures.csv verdict.txt; do
		[ -f "$d/$f" ] && cp "$d/$f" "$out/"
	done
	for f in "$d"/*.qemu.log "$d"/*.console.log; do
		[ -f "$f" ] && gzip -9c "$f" > "$out/$(basename "$f").gz"
	done
done
