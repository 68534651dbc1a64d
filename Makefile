# autointerp: one binary, one static library that the binary and every test link.
#
# Sources are discovered, not listed: a new src/<stage>/x.c joins the library and a
# new tests/unit/test_x.c becomes a test binary without touching this file.

PREFIX   ?= /usr/local
CC       ?= gcc
ARCH     ?= -march=native
OPT      ?= -O2
PKGS     := hdf5 openblas libcjson libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) gsl cmocka 2>/dev/null)
# GSL's own CBLAS is left out on purpose: OpenBLAS provides the cblas_* symbols.
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lgsl -lm -lpthread
VERSION  := 0.1.0
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

SAN      ?=
CFLAGS   ?= $(OPT) $(ARCH) -g
CFLAGS   += $(SAN) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation -Isrc $(PKG_CFLAGS) \
            -DAUTOINTERP_VERSION='"$(VERSION)"'
LDLIBS   += $(PKG_LIBS)
LDFLAGS  += $(SAN)

BUILD    ?= build
# Quiet by default ("CC src/x.c"); `make V=1` prints whole command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif
LIB_SRC  := $(shell find src -name '*.c' ! -path 'src/main.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/unit/*.c))
BENCH_SRC := $(sort $(wildcard tests/bench/*.c))
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.PHONY: all test bench demo asan format install clean fuzz
# The main binary lives in bin/ (the documented path); the asan target builds its
# own copy inside its build tree so the two never overwrite each other.
BIN ?= bin/autointerp
all: $(BIN)

$(BIN): $(BUILD)/src/main.o $(BUILD)/libautointerp.a
	@mkdir -p $(dir $@)
	@echo "LINK $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Only main.o carries the commit id, and it is rebuilt when the commit changes.
$(BUILD)/src/main.o: CFLAGS += -DAUTOINTERP_COMMIT='"$(GIT_COMMIT)"'
$(BUILD)/src/main.o: $(BUILD)/commit.stamp
$(BUILD)/commit.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(GIT_COMMIT)' | cmp -s - $@ || echo '$(GIT_COMMIT)' > $@
FORCE:

$(BUILD)/libautointerp.a: $(LIB_OBJ)
	@rm -f $@
	@echo "AR   $@"
	$(Q)ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC   $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT) $(BUILD)/libautointerp.a
	@mkdir -p $(dir $@)
	@echo "TEST $@"
	$(Q)$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(TEST_SUPPORT) $(BUILD)/libautointerp.a $(LDLIBS) -lcmocka

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libautointerp.a
	@mkdir -p $(dir $@)
	@echo "BENCH $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libautointerp.a $(LDLIBS)

# `make test` builds everything and runs every test binary and script; the runner
# prints the closing "N passed, N failed, N skipped" line that CI reads.
test: $(BIN) $(TEST_BIN)
	AUTOINTERP_BIN=$(abspath $(BIN)) BUILD=$(BUILD) bash scripts/run-tests.sh

# The fuzz-regression test compiles the harnesses' entry points in.
$(BUILD)/tests/test_fuzz_regressions: $(wildcard tests/fuzz/*.c tests/fuzz/*.h)

bench: $(BIN) $(BENCH_BIN)
	AUTOINTERP_BIN=$(abspath $(BIN)) BUILD=$(BUILD) bash scripts/bench.sh

demo: $(BIN)
	bash scripts/demo.sh

# The whole suite again under AddressSanitizer and UndefinedBehaviorSanitizer, in a
# separate build tree so the optimised objects are left alone.
asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/autointerp OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# Coverage-guided fuzzing of every input parser (clang's libFuzzer), each for
# FUZZ_SECONDS (default 60); new crashes are kept under tests/fixtures/fuzz/.
fuzz:
	bash scripts/fuzz.sh

format:
	clang-format -i $$(find src tests -name '*.c' -o -name '*.h' | grep -v node_modules)

# The binary finds the installed prompts/ as <bin>/../share/autointerp/prompts.
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/autointerp
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/autointerp
	cp -r prompts configs $(DESTDIR)$(PREFIX)/share/autointerp/

clean:
	rm -rf build build-asan bin

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/main.d
