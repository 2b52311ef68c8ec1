# The two commands: `make run` and `make test` do all set-up on a fresh machine.
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= ../shared/models/stories260K.gguf

.PHONY: run test build deps configure format clean

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

configure: $(BUILD)/build.ninja

build: deps configure
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/llmd generate --model $(MODEL) --prompt "Once upon a time" --max-tokens 64

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
