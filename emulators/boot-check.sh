#!/bin/bash
# emulators/boot-check.sh [EMULATOR]: boots the nicstorm guest image's kernel directly under TCG
# (-machine pc,accel=tcg -nographic) with virtio-net-pci, e1000 and vmxnet3 present (no
# backend and -nic none, so no frame goes anywhere) and waits until:
#   - the guest kernel printed "Linux version" (the BIOS and linuxboot_dma.bin were found);
#   - the e1000 and vmxnet3 drivers probed their devices (console lines);
#   - the guest's virtio-net driver set DRIVER_OK (QMP x-query-virtio-status);
#   - the guest's user space runs (the first heartbeat line on ttyS1).
# The NIC option ROMs are loaded when QEMU starts; a missing one stops it at once.
#
# EMULATOR: "system" (default; the host's qemu-system-x86_64), a recipe name (emulators/
# build.sh NAME, normally a cache hit) or the path of a qemu-system-x86_64.
# Environment: NICSTORM_BOOT_CHECK_LIMIT_S (default 300). Kills only the QEMU it started.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf 'boot-check: %s\n' "$*" >&2; }
die() {
	say "FAIL: $*"
	exit 1
}

emu=${1:-system}
case $emu in
system) bin=$(command -v qemu-system-x86_64) || die "no qemu-system-x86_64 on PATH" ;;
*/*) bin=$emu ;;
*) bin=$("$here/build.sh" "$emu" | tail -n 1)/bin/qemu-system-x86_64 ;;
esac
[[ -x $bin ]] || die "$bin is not executable"
image=$("$here/../images/build.sh" | tail -n 1)
limit=${NICSTORM_BOOT_CHECK_LIMIT_S:-300}

work=$(mktemp -d)
qemu_pid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# One QMP command on the monitor socket; prints the reply line.
qmp() {
	python3 - "$work/qmp.sock" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, json.loads(sys.argv[2])):
    f.write(json.dumps(cmd) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            break
print(json.dumps(r))
EOF
}

start=$(date +%s.%N)
# -nographic with stdin from /dev/null: no terminal is touched; the serial ports go to files.
"$bin" -machine pc,accel=tcg -nographic -m 768 -smp 1 -monitor none \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=0 nicstorm.hostname=bootcheck nicstorm.addr=10.97.0.2/24" \
	-drive "file=$image/rootfs.qcow2,if=virtio,format=qcow2,snapshot=on" \
	-nic none -device virtio-net-pci,id=vnet -device e1000 -device vmxnet3 \
	-serial "file:$work/console.log" -serial "file:$work/hb.log" \
	-qmp "unix:$work/qmp.sock,server=on,wait=off" \
	-pidfile "$work/qemu.pid" </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!

virtio_ok=''
deadline=$(($(date +%s) + limit))
while (($(date +%s) < deadline)); do
	kill -0 "$qemu_pid" 2>/dev/null || { cat "$work/qemu.out" >&2; die "QEMU exited"; }
	if [[ -z $virtio_ok && -S $work/qmp.sock ]]; then
		st=$(qmp '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/vnet/virtio-backend"}}' 2>/dev/null || true)
		grep -q 'DRIVER_OK' <<<"$st" && virtio_ok=yes
	fi
	if [[ -n $virtio_ok ]] && grep -q '^NSHB ' "$work/hb.log" 2>/dev/null &&
		grep -q 'Linux version' "$work/console.log" &&
		grep -qE '^\[ *[0-9.]+\] e1000 .*Intel\(R\) PRO/1000 Network Connection' "$work/console.log" &&
		grep -qE '^\[ *[0-9.]+\] vmxnet3 .*# of Tx queues' "$work/console.log"; then
		secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
		say "$("$bin" --version | head -n 1)"
		grep -m1 -o 'Linux version.*' "$work/console.log" | cut -c1-100 >&2
		grep -m1 -E '\] e1000 .*Network Connection' "$work/console.log" >&2
		grep -m1 -E '\] vmxnet3 .*# of Tx queues' "$work/console.log" >&2
		say "virtio-net: guest driver set DRIVER_OK; first heartbeat: $(grep -m1 '^NSHB ' "$work/hb.log" | cut -c1-60)"
		say "OK in ${secs}s: kernel booted, e1000 and vmxnet3 probed, virtio-net driver-ok, user space up"
		exit 0
	fi
	sleep 2
done
grep -E 'Linux version|e1000|vmxnet3|virtio|nicstorm-identity' "$work/console.log" | tail -n 30 >&2 || true
die "not booted within ${limit}s (virtio driver-ok: ${virtio_ok:-no})"
