#!/usr/bin/env python3
"""Shows how Debian 12's passt (0.0~git20230309) reads QEMU's stream socket: one frame whose
4-byte length prefix arrives in a read of its own (as when QEMU's stream netdev, finding its
socket full, writes part of a frame and the rest later: net/stream.c `net_stream_receive`
keeps `send_index` and waits for POLLOUT) is lost, and every frame after it is misread until a
read happens to start on a frame boundary again.

As root, no VM: passt runs in a network namespace made here (no route out, loopback only),
on one end of a socketpair (`--fd`); this script is the guest on the other end. It asks for
the gateway's MAC with ARP, which passt answers, in three ways:
  1. whole:   prefix and frame in one write                      -> expect a reply
  2. split:   the prefix alone, then (50 ms later) the frame     -> bookworm's passt: none
  3. after:   a whole frame again, right after the split one     -> bookworm's passt: none
              (the frame of step 2 was taken for a length prefix: its first 4 bytes,
              ff ff ff ff, as a length; passt's blocking recv for the rest of that "frame"
              swallows this one, tap.c tap_handler_passt)
  4. again:   one more whole frame                               -> a reply: the next read
              starts on a frame boundary again
Then it drains what passt sent and prints what happened. Usage: sudo python3 framing.py
"""
import os
import socket
import struct
import subprocess
import sys
import time

NS = f"nsframing{os.getpid()}"
GUEST_MAC = bytes.fromhex("525400aabbcc")
GW_MAC = "52:54:00:12:34:56"
GUEST, GW = "10.213.9.15", "10.213.9.2"


def arp_request(seq):
    # Who has GW? tell GUEST (the sender IP's last byte varies so replies can be told apart).
    eth = b"\xff" * 6 + GUEST_MAC + b"\x08\x06"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + GUEST_MAC + socket.inet_aton(GUEST)
    arp += b"\x00" * 6 + socket.inet_aton(GW)
    frame = eth + arp + b"\x00" * (60 - len(eth) - len(arp))
    return frame


def replies(sock, wait):
    sock.settimeout(wait)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    n, frames = 0, 0
    while n + 4 <= len(got):
        (length,) = struct.unpack("!I", got[n:n + 4])
        frame = got[n + 4:n + 4 + length]
        if len(frame) >= 14 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
            frames += 1
        n += 4 + length
    return frames


def main():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(theirs.fileno(), True)
        fd = theirs.fileno()
        passt = subprocess.Popen(
            ["ip", "netns", "exec", NS, "passt", "--foreground", "--fd", str(fd), "-4",
             "-i", "lo", "-M", GW_MAC, "-a", GUEST, "-n", "24", "-g", GW, "--no-dhcp"],
            pass_fds=[fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        time.sleep(1)
        results = []
        frame = arp_request(1)
        prefix = struct.pack("!I", len(frame))
        ours.sendall(prefix + frame)
        results.append(("whole", replies(ours, 1.0)))
        ours.sendall(prefix)
        time.sleep(0.05)
        ours.sendall(frame)
        results.append(("split", replies(ours, 1.0)))
        ours.sendall(prefix + frame)
        results.append(("after", replies(ours, 1.0)))
        ours.sendall(prefix + frame)
        results.append(("again", replies(ours, 1.0)))
        for what, n in results:
            print(f"{what:6} ARP replies from passt: {n}")
        ours.close()
        passt.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    sys.exit(main())
