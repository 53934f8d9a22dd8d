#!/bin/bash
# scripts/bench-lab-start.sh: a lab booted against the same lab restored from a saved one
# (`nicstorm lab up` against `nicstorm lab up --restore`), ROUNDS rounds, the two ways
# alternating (boot first in odd rounds, restore first in even ones), so drift of the host
# falls on both alike. Per way it prints, as min/median/max over the rounds: the seconds from
# the start of provisioning until all four guests answered SSH, and until all four also had
# storm-load (ready: both as `lab up` prints them), and the whole `lab up` command's wall
# time (image check, sweep, network, guests, reachability check). The boot figures are this run's host reference: quote restore beside them, never
# alone. The saved lab is made (and not counted) before the first round.
# Usage (as root): scripts/bench-lab-start.sh      Env: ROUNDS (default 5), NIC (default
# vmxnet3), MODE (default bridge), NICSTORM (the binary, default target/release/nicstorm).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${ROUNDS:-5}
nic=${NIC:-vmxnet3}
mode=${MODE:-bridge}
bin=${NICSTORM:-target/release/nicstorm}
out=$(mktemp -d /tmp/nicstorm-bench-lab-start.XXXXXX)
trap '"$bin" lab down >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

# One lab up and down; appends "WAY SSH_S WALL_S READY_S" to $out/times.
once() {
	local way=$1 t0 t1 ssh ready
	local args=(lab up --nic "$nic" --mode "$mode")
	[[ $way == restore ]] && args+=(--restore)
	t0=$(date +%s.%N)
	"$bin" "${args[@]}" >"$out/up.txt" 2>"$out/up.err" || {
		cat "$out/up.err" >&2
		return 1
	}
	t1=$(date +%s.%N)
	ssh=$(sed -n 's/.*; boot to SSH \([0-9.]*\)s.*/\1/p' "$out/up.txt")
	ready=$(sed -n 's/.*, ready with storm-load \([0-9.]*\)s .*/\1/p' "$out/up.txt")
	"$bin" lab down >/dev/null 2>&1
	if [[ -z $ssh || -z $ready ]]; then
		echo "bench-lab-start: no 'boot to SSH Ns, ready with storm-load Ns' in lab up's output (an older binary?):" >&2
		cat "$out/up.txt" >&2
		return 1
	fi
	echo "$way $ssh $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') $ready" | tee -a "$out/times"
}

echo "saving the lab to restore (not counted)"
"$bin" lab up --nic "$nic" --mode "$mode" --restore >/dev/null 2>&1
"$bin" lab down >/dev/null 2>&1
for r in $(seq 1 "$rounds"); do
	if ((r % 2)); then ways=(boot restore); else ways=(restore boot); fi
	for w in "${ways[@]}"; do
		echo -n "round $r: "
		once "$w"
	done
done
echo
echo "$nic, $mode, $rounds rounds: seconds (min / median / max)"
for w in boot restore; do
	for col in 2 4 3; do
		case $col in
		2) what="all four answered SSH" ;;
		4) what="ready with storm-load" ;;
		3) what="lab up, whole command" ;;
		esac
		awk -v w="$w" -v c="$col" '$1 == w { print $c }' "$out/times" | sort -g |
			awk -v w="$w" -v what="$what" '
				{ v[NR] = $1 }
				END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
				      printf "  %-8s %-24s %6.1f %6.1f %6.1f\n", w, what, v[1], m, v[NR] }'
	done
done
