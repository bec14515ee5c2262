# The project's commands. `make run-all` shows every pair working; `make test` is what CI runs.
CARGO ?= cargo
RELEASE := target/release

.PHONY: build release test run-all bench bench-quick clean-ipc lint fmt clean fuzz soak mutants mutants-integration

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --workspace --bins --release

# The integration tests run the binaries as real processes, so build them first
# (assert_cmd-style lookup finds only a package's own binaries). Afterwards, nothing of
# the tests may be left in /tmp, /dev/shm, /dev/mqueue or ipcs.
test: build
	$(CARGO) test --workspace
	@target/debug/ipc-ctl clean --check ipc-test-
	@# Records of test processes killed on purpose, whose objects are all gone already.
	@target/debug/ipc-ctl clean --only ipc-test- >/dev/null

# Every pair end to end, one result line each; nonzero if any failed.
run-all: release
	@$(RELEASE)/ipc-bench run-all --bin $(RELEASE)

# Corrupted shared memory: each cargo-fuzz target for FUZZ_SECS seconds (needs a nightly
# toolchain and cargo-fuzz); without them, the stable property test for as long.
FUZZ_SECS ?= 60
FUZZ_TARGETS := shm_segment frames pool_messages
fuzz:
	@if $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  for t in $(FUZZ_TARGETS); do \
	    echo "== cargo fuzz run $$t ($(FUZZ_SECS) s)"; \
	    mkdir -p fuzz/corpus/$$t; \
	    $(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t $$(ls -d fuzz/seeds/$$t 2>/dev/null) -- -max_total_time=$(FUZZ_SECS) -rss_limit_mb=4096 || exit 1; \
	  done; \
	else \
	  echo "cargo-fuzz or a nightly toolchain is missing (cargo install cargo-fuzz; rustup toolchain install nightly):"; \
	  echo "running the stable property test over the same entry points for $(FUZZ_SECS) s"; \
	  IPC_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test -p ipc-common --release corrupted_segments_fail_cleanly -- --nocapture; \
	fi

# Many messages per mechanism with verification (not part of `make test`).
SOAK_COUNT ?= 10000000
soak: release
	@$(RELEASE)/ipc-bench soak --bin $(RELEASE) --count $(SOAK_COUNT)

# Which is faster? Every mechanism across sizes, next to hardware baselines measured in
# the same run (a few minutes): tables, bench-results/results.{json,md} and SVG plots.
bench: release
	$(RELEASE)/ipc-bench --out bench-results

# The same, short (about a minute or less): 64 B and 64 KiB, one run each.
bench-quick: release
	$(RELEASE)/ipc-bench --quick --out bench-results

# Remove the IPC objects of pairs whose processes are all gone (tied to their records),
# and say what is kept and why; `target/debug/ipc-ctl ls` lists everything.
clean-ipc: build
	@target/debug/ipc-ctl clean

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Mutation testing of the code that checks, frames, parses and detects liveness; not part
# of `make test` (needs `cargo install cargo-mutants`). See docs/testing.md for the scope
# and the last results.
# `make mutants`: every mutant against its own crate's unit tests, one job, at the lowest
# priority; seconds per mutant (the fuzz property test cut to 0.2 s; a mutant that makes a
# test hang is stopped after 20 s). Results in target/mutants/mutants.out.
MUTANTS_OUT ?= target/mutants
MUTANTS_FILES ?= crates/ipc-common/src/frame.rs crates/ipc-common/src/workload.rs \
  crates/ipc-common/src/stream.rs crates/ipc-common/src/shm/layout.rs \
  crates/ipc-common/src/shm/pool.rs crates/ipc-common/src/shm/ring.rs \
  crates/ipc-common/src/record.rs crates/ipc-common/src/wait.rs \
  crates/ipc-common/src/cleanup.rs crates/mq-pair/src/link.rs \
  crates/socket-pair/src/datagram.rs crates/socket-pair/src/trust.rs \
  crates/socket-pair/src/auth.rs crates/socket-pair/src/link.rs
# Within those files, the checking functions (the rest of workload.rs sends; of pool.rs
# and ring.rs, moves data through real segments and queues, or sends; of the queue link,
# sends).
MUTANTS_RE ?= frame.rs|workload.rs:.*(receive|check_agrees|finish|mix|read_full|read_once|fill|Tally|open_input|write_out|output_name)|stream.rs|layout.rs|pool.rs:.*(parse_descriptor|parse_free_id|check_pool|names)|ring.rs:.*(recv_taking|recv_in_place|recv_generated|read_header|read_with|::read( |$$)|read_slow|available|take_checked|intact|gone|corrupt|peer_(alive|died))|record.rs:.*(probe|list|start_time|check_dir|in dir|replace dir)|wait.rs|cleanup.rs|mq-pair/src/link.rs:.*(recv|read_setup|join_parts|take|part_count|prio_for|level_value|priority_order|reorders|raw_message_max|finish_sending)|socket-pair/src/link.rs|datagram.rs|trust.rs|auth.rs
MUTANTS_EXCLUDE ?= test_hooks|narrate|Progress|install_signal_handlers|cleanup.rs:.*in lock
mutants:
	IPC_FUZZ_SECS=0.2 nice -n 19 $(CARGO) mutants -j1 --timeout 20 -o $(MUTANTS_OUT) \
	  $(foreach f,$(MUTANTS_FILES),--file $(f)) --re '$(MUTANTS_RE)' --exclude-re '$(MUTANTS_EXCLUDE)'

# `make mutants-integration`: the mutants no unit test reaches, against the integration
# tests, which build the binaries from the mutated tree first (about a minute a mutant).
MUTANTS_INT_FILES ?= crates/ipc-common/src/frame.rs crates/ipc-common/src/workload.rs
MUTANTS_INT_RE ?= .
MUTANTS_TESTS ?= --test checks --test trust_frames
mutants-integration:
	IPC_TEST_BUILD_BINS=1 nice -n 19 $(CARGO) mutants -j1 -o $(MUTANTS_OUT) \
	  --test-package integration-tests \
	  $(foreach f,$(MUTANTS_INT_FILES),--file $(f)) --re '$(MUTANTS_INT_RE)' \
	  --exclude-re '$(MUTANTS_EXCLUDE)' -- $(MUTANTS_TESTS)
