#!/bin/sh
# Copies what this measurement commits from a results directory of `nicstorm run`: cells.csv,
# summary.md and report.html, and per cell directory its verdict, counters, phases,
# provision timings, signatures, passt's account (passt.txt, netdev checks) and, gzipped, the
# storm-load stream and every VM's console, QEMU and passt log.
# Usage: ./collect.sh RESULTS_DIR PART   e.g. ./collect.sh /root/study/psearch/search run1
set -eu
src=$1 part=$2
here=$(dirname "$0")
mkdir -p "$here/$part"
for f in cells.csv summary.md report.html; do
	if [ -f "$src/$f" ]; then cp "$src/$f" "$here/$part/$f"; fi
done
for d in "$src"/*/*-r*/; do
	run=$(basename "$(dirname "$d")") cell=$(basename "$d")
	out="$here/$part/$run/$cell"
	mkdir -p "$out"
	for f in verdict.txt counters.csv phases.csv provision.csv signatures.csv passt.txt timeseries.csv "$d"/*.netdev.txt; do
		f=$(basename "$f")
		if [ -f "$d/$f" ]; then cp "$d/$f" "$out/"; fi
	done
	for f in "$d"/storm-load.jsonl "$d"/*.console.log "$d"/*.qemu.log "$d"/*.passt.log; do
		if [ -f "$f" ]; then gzip -9c "$f" >"$out/$(basename "$f").gz"; fi
	done
done
