# Thin wrapper over CMake. The two commands a user needs:
#   make demo    installs what is missing, builds, trains an MLP on
#                Fashion-MNIST on 2 MPI ranks (examples/train_mlp.c)
#   make check   installs what is missing, builds, runs every test,
#                then the unit/local tests under ASan+UBSan (with the cycle
#                probes built in), the local tests
#                and two mpirun tests under TSan,
#                and the fuzzers for a bounded time
JOBS ?= 2
BUILD ?= build
FUZZ_SECONDS ?= 30
TESTS ?= ON
# The CUDA backend: AUTO builds it where the CUDA toolkit is (its tests skip
# without a GPU); CUDA=OFF saves its build time (see docs/architecture.md).
CUDA ?= AUTO
PREFIX ?= /usr/local
CMAKE ?= cmake
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT = 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = 1

.PHONY: all deps deps-build build demo check test check-asan check-tsan \
        check-fuzz check-release bench install clean

all: build

deps:
	@scripts/install-deps

deps-build:
	@scripts/install-deps --build

build:
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPF_WERROR=ON \
	  -DPF_BUILD_TESTS=$(TESTS) -DPF_CUDA=$(CUDA) >/dev/null
	@$(CMAKE) --build $(BUILD) -j$(JOBS)

DEMO_RANKS ?= 2
DEMO_ARGS ?=
demo: deps-build
	@$(MAKE) --no-print-directory build TESTS=OFF
	mpirun --oversubscribe -np $(DEMO_RANKS) $(BUILD)/examples/train_mlp \
	  --metrics $(BUILD)/demo-metrics.csv $(DEMO_ARGS)
	@$(BUILD)/tools/pathflow chart $(BUILD)/demo-metrics.csv $(BUILD)/demo-chart.svg
	@echo "demo: metrics in $(BUILD)/demo-metrics.csv, chart in $(BUILD)/demo-chart.svg"

check: deps
	@$(MAKE) --no-print-directory build TESTS=ON
	@$(MAKE) --no-print-directory test check-release check-asan check-tsan check-fuzz
	@echo "make check: every stage passed"

test:
	cd $(BUILD) && ctest --output-on-failure --timeout 600

# A Release build (-O3) inlines across more calls than the tested one
# (-O2) and GCC then warns where it did not (maybe-uninitialized,
# array-bounds): built with -Werror, not run.
check-release:
	@$(CMAKE) -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPF_WERROR=ON \
	  -DPF_BUILD_TESTS=OFF -DPF_CUDA=$(CUDA) >/dev/null
	@$(CMAKE) --build build-release -j$(JOBS)

# The cycle probes (base/probe.h) are compiled into this build, and so run
# under the sanitizers: no other stage builds them in.
check-asan:
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPF_WERROR=ON -DPF_PROBES=ON \
	  -DPF_SANITIZE=address,undefined -DPF_BUILD_BENCH=OFF -DPF_BUILD_EXAMPLES=OFF >/dev/null
	@$(CMAKE) --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp \
	  ctest -L 'unit|local' --output-on-failure

check-tsan:
	@$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DPF_WERROR=ON \
	  -DPF_SANITIZE=thread -DPF_BUILD_BENCH=OFF -DPF_BUILD_EXAMPLES=OFF >/dev/null
	@$(CMAKE) --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/sanitizers/tsan.supp" \
	  ctest -L local --output-on-failure
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/sanitizers/tsan-mpi.supp" \
	  ctest -L mpi-tsan --output-on-failure

check-fuzz:
	@CC=clang $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPF_BUILD_FUZZ=ON \
	  -DPF_BUILD_TESTS=OFF -DPF_BUILD_BENCH=OFF -DPF_BUILD_EXAMPLES=OFF >/dev/null
	@$(CMAKE) --build build-fuzz -j$(JOBS)
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TIMEOUT)

bench: build
	bench/overhead.sh $(BUILD)
	$(BUILD)/bench/kernels
	@if [ -x bench/run_mpi.sh ]; then bench/run_mpi.sh $(BUILD); fi

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-fuzz
