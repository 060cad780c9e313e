# SPDX-License-Identifier: MIT
#
# Convenience wrapper around CMake; every configuration gets its own build
# directory under build/<compiler>/.
#
#   make            release build (library, gvm tool)
#   make demo       build and run the demo on the default simulated system
#   make check      debug build (assertions, lock-rank checker) + every test
#   make bench      run the benchmarks (release build)
#   make check-release / check-asan / check-tsan   tests in other configurations
#   make check-inject-full   the full fault-injection sweep (docs/verification.md)
#   make install PREFIX=/usr/local
#   make format     clang-format the tree
#
# Variables: CC (gcc, clang, ...), WERROR=1, JOBS=N, PREFIX, CTEST_ARGS.
CC ?= cc
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
WERROR ?= 0
CTEST_ARGS ?=

B := build/$(notdir $(CC))
MAKEFLAGS += --no-print-directory
CMAKE_COMMON := -DCMAKE_C_COMPILER=$(CC) -DGVM_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF)

.PHONY: all release debug demo check check-release check-asan check-tsan check-inject-full bench install format clean

all: release

define configure
	@cmake -S . -B $(B)/$(1) $(CMAKE_COMMON) $(2) >/dev/null
	cmake --build $(B)/$(1) -j $(JOBS)
endef

release:
	$(call configure,release,-DCMAKE_BUILD_TYPE=Release)

debug:
	$(call configure,debug,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVM_DEBUG=ON)

# The STREAM triad through VM_BIND and exec on one simulated GPU, narrated
# (about a second); `gvm demo` is the older core-layer pipeline.
demo: release
	$(B)/release/gvm run triad --size 32M --iters 80 --explain

check: debug
	cd $(B)/debug && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

check-release: release
	cd $(B)/release && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

check-asan:
	$(call configure,asan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVM_DEBUG=ON -DGVM_ASAN=ON -DGVM_UBSAN=ON -DGVM_TEST_SCALE=4)
	cd $(B)/asan && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Its own build directory, so that the debug one's CTest stays the default.
check-inject-full:
	$(call configure,inject-full,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVM_DEBUG=ON -DGVM_INJECT_FULL=ON)
	cd $(B)/inject-full && ctest --output-on-failure -j $(JOBS) -L inject_full $(CTEST_ARGS)

check-tsan:
	$(call configure,tsan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVM_DEBUG=ON -DGVM_TSAN=ON -DGVM_TEST_SCALE=8)
	cd $(B)/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench: release
	$(B)/release/gvm bench

install: release
	cmake --install $(B)/release --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
