# nicstorm: `make matrix` runs the default experiment matrix, `make test` runs every test.
# Both install and build what they need first (scripts/setup-host.sh, as root).

MATRIX ?= matrix/nic-modes.yaml
# Extra arguments for `nicstorm run`, e.g. "--shard 2/4 --results DIR" (scripts/fan-out.sh).
NICSTORM_RUN_ARGS ?=
CONNS ?= 300000
LOAD_BIN := load/target/x86_64-unknown-linux-gnu/release/storm-load
NICSTORM := target/release/nicstorm

.PHONY: setup setup-test load image build matrix plan test test-unit test-vm bench-load lab-down fmt clippy

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

test-unit:
	cd load && cargo test --release --locked
	cargo test --locked

test-vm:
	cargo test --locked --test vm -- --include-ignored --test-threads=1 --nocapture

bench-load: load
	CONNS=$(CONNS) load/bench/bench-load.sh

lab-down: build
	$(NICSTORM) lab down

fmt:
	cargo fmt --all && cd load && cargo fmt --all
