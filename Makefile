# Two commands on a fresh machine: `make demo` (a real ad through a real MCP client) and
# `make test`. Both set up what is missing first: system packages, the venv, Python deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system demo test serve bench clean

setup: system $(STAMP)

system:
	@bash scripts/install-system.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/adgen generate examples/product.jpg \
		--text "촉촉한 하루의 시작, 베르데 세럼 ✨" \
		--prompt "Wooden table in a cozy cafe, warm sunlight" \
		--seed 7 --out out/demo_ad.png --data-dir out/data

test: setup
	$(PY) -m pytest -q

serve: setup
	$(VENV)/bin/adgen-mcp --transport streamable-http --port 8000

clean:
	rm -rf out test-artifacts .pytest_cache
