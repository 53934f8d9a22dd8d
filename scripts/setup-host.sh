#!/usr/bin/env bash
# Installs and starts what nicstorm needs on a Debian/Ubuntu host; idempotent and quiet when
# everything is there. Used by `make matrix`, `make test` and .ci/run. Must run as root
# (it installs packages, creates bridges and iptables rules, talks to qemu:///system).
#
# Every tool is checked by RUNNING it, before and after installing: a package list seen before
# `apt-get install` can be wrong after it (a backported qemu-utils 10 is removed by installing
# Debian's qemu-system-x86 7.2, which it Breaks).
#
# Usage: setup-host.sh [--test] [--check-only]
#   --test        also the tools only the tests use (headless Chromium for the report test)
#   --check-only  install and start nothing: list the tools that do not run, with their
#                 packages, and exit 1 if any (also the way tests check this script)
set -euo pipefail

say() { printf 'setup-host: %s\n' "$*" >&2; }
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
die() { say "$*"; exit 1; }

want_test=0 check_only=0
for a in "$@"; do
  case $a in
    --test) want_test=1 ;;
    --check-only) check_only=1 ;;
    *) die "unknown argument $a; usage: setup-host.sh [--test] [--check-only]" ;;
  esac
done

# tool | package | how to run it to prove it works. One line each; `{tmp}` is a scratch dir.
# qemu-utils is pinned to qemu-system-x86's version below, so both come from one QEMU build.
tools=(
  "qemu-img|qemu-utils|qemu-img --version"
  "qemu-system-x86_64|qemu-system-x86|qemu-system-x86_64 --version"
  "virsh|libvirt-clients|virsh --version"
  "libvirtd|libvirt-daemon-system|libvirtd --version"
  "virtlogd|libvirt-daemon-system|virtlogd --version"
  "pkg-config|pkg-config|pkg-config --version"
  "libvirt.pc|libvirt-dev|pkg-config --exists libvirt"
  "mmdebstrap|mmdebstrap|mmdebstrap --version"
  "mkfs.ext4|e2fsprogs|mkfs.ext4 -V"
  "ssh|openssh-client|ssh -V"
  "ssh-keygen|openssh-client|ssh-keygen -q -t ed25519 -N '' -C setup-check -f {tmp}/key"
  "iptables|iptables|iptables --version"
  "conntrack|conntrack|conntrack --version"
  "ip|iproute2|ip -V"
  "file|file|file --version"
  "pgrep|procps|pgrep -V"
  "flock|util-linux|flock -V"
  "tcpdump|tcpdump|tcpdump --version"
  "passt|passt|passt --version"
  # passt/build.sh (a passt recipe, settings.passt): fetch, check, patch, build.
  "curl|curl|curl --version"
  "cc|gcc|cc --version"
  "make|make|make --version"
  "patch|patch|patch --version"
  "xz|xz-utils|xz --version"
)
if ((want_test)); then
  tools+=("chromium|chromium|chromium --headless --no-sandbox --version")
fi

# Prints "tool package" for every tool that is missing or fails when run.
broken_tools() {
  local tmp line tool pkg cmd
  tmp=$(mktemp -d)
  for line in "${tools[@]}"; do
    [[ -n $line ]] || continue
    IFS='|' read -r tool pkg cmd <<<"$line"
    cmd=${cmd//\{tmp\}/$tmp}
    rm -f "$tmp/key" "$tmp/key.pub"
    # The command's first word must be on PATH; `command -v` alone proves nothing, so run it.
    if ! command -v "${cmd%% *}" >/dev/null 2>&1 || ! eval "$cmd" >/dev/null 2>&1 </dev/null; then
      printf '%s %s\n' "$tool" "$pkg"
    fi
  done
  rm -rf "$tmp"
}

if ((check_only)); then
  broken=$(broken_tools)
  [[ -z $broken ]] && { say "every tool runs"; exit 0; }
  while read -r tool pkg; do say "$tool does not run (package $pkg)"; done <<<"$broken"
  exit 1
fi

[ "$(id -u)" = 0 ] || die "run as root: nicstorm creates bridges, iptables rules and libvirt domains (qemu:///system)"

broken=$(broken_tools)
if [[ -n $broken ]]; then
  command -v apt-get >/dev/null || die "these tools do not run and there is no apt-get to install them: $(tr '\n' ' ' <<<"$broken")"
  mapfile -t pkgs < <(awk '{print $2}' <<<"$broken" | sort -u)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # One transaction, with every QEMU package at qemu-system-x86's version (installed, else the
  # candidate), so apt cannot satisfy one by removing another.
  qver=$(dpkg-query -W -f='${Status} ${Version}\n' qemu-system-x86 2>/dev/null | awk '/install ok installed/{print $4}' || true)
  [[ -n $qver ]] || qver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
  [[ -n $qver && $qver != "(none)" ]] || die "apt has no qemu-system-x86 candidate (see /etc/apt/sources.list*)"
  args=()
  for p in "${pkgs[@]}" qemu-system-x86 qemu-utils; do
    case $p in
      qemu-system-x86 | qemu-utils) args+=("$p=$qver") ;;
      *) args+=("$p") ;;
    esac
  done
  mapfile -t args < <(printf '%s\n' "${args[@]}" | sort -u)
  say "installing ${args[*]} (tools that did not run: $(awk '{print $1}' <<<"$broken" | tr '\n' ' '))"
  apt-get install -y -qq --no-install-recommends --allow-downgrades "${args[@]}" >/dev/null
  broken=$(broken_tools)
  if [[ -n $broken ]]; then
    while read -r tool pkg; do say "still does not run after installing: $tool (package $pkg)"; done <<<"$broken"
    die "install the packages above by hand, then run this again"
  fi
fi

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first; the target x86_64-unknown-linux-gnu is all nicstorm needs"
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-gnu \
  || rustup target add x86_64-unknown-linux-gnu

# /dev/kvm without the distro's group permission (no udev ran Debian's rule, root:kvm 0660) makes
# libvirt distrust its QEMU capability cache ("KVM was enabled when probing ..., but it is not
# available now") and re-probe QEMU on every domain start: about a minute per domain instead of
# a third of a second. Apply what udev would.
if [[ -c /dev/kvm ]]; then
  getent group kvm >/dev/null || groupadd --system kvm
  if [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" ]]; then
    say "/dev/kvm was $(stat -c '%U:%G %a' /dev/kvm); setting root:kvm 0660 as Debian's udev rule does (libvirt re-probes QEMU on every domain start otherwise)"
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
  fi
fi

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
