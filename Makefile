# pgrace — build, run, test.  `make run` is the main job; `make test` runs every test.
# Both install what is missing first (tools/deps.sh: Debian packages via apt-get).

ifeq ($(origin CC),default)
CC       := gcc
endif
PG_INC   := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CPPFLAGS := -D_GNU_SOURCE -Iharness -Ireports -I$(PG_INC)
WARN_ALL := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
# gcc only: snprintf truncation into bounded buffers is deliberate everywhere here
WARN     := $(WARN_ALL) -Wno-format-truncation
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -pthread $(WARN)
LDLIBS   := -lpq -lpg_query -ljansson -lunistring -lm -pthread
PYTHON   := /usr/bin/python3

SRC      := $(wildcard harness/*.c) $(wildcard scenarios/*.c) $(wildcard reports/*.c)
HDR      := $(wildcard harness/*.h) $(wildcard reports/*.h) $(wildcard scenarios/*.h)
OBJ      := $(SRC:%.c=build/gcc/%.o)
LIB_SRC  := $(filter-out harness/main.c,$(SRC))
LIB_OBJ  := $(LIB_SRC:%.c=build/gcc/%.o)
FUZZ_SECS ?= 60

.PHONY: all deps run test soak asan tsan sanitizers fuzzers fuzz fuzz-smoke bench bench-explore bench-fuzz bench-spec bench-proxy bench-isolation bench-http clean
all: bin/pgrace

deps:
	@bash tools/deps.sh

build/gcc/%.o: %.c $(HDR) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

bin/pgrace: $(OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Sanitizer builds of the same sources (used by the tests).
bin/pgrace-asan: $(SRC) $(HDR) | deps
	@mkdir -p bin
	clang $(CPPFLAGS) -std=c11 -pthread $(WARN_ALL) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(SRC) $(LDLIBS)
bin/pgrace-tsan: $(SRC) $(HDR) | deps
	@mkdir -p bin
	clang $(CPPFLAGS) -std=c11 -pthread $(WARN_ALL) -O1 -g -fsanitize=thread -o $@ $(SRC) $(LDLIBS)
# libFuzzer target (clang, ASan+UBSan) and the plain-main replayer of its inputs (gcc).
# The interleaving fuzzer's coverage is the scenarios' (fuzz/interleave.coverage), beside
# the interleaving signal; the whole build has ASan+UBSan.
bin/interleave_fuzzer: $(LIB_SRC) $(HDR) fuzz/interleave_fuzzer.c fuzz/interleave.coverage | deps
	@mkdir -p bin
	clang $(CPPFLAGS) -std=c11 -pthread $(WARN_ALL) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=fuzzer,address,undefined -fsanitize-coverage-allowlist=fuzz/interleave.coverage \
	    -o $@ $(LIB_SRC) fuzz/interleave_fuzzer.c $(LDLIBS)
bin/parsers_fuzzer: $(LIB_SRC) $(HDR) fuzz/parsers_fuzzer.c | deps
	@mkdir -p bin
	clang $(CPPFLAGS) -std=c11 -pthread $(WARN_ALL) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=fuzzer,address,undefined -o $@ $(LIB_SRC) fuzz/parsers_fuzzer.c $(LDLIBS)
bin/wire_fuzzer: $(LIB_SRC) $(HDR) fuzz/wire_fuzzer.c | deps
	@mkdir -p bin
	clang $(CPPFLAGS) -std=c11 -pthread $(WARN_ALL) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=fuzzer,address,undefined -o $@ $(LIB_SRC) fuzz/wire_fuzzer.c $(LDLIBS)
bin/interleave_replay: $(LIB_OBJ) fuzz/interleave_fuzzer.c fuzz/replay_main.c $(HDR)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(LIB_OBJ) fuzz/interleave_fuzzer.c fuzz/replay_main.c $(LDLIBS)
fuzzers: bin/interleave_fuzzer bin/interleave_replay bin/parsers_fuzzer bin/wire_fuzzer
# pgrace with scenarios registered at run time by their own main (the tests' fixtures)
FIXTURE_SRC := $(wildcard tests/fixtures/*.c)
bin/pgrace-fixtures: $(LIB_OBJ) $(FIXTURE_SRC) $(HDR)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(LIB_OBJ) $(FIXTURE_SRC) $(LDLIBS)
# A spec file's parse tree as JSON (tests/test_spec_parse.py).
bin/spec_dump: $(LIB_OBJ) tests/spec_dump.c $(HDR)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(LIB_OBJ) tests/spec_dump.c $(LDLIBS)

# Time-boxed fuzzing of every recommended variant (a crash there is a real finding).
fuzz: fuzzers
	@mkdir -p out/fuzz/interleave-corpus
	PGRACE_FUZZ_TARGET=recommended PGRACE_FUZZ_SAVE=out/fuzz bin/interleave_fuzzer \
	    -max_total_time=$(FUZZ_SECS) -print_final_stats=1 out/fuzz/interleave-corpus
	@mkdir -p out/fuzz/parsers-corpus && cp fuzz/corpus/parsers/* out/fuzz/parsers-corpus/
	bin/parsers_fuzzer -dict=fuzz/parsers.dict -max_total_time=$(FUZZ_SECS) -print_final_stats=1 \
	    out/fuzz/parsers-corpus
	@mkdir -p out/fuzz/wire-corpus && cp fuzz/corpus/wire/* out/fuzz/wire-corpus/
	bin/wire_fuzzer -dict=fuzz/wire.dict -max_len=8192 -max_total_time=$(FUZZ_SECS) -print_final_stats=1 \
	    out/fuzz/wire-corpus
# Under 2 minutes, from an empty corpus: finds a known race, replays it, and fuzzes the
# recommended variant clean (part of make test).
fuzz-smoke: fuzzers
	$(PYTHON) -m pytest -q tests/test_fuzz.py

asan: bin/pgrace-asan
tsan: bin/pgrace-tsan
sanitizers: asan tsan

# the seeds' own stacks (examples/): npm packages from the committed lockfile, then every
# Prisma client generated from its schema (offline: engineType "client", a driver adapter)
EXAMPLE_DEPS := examples/node_modules/.package-lock.json
$(EXAMPLE_DEPS): examples/package.json examples/package-lock.json
	cd examples && npm ci --no-audit --no-fund --loglevel=error
EXAMPLES := examples/.generated
$(EXAMPLES): $(EXAMPLE_DEPS) examples/generate.sh $(wildcard examples/*/schema.prisma)
	sh examples/generate.sh
	touch $@
