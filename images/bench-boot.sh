#!/bin/bash
# images/bench-boot.sh: how long guests of the built image take to answer SSH under TCG, per
# boot variant, with N guests booting at once (a lab boots four). Prints, per variant, the
# seconds from QEMU's start until `ssh true` succeeds, for the first and for the last guest,
# as min/median/max over the rounds. Variants run in turn within each round, so drift of the
# host's speed spreads over all of them.
#
# Usage: images/bench-boot.sh [VARIANT...]   (default: all variants below)
#   debian-systemd    Debian's initramfs-tools initrd, systemd as PID 1 (the image before 2026-11-24)
#   nicstorm-systemd  nicstorm's initrd (images/initrd/init), systemd as PID 1
#   nicstorm-init     nicstorm's initrd, nicstorm-init as PID 1 (what the runner boots)
# Env: ROUNDS (default 5), GUESTS (default 4), NIC (QEMU device, default vmxnet3),
#      EXTRA_APPEND (more kernel parameters), BOOT_LIMIT_S (default 300).
# Plain QEMU with user-mode networking and SSH forwarded from 127.0.0.1 only; the guests reach
# nothing else. Run as root (the image cache is root's).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=$("$here/build.sh" | tail -n1)
rounds=${ROUNDS:-5}
guests=${GUESTS:-4}
nic=${NIC:-vmxnet3}
limit=${BOOT_LIMIT_S:-300}
variants=("$@")
((${#variants[@]})) || variants=(debian-systemd nicstorm-systemd nicstorm-init)

work=$(mktemp -d /tmp/nicstorm-bench-boot.XXXXXX)
pids=()
stop_guests() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	pids=()
}
trap 'stop_guests; rm -rf "$work"' EXIT

ssh-keygen -q -t ed25519 -N '' -C nicstorm-bench-boot -f "$work/key"
key_b64=$(base64 -w0 <"$work/key.pub")
base_port=$((22400 + RANDOM % 400))

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# boot_round VARIANT: boots $guests guests at once; prints "first last" seconds to SSH.
boot_round() {
	local variant=$1 initrd init i port start
	case $variant in
	debian-systemd) initrd=$image/initrd-debian.img init=/lib/systemd/systemd ;;
	nicstorm-systemd) initrd=$image/initrd.img init=/lib/systemd/systemd ;;
	nicstorm-init) initrd=$image/initrd.img init=/usr/local/sbin/nicstorm-init ;;
	*) echo "bench-boot: unknown variant $variant" >&2; exit 2 ;;
	esac
	start=$(now)
	for ((i = 0; i < guests; i++)); do
		port=$((base_port + i))
		qemu-img create -q -f qcow2 -F qcow2 -b "$image/rootfs.qcow2" "$work/g$i.qcow2"
		qemu-system-x86_64 -machine pc,accel=tcg -m 1024 -smp 1 -nodefaults -display none \
			-kernel "$image/vmlinuz" -initrd "$initrd" \
			-append "console=ttyS0 root=/dev/vda rw init=$init net.ifnames=0 panic=0 nicstorm.hostname=g$i nicstorm.addr=10.0.2.15/24 nicstorm.gw=10.0.2.2 nicstorm.key=$key_b64 ${EXTRA_APPEND:-}" \
			-drive "file=$work/g$i.qcow2,if=virtio,cache=unsafe" \
			-netdev "user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:$port-:22" -device "$nic,netdev=n0" \
			-device virtio-rng-pci \
			-serial "file:$work/g$i.console.log" -serial "file:$work/g$i.hb.log" &
		pids+=($!)
	done
	local ready=() t first='' last=''
	while ((${#ready[@]} < guests)); do
		(($(since "$start" | cut -d. -f1) < limit)) || { echo "bench-boot: $variant: not all guests answered SSH within ${limit}s; logs in $work" >&2; exit 1; }
		for ((i = 0; i < guests; i++)); do
			[[ -n ${ready[$i]:-} ]] && continue
			if ssh -q -i "$work/key" -p $((base_port + i)) -o BatchMode=yes -o IdentitiesOnly=yes \
				-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 \
				root@127.0.0.1 true 2>/dev/null </dev/null; then
				t=$(since "$start")
				ready[$i]=$t
				[[ -n $first ]] || first=$t
				last=$t
			fi
		done
		sleep 0.5
	done
	stop_guests
	rm -f "$work"/g*
	echo "$first $last"
}

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "min %5.1f  median %5.1f  max %5.1f", v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR] }'; }

echo "bench-boot: image $image, $guests guests at once, NIC $nic, $rounds rounds, host $(nproc) CPUs, TCG" >&2
declare -A firsts lasts
for ((r = 1; r <= rounds; r++)); do
	for v in "${variants[@]}"; do
		read -r first last < <(boot_round "$v")
		echo "round $r $v: first guest ${first}s, all $guests ${last}s" >&2
		firsts[$v]+="$first "
		lasts[$v]+="$last "
	done
done
printf '%-18s %-44s %s\n' variant "first guest answers SSH (s)" "all $guests answer SSH (s)"
for v in "${variants[@]}"; do
	printf '%-18s %-44s %s\n' "$v" "$(tr ' ' '\n' <<<"${firsts[$v]}" | grep . | stats)" "$(tr ' ' '\n' <<<"${lasts[$v]}" | grep . | stats)"
done
