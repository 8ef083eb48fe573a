# The two commands (README): `make run` and `make test`. Both install what is
# missing first (scripts/setup), idempotently.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: run test build bench clean

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS)

run:
	scripts/setup
	$(MAKE) --no-print-directory build
	$(BUILD)/tenantgate serve $(ARGS)

test:
	scripts/setup --test
	$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j1 --timeout 900

bench:
	scripts/setup --bench
	$(MAKE) --no-print-directory build
	tools/bench/run

clean:
	rm -rf $(BUILD)
