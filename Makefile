# The two commands: `make run` and `make test` do all set-up on a fresh machine.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: run test build deps configure format clean sdk-deps
SDK_DIR := tests/server/sdk

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

configure: $(BUILD)/build.ninja

build: deps configure
	@cmake --build $(BUILD) -j $(JOBS)

# The demo cluster (examples/demo.yaml: a prefill and a decode server of the demo model behind the
# router) on 127.0.0.1:8000; Ctrl-C stops it. It prints a curl example.
run: build
	./$(BUILD)/llmd up examples/demo.yaml --port 8000

# The OpenAI SDK test's node packages (pinned in package-lock.json); again only when the lock changes.
$(SDK_DIR)/node_modules/.package-lock.json: $(SDK_DIR)/package-lock.json | deps
	@cd $(SDK_DIR) && npm ci --no-audit --no-fund --loglevel=error >/dev/null

sdk-deps: $(SDK_DIR)/node_modules/.package-lock.json

test: build sdk-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