EXAMPLE_SPECS := $(sort $(wildcard examples/*/*.spec))

# the matrix of every built-in scenario; then the seeds' own stacks beside their C models
# (read committed, no faults: the C model against the real stack, out/real-stack/)
run: bin/pgrace $(EXAMPLES)
	bin/pgrace run --out out
	bin/pgrace run $(foreach s,$(EXAMPLE_SPECS),--spec $(s)) -i read-committed --no-faults --out out/real-stack

# node-postgres for the proxy's tests, from the committed lockfile
NODE_DEPS := tests/node/node_modules/.package-lock.json
$(NODE_DEPS): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

test: bin/pgrace bin/pgrace-fixtures bin/spec_dump sanitizers fuzzers $(NODE_DEPS) $(EXAMPLES)
	$(PYTHON) -m pytest -q tests

# longer than make test holds: the recommended variants on a production-configured server
# (fsync on, 8 sessions, every level) at 2000 trials per cell (make test: 400), and five
# seeds' recommended variants at 8 sessions, 5000 trials per level (make test: 2000)
soak: bin/pgrace
	PGRACE_SOAK=1 $(PYTHON) -m pytest -q tests/test_prod_settings.py
	PGRACE_SOAK=1 $(PYTHON) -m pytest -q tests -k recommended_holds_at_8_sessions

bench: bin/pgrace
	$(PYTHON) bench/stress_vs_pgbench.py

bench-explore: bin/pgrace bin/interleave_fuzzer
	$(PYTHON) bench/explore_bench.py

# the fuzzer: executions to the first violation (with and without its signal), executions/s
bench-fuzz: bin/pgrace bin/interleave_fuzzer
	$(PYTHON) bench/fuzz_bench.py

# a spec against the same pattern in C (stress trials/s ratio, explore schedules/s)
bench-spec: bin/pgrace
	$(PYTHON) bench/spec_bench.py

# pgbench through pgrace proxy (pass-through) against pgbench straight to the server
bench-proxy: bin/pgrace
	$(PYTHON) bench/proxy_bench.py

# the HTTP door: last-byte spread at 8 and 20 sessions, trials/s against in-process
bench-http: bin/pgrace $(NODE_DEPS) $(EXAMPLES)
	$(PYTHON) bench/http_bench.py

# PostgreSQL's isolation suite through pgrace isolation and through isolationtester itself
# (installed by tools/deps.sh, at the server's version, when it is missing).
bench-isolation: bin/pgrace
	$(PYTHON) bench/isolation_bench.py

clean:
	rm -rf build bin out
