#!/bin/bash
# Do restored guests draw different secrets? Restores the same saved lab (vmxnet3, bridge)
# ROUNDS times with the release as nicstorm does it, and ROUNDS times without its entropy and
# reseed (NICSTORM_RESTORE_NO_RESEED, a control), alternating. After each restore, client1
# reports: its boot_id (expected, when this was written, to be the same in every restore of
# one saved lab; it was not: see README.md), a fresh
# random UUID (the kernel's generator), the local port of its first connection to the
# server's port 22 (chosen through the kernel's port secret, drawn at first use, with no
# clock term), and its clock's offset from the host's.
# Usage (as root, from the repository): docs/measurements/2026-12-07-restore/secrets.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-docs/measurements/2026-12-07-restore/secrets.tsv}
rounds=${ROUNDS:-3}
bin=${NICSTORM:-target/release/nicstorm}
printf 'round\trelease\tboot_id\tuuid\tfirst_port\tclock_offset_s\n' >"$out"
for i in $(seq 1 "$rounds"); do
	for release in reseed no-reseed; do
		if [[ $release == no-reseed ]]; then
			NICSTORM_RESTORE_NO_RESEED=1 "$bin" lab up --nic vmxnet3 --mode bridge --restore >/tmp/secrets-up.txt
		else
			"$bin" lab up --nic vmxnet3 --mode bridge --restore >/tmp/secrets-up.txt
		fi
		ssh_client1=$(sed -n 's/^  client1  //p' /tmp/secrets-up.txt)
		server=$(sed -n 's/^  clients reach the server at \([0-9.]*\):.*/\1/p' /tmp/secrets-up.txt)
		line=$($ssh_client1 -o LogLevel=ERROR "
			b=\$(cat /proc/sys/kernel/random/boot_id)
			u=\$(cat /proc/sys/kernel/random/uuid)
			exec 3<>/dev/tcp/$server/22
			p=\$(ss -tnH state established dst $server dport = 22 | awk '{split(\$3, a, \":\"); print a[2]}' | head -1)
			printf '%s\t%s\t%s\t%s\n' \"\$b\" \"\$u\" \"\$p\" \"\$(date +%s.%N)\"")
		host_now=$(date +%s.%N)
		IFS=$'\t' read -r b u p guest_now <<<"$line"
		offset=$(awk -v g="$guest_now" -v h="$host_now" 'BEGIN { printf "%.2f", g - h }')
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$release" "$b" "$u" "$p" "$offset" | tee -a "$out"
		"$bin" lab down >/dev/null 2>&1
	done
done
