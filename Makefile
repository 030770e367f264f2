# The whole set-up on a fresh Debian bookworm machine:
#   make run    install what is missing, build Release, serve the demo on 127.0.0.1:1337
#   make test   install what is missing, check formatting, run the suite in Release and
#               ASan+UBSan, and the unit tests where threads meet under ThreadSanitizer
BUILD      ?= build
ASAN_BUILD ?= build/asan
TSAN_BUILD ?= build/tsan
# The unit tests where threads meet: the writer thread, the scheduler, the engine's loop, the
# server's loops and the hub.
TSAN_TESTS := core_test store_test fleet_test jobs_test net_test
JOBS       ?= $(shell nproc)
CMAKE_GEN  := -G Ninja
SOURCES     = $(shell git ls-files --cached --others --exclude-standard 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 2>/dev/null)

.PHONY: all deps build run test test-release test-asan test-tsan format format-check tidy bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/aviary serve

format:
	clang-format -i $(SOURCES)

format-check:
	@echo "== clang-format check"
	@clang-format --dry-run --Werror $(SOURCES)

test-release: build
	@echo "== suite (Release)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# UBSan's alignment, null and pointer-overflow checks guard nearly every member access at -O0,
# each site with its own static record: 94 % of the instrumented binary's 223 MB of .data, which
# LeakSanitizer scans at every exit, and a quarter of each file's compile time. x86 does not
# fault on misaligned loads, ASan reports a null dereference as the SEGV it is, and the checks
# that find our bugs (overflow, shifts, bounds, enums, bools, vptr) stay. docs/architecture.md
# ("Testing").
UBSAN_SKIPPED := alignment,null,pointer-overflow
$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DAVIARY_WERROR=ON \
	    -DAVIARY_BENCH=OFF \
	    "-DCMAKE_CXX_FLAGS=-O0 -g1 -fsanitize=address,undefined -fno-sanitize=$(UBSAN_SKIPPED) -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined -no-pie"

# The ASan executables are linked without PIE: a 540 MB instrumented binary spent half of each
# start in the dynamic loader's relocations (1.1-1.3 s against 0.6 s for `aviary version`), and
# the integration tests start it thousands of times: the suite took 985 s against 1634 s.
#
# Left out under the sanitizers, and run in Release: the test that takes every file descriptor
# also takes the one UBSan's vptr check needs (it probes a vtable's memory through a pipe()),
# so the runtime reports a type mismatch that is not there; under TSan the runtime's own
# descriptors come and go during it, so an accept it counts on failing can succeed.
# docs/architecture.md ("Testing").
ASAN_EXCLUDED := HttpServerLimits.AcceptFailuresAreCountedAndTheServerServesOnceDescriptorsFree
test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	@echo "== suite (ASan + UBSan)"
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) --timeout 600 \
	    -E '$(ASAN_EXCLUDED)'

$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DAVIARY_BENCH=OFF \
	    "-DCMAKE_CXX_FLAGS=-O1 -g1 -fsanitize=thread -Wno-tsan" \
	    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread"

# GCC 12's TSan does not model std::atomic_thread_fence (Asio uses it): tests/tsan.supp names
# what that leaves, and nothing of aviary's own.
test-tsan: deps $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TESTS)
	@echo "== unit tests under ThreadSanitizer: $(TSAN_TESTS)"
	@set -e; for t in $(TSAN_TESTS); do \
	    bin=$$(find $(TSAN_BUILD)/tests/unit -name $$t -type f -perm -u+x | head -1); \
	    echo "-- $$t"; \
	    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	        $$bin --gtest_brief=1 --gtest_filter=-$(ASAN_EXCLUDED); \
	done

# The sanitizer builds keep line tables only (-g1): enough for their reports' stack traces, and
# a good part cheaper to compile than full debug info.
test: deps format-check test-release test-asan test-tsan
	@echo "== make test: formatting, Release, ASan+UBSan and TSan suites all passed"

# clang-tidy with .clang-tidy's checks over every source file (CI does not run it). Its own
# configure-only tree without precompiled headers: clang cannot read GCC's .gch files.
TIDY_BUILD ?= build/tidy
tidy:
	cmake -S . -B $(TIDY_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DAVIARY_BENCH=OFF \
	    -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
	run-clang-tidy -p $(TIDY_BUILD) -quiet $(if $(FILES),$(FILES),'src/.*\.cpp$$')

bench: build
	@scripts/install-deps.sh --bench
	@for b in bench/*/run.sh; do [ -x "$$b" ] && "$$b"; done; true

clean:
	rm -rf $(BUILD)
