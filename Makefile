# The project's commands. `make run-all` shows every pair working; `make test` is what CI runs.
CARGO ?= cargo
RELEASE := target/release

.PHONY: build release test run-all clean-ipc lint fmt clean

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
