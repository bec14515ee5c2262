# The project's commands. `make run-all` shows every pair working; `make test` is what CI runs.
CARGO ?= cargo
RELEASE := target/release

.PHONY: build release test run-all bench bench-quick clean-ipc lint fmt clean

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --workspace --bins --release

# The integration tests run the binaries as real processes, so build them first
# (assert_cmd-style lookup finds only a package's own binaries). Afterwards, nothing of
# the tests may be left in /tmp, /dev/shm, /dev/mqueue or ipcs.
test: build
	$(CARGO) test --workspace
	@scripts/clean-ipc --check ipc-test-

# Every pair end to end, one result line each; nonzero if any failed.
run-all: release
	@python3 scripts/run-all --bin $(RELEASE)

# Which is faster? Every mechanism across sizes, next to hardware baselines measured in
# the same run (a few minutes): tables, bench-results/results.{json,md} and SVG plots.
bench: release
	$(RELEASE)/ipc-bench --out bench-results

# The same, short (about a minute or less): 64 B and 64 KiB, one run each.
bench-quick: release
	$(RELEASE)/ipc-bench --quick --out bench-results

# List and remove this project's leftover IPC objects (names starting with ipc-).
clean-ipc:
	@scripts/clean-ipc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
