#!/bin/bash
# Runs boot.yaml and restore.yaml ROUNDS repetitions each, one repetition at a time, the two
# alternating (boot first in odd rounds, restore first in even ones), into RESULTS/boot and
# RESULTS/restore. A repetition already in a results directory is not run again (a rerun
# resumes). Then: nicstorm compare RESULTS/boot/boot RESULTS/restore/restore.
# Usage (as root, from the repository): run-equivalence.sh RESULTS   Env: ROUNDS (default 6),
# FIRST (the first round to run, default 1), CELLS (cell ids to run, default all), BOOT_YAML
# and RESTORE_YAML (the two matrices, default boot.yaml and restore.yaml here; each is run
# under the name boot or restore, and must not set repetitions).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
results=$(realpath -m "${1:?usage: run-equivalence.sh RESULTS}")
rounds=${ROUNDS:-6}
bin=${NICSTORM:-target/release/nicstorm}
tmp=$(mktemp -d /tmp/nicstorm-equivalence.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cells=()
for c in ${CELLS:-}; do cells+=(--cell "$c"); done
for k in $(seq "${FIRST:-1}" "$rounds"); do
	if ((k % 2)); then ways=(boot restore); else ways=(restore boot); fi
	for way in "${ways[@]}"; do
		mkdir -p "$tmp/$k"
		# The same matrix, asking for k repetitions: the run resumes and runs repetition k.
		if [ "$way" = boot ]; then yaml=${BOOT_YAML:-$here/boot.yaml}; else yaml=${RESTORE_YAML:-$here/restore.yaml}; fi
		{ echo "repetitions: $k"; cat "$yaml"; } >"$tmp/$k/$way.yaml"
		echo "== round $k: $way ($(date -Is))"
		"$bin" run "$tmp/$k/$way.yaml" --results "$results/$way" -q "${cells[@]}" || echo "exit $?"
	done
done
