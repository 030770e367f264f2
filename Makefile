# The whole set-up on a fresh Debian bookworm machine:
#   make run    install what is missing, build Release, serve the demo on 127.0.0.1:1337
#   make test   install what is missing, check formatting, run the suite in Release and ASan+UBSan
BUILD      ?= build
ASAN_BUILD ?= build/asan
JOBS       ?= $(shell nproc)
CMAKE_GEN  := -G Ninja
SOURCES     = $(shell git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 2>/dev/null)

.PHONY: all deps build run test test-release test-asan format format-check tidy bench clean

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

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DAVIARY_WERROR=ON \
	    -DAVIARY_BENCH=OFF \
	    "-DCMAKE_CXX_FLAGS=-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"

test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	@echo "== suite (ASan + UBSan)"
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) --timeout 600

test: deps format-check test-release test-asan
	@echo "== make test: formatting, Release suite and ASan+UBSan suite all passed"

tidy: $(BUILD)/CMakeCache.txt
	run-clang-tidy -p $(BUILD) -quiet 'src/.*\.cpp$$'

bench: build
	@scripts/install-deps.sh --bench
	@for b in bench/*/run.sh; do [ -x "$$b" ] && "$$b"; done; true

clean:
	rm -rf $(BUILD)
