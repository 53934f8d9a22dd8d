#!/bin/bash
# mmdebstrap essential hook: puts the recipe's files into the chroot before the kernel and
# initramfs-tools are installed, so the initrd is generated once, with our module list.
set -euo pipefail
root=${1:?usage: essential.sh CHROOT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# --no-preserve=ownership: the checkout may belong to any user; the guest wants root.
cp -rT --no-preserve=ownership --preserve=mode "$here/rootfs" "$root"
