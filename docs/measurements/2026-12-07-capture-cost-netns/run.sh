#!/usr/bin/env bash
# What the packet ring's tcpdump costs per packet, without VMs: two network namespaces of
# this script's own joined by a veth pair; one sends PACKETS UDP datagrams (60-byte payload)
# to the other, ROUNDS times with the ring off and on, alternating. With the ring on,
# tcpdump runs on the receiving veth exactly as the runner starts it on a server tap
# (src/lab/capture.rs: -n -p -s 96 -C 8 -W 8 -Z root). Prints the sender's time per round
# and tcpdump's own CPU time (utime + stime from /proc). Run as root; touches nothing in
# the root namespace.
set -euo pipefail
PACKETS=${PACKETS:-300000}
ROUNDS=${ROUNDS:-3}
A=nscost-a B=nscost-b
WORK=$(mktemp -d)
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cleanup; WORK=$(mktemp -d)
ip netns add $A; ip netns add $B
ip link add nscv0 netns $A type veth peer name nscv1 netns $B
ip -n $A addr add 10.250.9.1/24 dev nscv0; ip -n $B addr add 10.250.9.2/24 dev nscv1
ip -n $A link set nscv0 up; ip -n $B link set nscv1 up
tck=$(getconf CLK_TCK)
send() {
  ip netns exec $B python3 -c "
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = time.monotonic()
for i in range($PACKETS): s.sendto(b'x' * 60, ('10.250.9.1', 9))
print('%.3f' % (time.monotonic() - t))"
}
for ((r = 1; r <= ROUNDS; r++)); do
  for ring in off on; do
    rm -f "$WORK"/*
    if [[ $ring == on ]]; then
      ip netns exec $A tcpdump -i nscv0 -n -p -s 96 -C 8 -W 8 -Z root -w "$WORK/ring.pcap" 2>"$WORK/err" &
      pid=$!
      for _ in $(seq 100); do grep -q "listening on" "$WORK/err" 2>/dev/null && break; sleep 0.05; done
    fi
    secs=$(send)
    if [[ $ring == on ]]; then
      read -r u s < <(awk '{print $14, $15}' /proc/$pid/stat)
      kill -TERM $pid; wait $pid 2>/dev/null || true
      echo "round $r ring on:  $PACKETS datagrams sent in $secs s; tcpdump cpu $(( (u + s) * 1000 / tck )) ms; $(grep -h 'captured\|dropped by kernel' "$WORK/err" | paste -sd, -)"
    else
      echo "round $r ring off: $PACKETS datagrams sent in $secs s"
    fi
  done
done
