#!/bin/bash
# Booted against restored labs at the band: band-boot.yaml and band-restore.yaml, one
# repetition at a time, the two alternating (boot first in odd rounds), ROUNDS rounds
# (default 6), through the restore measurement's run-equivalence.sh (which resumes).
# Usage (as root, from anywhere): run-band-start.sh RESULTS
# Then: python3 recount.py start   (with RESULTS = this directory's start/)
here=$(cd "$(dirname "$0")" && pwd)
BOOT_YAML=$here/band-boot.yaml RESTORE_YAML=$here/band-restore.yaml ROUNDS=${ROUNDS:-6} \
	exec "$here/../2026-12-07-restore/run-equivalence.sh" "$@"
