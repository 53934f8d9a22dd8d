#!/bin/bash
# Runs coarse-nat.yaml one cell per `nicstorm run` (the cells are keyed, so a rerun resumes):
# the nine points in an order shuffled once (Python's random.Random(16)), the three NICs of
# a point one after another, their order rotating from point to point (A B C, B C A, C A B),
# so no NIC runs as a block. Usage (as root): run-coarse-nat.sh RESULTS
# Env: NICSTORM (the binary, default target/release/nicstorm of the checkout).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
results=$(realpath -m "${1:?usage: run-coarse-nat.sh RESULTS}")
bin=${NICSTORM:-target/release/nicstorm}
order=$("$bin" plan "$here/coarse-nat.yaml" | python3 -c '
import random, re, sys
cells = {}  # point -> {nic: id}
for line in sys.stdin:
    m = re.match(r"\s*\d+\s+([0-9a-f]{12})\s+(\S+)\s+nat\s+\S+\s+\S+\[(\S+)\]", line)
    if m:
        cells.setdefault(m.group(3), {})[m.group(2)] = m.group(1)
points = sorted(cells)
random.Random(16).shuffle(points)
nics = ["virtio-net", "vmxnet3", "e1000"]
for i, p in enumerate(points):
    for nic in nics[i % 3:] + nics[:i % 3]:
        print(cells[p][nic], nic, p)
')
[[ $(wc -l <<<"$order") == 27 ]] || { echo "expected 27 cells, got: $order" >&2; exit 1; }
while read -r id nic point; do
	echo "== $id $nic $point ($(date -Is))"
	# stdin from /dev/null: the loop reads the order from its own stdin.
	"$bin" run "$here/coarse-nat.yaml" --results "$results" -q --cell "$id" </dev/null || echo "exit $?"
done <<<"$order"
