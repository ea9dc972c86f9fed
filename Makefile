# SPDX-License-Identifier: MIT
# The two commands of the README:
#   make check  - install missing packages (as root), build, run every test:
#                 the normal build, then every test again under address+
#                 undefined sanitizers (clang, with the libFuzzer targets
#                 built), then the concurrency tests under the thread
#                 sanitizer.
#   make demo   - install, build, run a live migration on loopback.
# Other targets: build, test, asan, tsan, fuzz, bench, install, clean.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
CMAKE_FLAGS ?=
CTEST = ctest --output-on-failure -j $(JOBS)

.PHONY: all deps build test check asan tsan fuzz demo bench install clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && $(CTEST)

asan: deps
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
		-DHPTMIG_SANITIZE=address,undefined -DHPTMIG_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
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

demo: build
	@echo "make demo: live-migrating a simulated 4 GiB Linux guest (2 vCPUs, 20000 hypercalls/s each)"
	@echo "           over a unix socket limited to 2 MiB/s, downtime limit 50 ms"
	$(BUILD)/tools/hptmig demo --ram 4G --vcpus 2 --workload linux --rate 20000 \
		--max-bandwidth 2M --downtime-limit 50

bench: build
	$(BUILD)/tools/hptmig bench --list

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan
