# nicstorm: `make matrix` runs the default experiment matrix, `make test` runs the tests
# (`make test-faults` the fault suite and the coverage cells; CI runs both).
# Each installs and builds what it needs first (scripts/setup-host.sh, as root).

MATRIX ?= matrix/nic-modes.yaml
# Extra arguments for `nicstorm run`, e.g. "--shard 2/4 --results DIR" (scripts/fan-out.sh).
NICSTORM_RUN_ARGS ?=
CONNS ?= 300000
LOAD_BIN := load/target/x86_64-unknown-linux-gnu/release/storm-load
NICSTORM := target/release/nicstorm

.PHONY: setup setup-test load image build matrix plan test test-unit test-vm test-faults bench-load bench-boot lab-down fmt clippy

setup:
	@scripts/setup-host.sh

# Also the tools only tests use (headless Chromium renders the report in tests/report.rs).
setup-test:
	@scripts/setup-host.sh --test

# storm-load: static (crt-static) x86-64 binary; its own cargo workspace and target dir.
load:
	cd load && cargo build --release --locked
	@file $(LOAD_BIN) | grep -q 'statically linked' || { echo "$(LOAD_BIN) is not statically linked" >&2; exit 1; }

# Guest image: cached outside the checkout, rebuilt only when images/ changes.
image: setup
	images/build.sh

build:
	cargo build --release --locked

matrix: setup load image build
	$(NICSTORM) run $(MATRIX) $(NICSTORM_RUN_ARGS)

plan: build
	$(NICSTORM) plan $(MATRIX)

# Fast tests first, then the real-VM tests (serial: each boots four TCG guests).
test: setup-test load image test-unit test-vm

# --workspace: the runner and proto/ (storm-load's protocol types; `cargo test` in load/ runs load's own tests only).
test-unit:
	cd load && cargo test --release --locked
	cargo test --locked --workspace

# The coverage cells run with the fault suite: together they are the slow half (~15 min).
test-vm:
	cargo test --locked --test emulators -- --include-ignored
	cargo test --locked --test state -- --include-ignored
	cargo test --locked --lib -- --include-ignored vcpu_sampler_tells_spinning_from_halted_qemu
	cargo test --locked --test vm -- --include-ignored --test-threads=1 --nocapture --skip coverage

# Every way a run can end, on real VMs (tests/faults.rs, built with its test-only fault hook),
# and one cell of each disconnect method, mode and remaining NIC model (tests/vm.rs coverage).
test-faults: setup-test load image
	cargo test --locked --features faults --test faults -- --include-ignored --test-threads=1 --nocapture
	cargo test --locked --test vm -- --include-ignored --test-threads=1 --nocapture coverage

bench-load: load
	CONNS=$(CONNS) load/bench/bench-load.sh

# Guest boot to SSH under TCG per boot variant, four guests at once (images/bench-boot.sh),
# then a lab booted against the same lab restored from a saved one (scripts/bench-lab-start.sh).
bench-boot: setup image build
	images/bench-boot.sh
	scripts/bench-lab-start.sh

lab-down: build
	$(NICSTORM) lab down

fmt:
	cargo fmt --all && cd load && cargo fmt --all
