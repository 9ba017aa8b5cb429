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
LDLIBS   := -lpq -ljansson -lm -pthread
PYTHON   := /usr/bin/python3

SRC      := $(wildcard harness/*.c) $(wildcard scenarios/*.c) $(wildcard reports/*.c)
HDR      := $(wildcard harness/*.h) $(wildcard reports/*.h)
OBJ      := $(SRC:%.c=build/gcc/%.o)

.PHONY: all deps run test asan tsan sanitizers bench bench-explore clean
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
asan: bin/pgrace-asan
tsan: bin/pgrace-tsan
sanitizers: asan tsan

run: bin/pgrace
	bin/pgrace run --out out

test: bin/pgrace sanitizers
	$(PYTHON) -m pytest -q tests

bench: bin/pgrace
	$(PYTHON) bench/stress_vs_pgbench.py

bench-explore: bin/pgrace
	$(PYTHON) bench/explore_bench.py

clean:
	rm -rf build bin out
