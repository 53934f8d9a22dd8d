#!/usr/bin/env bash
# Runs capture-off.yaml and capture-always.yaml round by round into ./results: round k runs
# repetition k of every cell in each arm (a copy of the matrix with `repetitions: k` resumes
# after the rows of rounds 1..k-1), the arm that goes first alternating from round to round.
# Resumes: a round whose rows are there runs nothing. Usage: run.sh [NICSTORM] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../../target/release/nicstorm}
rounds=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here/../../.."
for ((k = 1; k <= rounds; k++)); do
    if ((k % 2)); then arms=(off always); else arms=(always off); fi
    for arm in "${arms[@]}"; do
        grep -q '^repetitions: ' "$here/capture-$arm.yaml" || { echo "run.sh: capture-$arm.yaml has no 'repetitions:' line" >&2; exit 2; }
        sed "s/^repetitions: .*/repetitions: $k/" "$here/capture-$arm.yaml" >"$tmp/capture-$arm.yaml"
        echo "== round $k: capture $arm ($(date -u +%H:%M:%S))"
        # Exit 3: a cell ended in error; its row says so, and the rounds go on (a rerun
        # runs that repetition again, then out of its round: recount.py pairs by repetition).
        rc=0
        "$bin" run -q "$tmp/capture-$arm.yaml" --results "$here/results" || rc=$?
        if ((rc != 0 && rc != 3)); then exit "$rc"; fi
    done
done
