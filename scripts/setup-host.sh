#!/usr/bin/env bash
# Installs and starts what nicstorm needs on a Debian/Ubuntu host; idempotent and quiet when
# everything is there. Used by `make matrix`, `make test` and .ci/run. Must run as root
# (it installs packages, creates bridges and iptables rules, talks to qemu:///system).
set -euo pipefail

say() { printf 'setup-host: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: nicstorm creates bridges, iptables rules and libvirt domains (qemu:///system)"

packages=(
  qemu-system-x86 qemu-utils            # the VMs, overlays
  libvirt-daemon-system libvirt-clients  # libvirtd, virtlogd, virsh
  libvirt-dev pkg-config                 # the virt crate links libvirt
  mmdebstrap e2fsprogs                   # guest image from Debian packages, mkfs.ext4 -d
  iptables iproute2 conntrack            # bridges, NAT, flushing a lab's conntrack entries
  openssh-client                         # ssh, ssh-keygen (openssh crate drives the ssh binary)
  file procps
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first; the target x86_64-unknown-linux-gnu is all nicstorm needs"
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-gnu \
  || rustup target add x86_64-unknown-linux-gnu

# libvirt: use the init system when there is one; otherwise start the daemons by hand.
# Liveness is asked of libvirtd itself, not read off its socket file: a machine restored from a
# snapshot (CI here) has /run/libvirt/libvirt-sock left over with no daemon behind it.
libvirt_answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
if ! libvirt_answers; then
  if [ -d /run/systemd/system ]; then
    say "starting virtlogd and libvirtd with systemctl"
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  else
    say "no systemd: starting virtlogd and libvirtd as daemons"
    # A stale socket or pid file left without its daemon is what the daemons refuse to start
    # over; remove them only when no daemon of that name runs.
    if ! pgrep -x virtlogd >/dev/null; then
      rm -f /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock /run/virtlogd.pid
      virtlogd -d
    fi
    if ! pgrep -x libvirtd >/dev/null; then
      rm -f /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock /run/libvirtd.pid
      libvirtd -d
    fi
  fi
  for _ in $(seq 150); do libvirt_answers && break; sleep 0.2; done
fi
libvirt_answers || die "libvirt at qemu:///system does not answer (virsh -c qemu:///system version); see /var/log/libvirt/libvirtd.log"
