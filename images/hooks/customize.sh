#!/bin/bash
# mmdebstrap customize hook: enables the nicstorm units, masks what a lab guest does not need,
# trims the tree, and checks that the drivers the experiment depends on are present.
set -euo pipefail
root=${1:?usage: customize.sh CHROOT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'customize: %s\n' "$*" >&2; }

# Again after all packages are in, in case a package shipped a file at one of our paths.
cp -rT --no-preserve=ownership --preserve=mode "$here/rootfs" "$root"

chroot "$root" systemctl enable nicstorm-heartbeat.service nicstorm-identity.service \
	nicstorm-tcpmem.service ssh.service

# Boot time under TCG is dominated by the number of units, so mask everything a disposable
# lab guest does not use. Masking a unit that is not installed is harmless.
masked=(
	apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
	dpkg-db-backup.timer dpkg-db-backup.service
	e2scrub_all.timer e2scrub_all.service e2scrub_reap.service
	man-db.timer man-db.service fstrim.timer logrotate.timer
	systemd-timesyncd.service
	getty@tty1.service autovt@tty1.service
	# ttyS1 carries the heartbeat; a getty there would read and echo on it.
	serial-getty@ttyS1.service
	networking.service ifupdown-wait-online.service
	systemd-networkd.service systemd-networkd-wait-online.service systemd-resolved.service
	# Asks on the console on first boot (empty machine-id) and would block the boot.
	systemd-firstboot.service
	systemd-pstore.service
	# Debian starts gettys on tty2-6 this way when dbus is absent; nobody logs in there.
	getty-static.service
	# Modules and mounts for loop devices, device-mapper, FUSE, hugepages and kernel
	# debugging/tracing: unused in the lab, and each unit costs seconds of boot under TCG.
	modprobe@loop.service modprobe@dm_mod.service modprobe@fuse.service
	dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount
)
for unit in "${masked[@]}"; do
	ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done

# Every VM is its own overlay of this image; systemd generates a machine-id per boot and,
# with / writable, commits it.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# The build host's resolver must not leak into the lab; the lab has no DNS.
: >"$root/etc/resolv.conf"
printf 'nicstorm\n' >"$root/etc/hostname"
# No locales are installed; an empty file keeps pam_env from logging an error per SSH session.
: >"$root/etc/default/locale"

kver=$(basename "$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
moddir=$root/lib/modules/$kver

# Hardware a lab VM never has: the largest module trees, removed to keep the image small.
for d in sound drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/net/wireless \
	drivers/bluetooth drivers/iio drivers/isdn drivers/net/can drivers/net/ethernet/mellanox \
	drivers/scsi/lpfc drivers/scsi/qla2xxx drivers/scsi/mpt3sas drivers/scsi/bfa net/bluetooth \
	net/mac80211 net/wireless; do
	rm -rf "${moddir:?}/kernel/$d"
done
chroot "$root" depmod -a "$kver"

# The NIC models of the matrix must load by udev; root must mount from virtio-blk.
missing=()
for m in virtio_net vmxnet3 e1000 e1000e 8139cp 8139too virtio_pci virtio_blk ext4; do
	if ! grep -qE "/$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" &&
		! grep -qE "/$m\.ko$" "$moddir/modules.builtin"; then
		missing+=("$m")
	fi
done
if ((${#missing[@]})); then
	log "ERROR: kernel $kver lacks modules: ${missing[*]}"
	exit 1
fi
initrd_list=$(chroot "$root" lsinitramfs "/boot/initrd.img-$kver")
for m in virtio_pci virtio_blk ext4; do
	if ! grep -qE "/$m\.ko(\.[a-z]+)?$" <<<"$initrd_list" &&
		! grep -qE "/$m\.ko$" "$moddir/modules.builtin"; then
		log "ERROR: initrd for $kver lacks $m"
		exit 1
	fi
done
log "kernel $kver: NIC, virtio and ext4 modules present; initrd has virtio_blk/virtio_pci/ext4"

# dpkg's path-exclude applies only to packages unpacked after it was configured; the
# essential set was extracted before, so trim again here.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
	"$root"/usr/share/locale/* "$root"/usr/share/lintian/* "$root"/usr/share/bug/*
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
	"$root"/var/log/*.log "$root"/var/log/apt/*
