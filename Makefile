# Thin wrapper over CMake + Ninja. Every target installs missing Debian packages first.
BUILD    ?= build
SAN      ?= build-sanitize
FUZZB    ?= build-fuzz
TSA      ?= build-tsa
TSAN     ?= build-tsan
JOBS     ?= $(shell nproc)
CMAKE_COMMON = -G Ninja -DCMAKE_EXPORT_COMPILE_COMMANDS=ON

.PHONY: all deps configure build test sanitize tsan bench demo fuzz tsa package clean

all: build

deps:
	@scripts/install-deps

# Release build with assertions kept (no -DNDEBUG).
configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_FLAGS_RELEASE="-O2 -g" >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

sanitize: deps
	@cmake -S . -B $(SAN) $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Debug -DBROACH_SANITIZE=ON \
	  -DBROACH_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
	@cmake --build $(SAN) -j $(JOBS)
	@cd $(SAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer: the same tests as `make test` except the Python module
# (it would need a TSan python), the memory/latency flood test and the
# largest membership simulation (BROACH_SCALE_MAX=100); the many-seed
# simulations run on 5 seeds. A report fails the
# test (halt_on_error); tests/tsan.supp holds the one suppression, explained.
tsan: deps
	@cmake -S . -B $(TSAN) $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Debug -DBROACH_TSAN=ON \
	  -DBROACH_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
	@cmake --build $(TSAN) -j $(JOBS)
	@cd $(TSAN) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS)

# The gRPC peer (bench_grpc) needs libgrpc++-dev: installed here, for
# benchmarks only; the build picks it up when CMake is configured again.
bench:
	@scripts/install-deps --bench
	@$(MAKE) --no-print-directory build
	@bench/run-all $(BUILD)

demo: build
	@examples/demo.sh $(BUILD)

fuzz:
	@scripts/install-deps --fuzz
	@cmake -S . -B $(FUZZB) $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DBROACH_BUILD_FUZZ=ON -DBROACH_BUILD_TESTS=OFF \
	  -DBROACH_BUILD_BENCH=OFF -DBROACH_BUILD_EXAMPLES=OFF -DBROACH_BUILD_TOOLS=OFF >/dev/null
	@cmake --build $(FUZZB) -j $(JOBS)
	@fuzz/run-all $(FUZZB) $(FUZZ_RUNS)

# Compile-time lock checking: clang's -Wthread-safety over the whole tree; a
# violation of a BROACH_GUARDED_BY / BROACH_REQUIRES annotation is an error
# (src/base/thread_annotations.hpp). Same as the clang-tsa preset. Needs only
# clang, which install-deps --fuzz brings.
tsa:
	@scripts/install-deps --fuzz
	@cmake -S . -B $(TSA) $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_CXX_FLAGS="-Wthread-safety -Werror=thread-safety" >/dev/null
	@cmake --build $(TSA) -j $(JOBS)

# A Debian package (build/broach_<version>_<arch>.deb) of the library,
# headers, CMake package and CLI: apt-get install ./build/broach_*.deb
package: build
	@cd $(BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(SAN) $(FUZZB) $(TSA) $(TSAN)
