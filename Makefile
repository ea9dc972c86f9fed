# SPDX-License-Identifier: MIT
# The two commands of the README:
#   make check  - install missing packages (as root), build, run every test:
#                 the normal build, then every test again under address+
#                 undefined sanitizers (clang, with the libFuzzer targets
#                 built), then the concurrency tests under the thread
#                 sanitizer.
#   make demo   - install, build, run a live migration on loopback.
# Other targets: build, test, asan, tsan, fuzz, fuzz-long, bench, install,
# clean (docs/fuzzing.md for the fuzz targets).

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
CMAKE_FLAGS ?=
CTEST = ctest --output-on-failure -j $(JOBS)

.PHONY: all deps build test check asan-build asan tsan fuzz fuzz-long demo bench install clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && $(CTEST)

asan-build: deps
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
		-DHPTMIG_SANITIZE=address,undefined -DHPTMIG_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)

asan: asan-build
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(CTEST)

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DHPTMIG_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 $(CTEST) -L concurrency

check: test asan tsan
	@echo "make check: all test suites passed (normal, address+undefined, thread)"

# Coverage-guided fuzzing of every fuzz/fuzz_<name>.c for FUZZ_SECONDS each
# (not part of check). New inputs go to build-asan/fuzz-new/<name>/; merge
# the interesting ones into fuzz/corpus/<name>/ with -merge=1.
FUZZ_SECONDS ?= 60
fuzz: asan
	@for t in build-asan/fuzz/fuzz_*; do \
		n=$$(basename $$t | sed 's/^fuzz_//'); mkdir -p build-asan/fuzz-new/$$n; \
		echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			build-asan/fuzz-new/$$n fuzz/corpus/$$n || exit 1; \
	done

# The long run (docs/fuzzing.md): every target, one after the other, for
# FUZZ_SECONDS each (600 unless given) under address+undefined sanitizers.
# The committed corpus is only read; new inputs go to build-asan/fuzz-new/<name>/,
# crashes, leaks, timeouts and aborts to build-asan/fuzz-findings/<name>/, the
# log to build-asan/fuzz-new/<name>.log. Every target runs even after a
# finding; the exit status is non-zero if any target found something.
FUZZ_LONG_SECONDS = $(if $(filter file,$(origin FUZZ_SECONDS)),600,$(FUZZ_SECONDS))
fuzz-long: asan-build
	@fail=""; for t in build-asan/fuzz/fuzz_*; do \
		n=$$(basename $$t | sed 's/^fuzz_//'); \
		mkdir -p build-asan/fuzz-new/$$n build-asan/fuzz-findings/$$n; \
		echo "fuzz-long: $$n for $(FUZZ_LONG_SECONDS) s (log build-asan/fuzz-new/$$n.log)"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$$t -max_total_time=$(FUZZ_LONG_SECONDS) -print_final_stats=1 -timeout=25 \
			-rss_limit_mb=2048 -artifact_prefix=build-asan/fuzz-findings/$$n/ \
			build-asan/fuzz-new/$$n fuzz/corpus/$$n >build-asan/fuzz-new/$$n.log 2>&1; \
		rc=$$?; grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' \
			build-asan/fuzz-new/$$n.log | sed "s/^/  $$n: /"; \
		if [ $$rc -ne 0 ]; then fail="$$fail $$n"; \
			echo "fuzz-long: $$n FOUND SOMETHING (exit $$rc): build-asan/fuzz-findings/$$n/"; \
			grep -m3 -E 'ERROR|SUMMARY|deadly signal' build-asan/fuzz-new/$$n.log; fi; \
	done; \
	if [ -n "$$fail" ]; then echo "fuzz-long: findings in:$$fail"; exit 1; fi; \
	echo "fuzz-long: no findings"

# Quiet: the configure and build go to $(BUILD)/demo-build.log (its tail
# shown only if they fail), no make directory noise; the demo's result is
# the last thing on screen.
demo: deps
	@echo "make demo: building (log: $(BUILD)/demo-build.log)"
	@mkdir -p $(BUILD)
	@{ cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) && \
	   cmake --build $(BUILD) -j $(JOBS) --target hptmig -- --no-print-directory; } \
		>$(BUILD)/demo-build.log 2>&1 || { tail -n 30 $(BUILD)/demo-build.log; exit 1; }
	@echo "make demo: live-migrating a simulated 4 GiB Linux guest (2 vCPUs, 20000 hypercalls/s each)"
	@echo "           over a unix socket limited to 2 MiB/s, downtime limit 50 ms"
	@$(BUILD)/tools/hptmig demo --ram 4G --vcpus 2 --workload linux --rate 20000 \
		--max-bandwidth 2M --downtime-limit 50

bench: build
	$(BUILD)/tools/hptmig bench --list

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan
