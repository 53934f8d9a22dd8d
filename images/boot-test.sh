#!/bin/bash
# images/boot-test.sh: boots the built image under plain QEMU (TCG) once per NIC model and
# checks what the runner relies on: SSH by the key from the kernel command line, the NIC
# driver, the identity, nofile and sysctls over SSH, and the NSHB heartbeat on ttyS1.
#
# Usage: images/boot-test.sh [IMAGE_DIR] [MODEL...]   (models: virtio-net-pci vmxnet3 e1000
# e1000e rtl8139; default all). Prints one "RESULT" line per model; exits 1 if any check
# failed. Uses user-mode networking with a forward on 127.0.0.1 only; NICSTORM_TEST_PORT sets
# the first host port tried (default 22220), so two runs in parallel do not pick the same one.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ${1:-} == /* ]]; then
	image=$1
	shift
else
	image=$("$here/build.sh" | tail -n1)
fi
models=("$@")
((${#models[@]})) || models=(virtio-net-pci vmxnet3 e1000 e1000e rtl8139)
mem_mb=${NICSTORM_TEST_MEM_MB:-1024}
boot_limit_s=${NICSTORM_TEST_BOOT_LIMIT_S:-600}

declare -A driver_of=(
	[virtio-net-pci]='^virtio_net$' [vmxnet3]='^vmxnet3$' [e1000]='^e1000$'
	[e1000e]='^e1000e$' [rtl8139]='^(8139cp|8139too)$'
)

work=$(mktemp -d /tmp/nicstorm-boot-test.XXXXXX)
qemu_pid=''
cleanup() {
	# Only the QEMU this script started, by PID.
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=''
}
trap 'cleanup; rm -rf "$work"' EXIT

ssh-keygen -q -t ed25519 -N '' -C nicstorm-boot-test -f "$work/key"
key_b64=$(base64 -w0 <"$work/key.pub")

free_port() {
	local p
	local base=${NICSTORM_TEST_PORT:-22220}
	for p in $(seq "$base" $((base + 79))); do
		if ! ss -Htln "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
	done
	return 1
}

failures=0
for model in "${models[@]}"; do
	[[ -n ${driver_of[$model]:-} ]] || { echo "unknown model $model" >&2; exit 2; }
	port=$(free_port)
	dir=$work/$model
	mkdir -p "$dir"
	qemu-img create -q -f qcow2 -F qcow2 -b "$image/rootfs.qcow2" "$dir/overlay.qcow2"
	name=test-${model//[^a-z0-9]/}
	cmdline="console=ttyS0 root=/dev/vda rw init=/usr/local/sbin/nicstorm-init cryptomgr.notests net.ifnames=0 panic=0 nicstorm.hostname=$name"
	cmdline+=" nicstorm.addr=10.0.2.15/24 nicstorm.gw=10.0.2.2 nicstorm.key=$key_b64"
	start=$(date +%s.%N)
	qemu-system-x86_64 -machine pc -m "$mem_mb" -smp 1 -display none -monitor none \
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$cmdline" \
		-drive "file=$dir/overlay.qcow2,if=virtio,format=qcow2" \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device "$model,netdev=n0" \
		-device virtio-rng-pci \
		-serial "file:$dir/console.log" -serial "file:$dir/hb.log" \
		-pidfile "$dir/qemu.pid" -daemonize
	qemu_pid=$(<"$dir/qemu.pid")

	sshc=(ssh -i "$work/key" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no
		-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 root@127.0.0.1)
	ssh_s=''
	deadline=$(($(date +%s) + boot_limit_s))
	while (($(date +%s) < deadline)); do
		kill -0 "$qemu_pid" 2>/dev/null || break
		if timeout 30 "${sshc[@]}" true 2>/dev/null; then
			ssh_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
			break
		fi
		sleep 2
	done

	problems=()
	declare -A got=()
	if [[ -z $ssh_s ]]; then
		problems+=("no SSH within ${boot_limit_s}s")
	else
		# Heartbeat cadence over a 10 s window measured on the host.
		hb0=$(grep -c '^NSHB ' "$dir/hb.log" || true)
		t0=$(date +%s.%N)
		# shellcheck disable=SC2016 # expanded by the guest's shell
		out=$(timeout 120 "${sshc[@]}" '
			echo "driver=$(ethtool -i eth0 | sed -n "s/^driver: //p")"
			echo "hostname=$(hostname)"
			echo "addr=$(ip -4 -o addr show dev eth0 | awk "{print \$4}")"
			echo "route=$(ip route show default | awk "{print \$3}")"
			echo "nofile=$(ulimit -n)"
			echo "nr_open=$(sysctl -n fs.nr_open)"
			echo "port_range=$(sysctl -n net.ipv4.ip_local_port_range | tr -s "\t " " ")"
			echo "tcp_mem=$(sysctl -n net.ipv4.tcp_mem | tr -s "\t " " ")"
			echo "memtotal_kb=$(awk "/^MemTotal:/ {print \$2}" /proc/meminfo)"
			echo "somaxconn=$(sysctl -n net.core.somaxconn)"
			echo "gettys=$(pgrep -c getty)"
			echo "hb=$(pgrep -c -f "^/bin/bash /usr/local/sbin/nicstorm-heartbeat")"
			echo "hb_policy=$(chrt -p "$(pgrep -o -f "^/bin/bash /usr/local/sbin/nicstorm-heartbeat")" | sed -n "s/.*policy: //p" | head -n1)"
			echo "zombies=$(ps -eo stat= | grep -c "^Z")"
			echo "pid1=$(cat /proc/1/cmdline | tr "\0" " ")"
			echo "kconsole=$(cat /proc/consoles | awk "{print \$1}" | tr "\n" " ")"
			echo "rootfs_avail=$(df -h / | awk "NR==2 {print \$4}")"
			echo "hb_cpu=$(ps -o times=,etimes= -C nicstorm-heartbeat | awk "{printf \"%.1f\", 100 * \$1 / \$2}")"
		' 2>&1) || problems+=("ssh checks failed: $out")
		# The remainder of the 10 s heartbeat window.
		while awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a < 10) }'; do sleep 0.5; done
		hb1=$(grep -c '^NSHB ' "$dir/hb.log" || true)
		t1=$(date +%s.%N)
		hb_rate=$(awk -v n=$((hb1 - hb0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", n / (b - a) }')
		while IFS='=' read -r k v; do got[$k]=$v; done <<<"$out"

		[[ ${got[driver]:-} =~ ${driver_of[$model]} ]] || problems+=("driver '${got[driver]:-}'")
		[[ ${got[hostname]:-} == "$name" ]] || problems+=("hostname '${got[hostname]:-}'")
		[[ ${got[addr]:-} == 10.0.2.15/24 ]] || problems+=("addr '${got[addr]:-}'")
		[[ ${got[route]:-} == 10.0.2.2 ]] || problems+=("default route '${got[route]:-}'")
		[[ ${got[nofile]:-} == 1048576 ]] || problems+=("ulimit -n '${got[nofile]:-}'")
		((${got[nr_open]:-0} >= 1048576)) || problems+=("fs.nr_open '${got[nr_open]:-}'")
		[[ ${got[port_range]:-} == '1024 65535' ]] || problems+=("port range '${got[port_range]:-}'")
		[[ ${got[somaxconn]:-} == 65535 ]] || problems+=("somaxconn '${got[somaxconn]:-}'")
		pages=$((${got[memtotal_kb]:-0} / 4))
		want_mem="$((pages * 25 / 100)) $((pages * 50 / 100)) $((pages * 75 / 100))"
		[[ ${got[tcp_mem]:-} == "$want_mem" ]] || problems+=("tcp_mem '${got[tcp_mem]:-}' != '$want_mem'")
		[[ ${got[gettys]:-} == 0 ]] || problems+=("${got[gettys]:-?} gettys run")
		[[ ${got[hb]:-} == 1 ]] || problems+=("heartbeat processes: '${got[hb]:-}'")
		[[ ${got[hb_policy]:-} == SCHED_RR ]] || problems+=("heartbeat policy '${got[hb_policy]:-}'")
		[[ ${got[zombies]:-} == 0 ]] || problems+=("${got[zombies]:-?} zombies (PID 1 must reap)")
		[[ ${got[pid1]:-} == "/bin/bash /usr/local/sbin/nicstorm-init " ]] || problems+=("PID 1 is '${got[pid1]:-}'")
		grep -q 'nicstorm-init: .* sshd started' "$dir/console.log" || problems+=("no 'sshd started' on the console")
		# Our own scripts' complaints (the kernel's own lines are not ours to judge here).
		ours='^(/usr/local/sbin/|nicstorm-)[^ ]*.*(No such file|unbound variable|failed|ERROR)'
		if grep -qE "$ours" "$dir/console.log"; then
			problems+=("errors on the console: $(grep -m1 -E "$ours" "$dir/console.log")")
		fi
		[[ ${got[kconsole]:-} == 'ttyS0 ' ]] || problems+=("kernel consoles '${got[kconsole]:-}'")
		awk -v r="$hb_rate" 'BEGIN { exit !(r >= 3.0 && r <= 4.5) }' ||
			problems+=("heartbeat rate ${hb_rate}/s")
		# Every line well-formed, in the field order of docs/ARCHITECTURE.md.
		re='^NSHB v=1 seq=[0-9]+ t=[0-9]+\.[0-9]{6} up=[0-9.]+ load1=[0-9.]+ softirq_pct=[0-9]+\.[0-9] busy_pct=[0-9]+\.[0-9] tcp_inuse=[0-9]+ tcp_orphan=[0-9]+ tcp_tw=[0-9]+ tcp_alloc=[0-9]+ tcp_mem_pages=[0-9]+ memavail_kb=[0-9]+ est=([0-9]+|-)\r?$'
		bad=$(grep -cvE "$re" "$dir/hb.log" || true)
		((bad == 0)) || problems+=("$bad malformed heartbeat lines, e.g. $(grep -vE "$re" "$dir/hb.log" | head -n1)")
		((hb1 > 0)) || problems+=("no heartbeat lines")
	fi
	cp "$dir/console.log" "/tmp/nicstorm-boot-test-$model.console.log"; cleanup

	status=ok
	if ((${#problems[@]})); then
		status=FAIL
		failures=$((failures + 1))
		cp "$dir/console.log" "/tmp/nicstorm-boot-test-$model.console.log"
		echo "console log kept in /tmp/nicstorm-boot-test-$model.console.log" >&2
	fi
	printf 'RESULT model=%s status=%s ssh_after_s=%s driver=%s hb_per_s=%s nofile=%s tcp_mem="%s" sshd_started_at_uptime=%s root_avail=%s hb_cpu_pct=%s problems="%s"\n' \
		"$model" "$status" "${ssh_s:--}" "${got[driver]:--}" "${hb_rate:--}" "${got[nofile]:--}" \
		"${got[tcp_mem]:--}" "$(sed -n 's/^nicstorm-init: \[\([0-9.]*\)\] sshd started.*/\1/p' "$dir/console.log" | head -n1)" "${got[rootfs_avail]:--}" "${got[hb_cpu]:--}" \
		"${problems[*]:-}"
	[[ $status == ok ]] && tail -n2 "$dir/hb.log" | sed 's/^/  hb: /'
	unset got hb_rate ssh_s
done
((failures == 0))
