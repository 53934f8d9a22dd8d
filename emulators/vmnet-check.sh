#!/bin/bash
# emulators/vmnet-check.sh [EMULATOR] [CASE...]: shows what the vmnet-flow-control model does to
# a guest's transmit path. Each case boots the nicstorm guest image on a tap in a private
# network namespace made for the case (the tap's only peer is that namespace; nothing else is
# reachable), then from inside the namespace:
#   gentle  20 pings, 0.2 s apart, within the budget: all are answered;
#   burst   60 pings at once: the guest's replies exceed the bucket;
#   after   15 pings, 0.3 s apart: "disable" answers none (the backend is receive-disabled
#           and never flushes), "drop" and "off" answer all;
#   resumed the VM is stopped and continued over QMP (net core flushes every queue when the
#           VM stops), then 15 pings again.
# It prints the pings answered per phase and QEMU's nicstorm-vmnet lines.
#
# EMULATOR: a recipe name or a qemu-system-x86_64 path (default: vmnet-flow-control).
# CASE: MODEL:MODE[:PPMS[:BURST]], MODE disable|drop|off; default: virtio-net-pci:disable
# e1000:disable vmxnet3:disable virtio-net-pci:drop virtio-net-pci:off, PPMS 1, BURST 8.
# Needs root (netns, tap). Kills only the QEMU it started; deletes only its namespace.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf 'vmnet-check: %s\n' "$*" >&2; }
die() {
	say "FAIL: $*"
	exit 1
}
((EUID == 0)) || die "needs root (network namespace and tap)"

emu=${1:-vmnet-flow-control}
shift || true
case $emu in
*/*) bin=$emu ;;
*) bin=$("$here/build.sh" "$emu" | tail -n 1)/bin/qemu-system-x86_64 ;;
esac
[[ -x $bin ]] || die "$bin is not executable"
cases=("$@")
((${#cases[@]})) || cases=(virtio-net-pci:disable e1000:disable vmxnet3:disable virtio-net-pci:drop virtio-net-pci:off)
image=$("$here/../images/build.sh" | tail -n 1)
limit=${NICSTORM_BOOT_CHECK_LIMIT_S:-300}

ns=nsvmnet-$$
work=$(mktemp -d)
qemu_pid=''
# shellcheck disable=SC2317 # called by the EXIT trap and between cases
stop_case() {
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=''
	ip netns del "$ns" 2>/dev/null || true
}
trap 'stop_case; rm -rf "$work"' EXIT

qmp() {
	python3 - "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, {"execute": sys.argv[2]}):
    f.write(json.dumps(cmd) + "\n"); f.flush()
    while "event" in json.loads(f.readline()):
        pass
EOF
}

# pings COUNT INTERVAL [burst]: sends COUNT ICMP echo requests to the guest from inside the
# namespace, INTERVAL seconds apart (all at once with "burst"), waits 2 s after the last and
# prints how many were answered. Python, so the host needs no ping.
pings() {
	ip netns exec "$ns" python3 - "$@" <<'EOF'
import os, select, socket, struct, sys, time
n, interval, burst = int(sys.argv[1]), float(sys.argv[2]), len(sys.argv) > 3
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, got = os.getpid() & 0xFFFF, set()
def drain(until):
    while True:
        t = until - time.monotonic()
        if t <= 0 or not select.select([s], [], [], t)[0]:
            return
        pkt = s.recv(2048)
        ihl = (pkt[0] & 15) * 4
        typ, _, _, pid, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if typ == 0 and pid == ident:
            got.add(seq)
for seq in range(n):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"nicstorm-vmnet-check" * 2
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    s.sendto(body, ("10.98.0.2", 0))
    if not burst:
        drain(time.monotonic() + interval)
drain(time.monotonic() + 2)
print(len(got))
EOF
}

summary=()
for c in "${cases[@]}"; do
	IFS=: read -r model mode ppms burst <<<"$c"
	ppms=${ppms:-1} burst=${burst:-8}
	env=(NICSTORM_VMNET_PPMS="$ppms" NICSTORM_VMNET_BURST="$burst" NICSTORM_VMNET_MODE="$mode")
	[[ $mode == off ]] && env=(NICSTORM_VMNET_PPMS=0)
	say "case $c: ${env[*]}"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" tuntap add dev nstap0 mode tap
	ip -n "$ns" addr add 10.98.0.1/24 dev nstap0
	ip -n "$ns" link set nstap0 up
	dir=$work/$model-$mode
	mkdir -p "$dir"
	# ip netns exec and env both exec, so $! is QEMU's PID.
	ip netns exec "$ns" env "${env[@]}" "$bin" -machine pc,accel=tcg -display none -m 768 -smp 1 \
		-monitor none -msg timestamp=on \
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
		-append "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=0 nicstorm.hostname=vmnetcheck nicstorm.addr=10.98.0.2/24" \
		-drive "file=$image/rootfs.qcow2,if=virtio,format=qcow2,snapshot=on" \
		-netdev tap,id=hostnet0,ifname=nstap0,script=no,downscript=no -device "$model,netdev=hostnet0" \
		-serial "file:$dir/console.log" -serial null -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
		</dev/null >"$dir/qemu.err" 2>&1 &
	qemu_pid=$!
	up=''
	deadline=$(($(date +%s) + limit))
	while (($(date +%s) < deadline)); do
		kill -0 "$qemu_pid" 2>/dev/null || break
		if [[ $(pings 1 0) == 1 ]]; then up=yes; break; fi
		sleep 2
	done
	if [[ -z $up ]]; then
		cat "$dir/qemu.err" >&2
		summary+=("$(printf '%-24s guest did not answer within %ss' "$c" "$limit")")
		stop_case
		continue
	fi
	gentle=$(pings 20 0.2)
	burst_ok=$(pings 60 0 burst)
	after=$(pings 15 0.3)
	qmp "$dir/qmp.sock" stop
	sleep 1
	qmp "$dir/qmp.sock" cont
	resumed=$(pings 15 0.3)
	summary+=("$(printf '%-24s gentle %2s/20  burst %2s/60  after %2s/15  after stop/cont %2s/15' \
		"$c" "$gentle" "$burst_ok" "$after" "$resumed")")
	say "${summary[-1]}"
	grep 'nicstorm-vmnet' "$dir/qemu.err" | sed 's/^/    /' >&2 || say "    (no nicstorm-vmnet line)"
	stop_case
done

printf '%s\n' "${summary[@]}"
