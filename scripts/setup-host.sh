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
if [ ! -S /run/libvirt/libvirt-sock ]; then
  if [ -d /run/systemd/system ]; then
    say "starting virtlogd and libvirtd with systemctl"
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  else
    say "no systemd: starting virtlogd and libvirtd as daemons"
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
  fi
  for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
  [ -S /run/libvirt/libvirt-sock ] || die "libvirtd did not create /run/libvirt/libvirt-sock within 10 s"
fi
virsh -c qemu:///system version >/dev/null || die "libvirt at qemu:///system does not answer"
